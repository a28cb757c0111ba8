#include "kennel/data/s3_sync.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "kennel/util/fs.h"
#include "kennel/util/hash.h"
#include "kennel/util/parallel.h"
#include "kennel/util/progress.h"

namespace kennel::data {

namespace fs = std::filesystem;

namespace {

// The first failure of a parallel transfer; the others stop taking work.
class FirstError {
 public:
  void record(Status status) {
    std::lock_guard lock(mutex_);
    if (status_.ok()) status_ = std::move(status);
    failed_ = true;
  }
  bool failed() const { return failed_; }
  Status status() const {
    std::lock_guard lock(mutex_);
    return status_;
  }

 private:
  mutable std::mutex mutex_;
  Status status_;
  std::atomic<bool> failed_{false};
};

Result<std::string> file_sha256(const fs::path& path) {
  auto bytes = read_file_bytes(path);
  if (!bytes.ok()) return bytes.status();
  return sha256_hex(bytes->data(), bytes->size());
}

// The key's path below the prefix, or "" when it would not be a plain relative path.
std::string plain_relative(std::string_view relative) {
  if (relative.empty()) return "";
  size_t start = 0;
  while (start <= relative.size()) {
    const size_t end = std::min(relative.find('/', start), relative.size());
    const std::string_view segment = relative.substr(start, end - start);
    if (segment.empty() || segment == "." || segment == "..") return "";
    start = end + 1;
  }
  return std::string(relative);
}

struct ListedObject {
  s3::ObjectSummary summary;
  std::string relative;
  std::string id;  // SHA-256 of (bucket, key, ETag): the cache file's name
  fs::path cached;
};

Status list_prefix(const s3::S3Client& client, const s3::S3Uri& folder,
                   std::vector<ListedObject>& objects) {
  s3::ListRequest request;
  request.bucket = folder.bucket;
  request.prefix = folder.key;
  return client.for_each_list_page(request, [&](const s3::ListPage& page) {
    for (const s3::ObjectSummary& summary : page.objects) {
      if (summary.key.empty() || summary.key.back() == '/') continue;  // "folder" markers
      const std::string relative =
          plain_relative(std::string_view(summary.key).substr(folder.key.size()));
      if (relative.empty()) {
        spdlog::warn("s3://{}/{}: skipped: the key has an empty, '.' or '..' segment below {}",
                     folder.bucket, summary.key, folder.text());
        continue;
      }
      objects.push_back({summary, relative, "", {}});
    }
    return Status::ok_status();
  });
}

// Links `target` to the cached file through a temporary name and a rename, so
// a reader of the view sees the old file or the new one, never neither.
Status link_into_view(const fs::path& cached, const fs::path& target) {
  std::error_code error;
  if (fs::exists(target, error) && fs::equivalent(cached, target, error)) return Status::ok_status();
  KENNEL_RETURN_IF_ERROR(kennel::create_directories(target.parent_path()));
  const fs::path temporary = target.parent_path() / (".link-" + target.filename().string());
  fs::remove(temporary, error);
  if (::link(cached.c_str(), temporary.c_str()) != 0) {
    // Another filesystem (a cache on a mount of its own): a copy does too.
    fs::copy_file(cached, temporary, fs::copy_options::overwrite_existing, error);
    if (error) {
      return Status(ErrorCode::kPermissionDenied,
                    fmt::format("cannot place '{}' in the view '{}': {}", path_text(cached),
                                path_text(target), error.message()));
    }
  }
  fs::rename(temporary, target, error);
  if (error) {
    return Status(ErrorCode::kPermissionDenied,
                  fmt::format("cannot place '{}': {}", path_text(target), error.message()));
  }
  return Status::ok_status();
}

// Removes files of the view that the prefix no longer has (and empty folders).
void remove_stale(const fs::path& view, const std::set<std::string>& wanted) {
  std::error_code error;
  std::vector<fs::path> stale;
  for (auto it = fs::recursive_directory_iterator(view, error);
       !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    if (!it->is_regular_file(error)) continue;
    const std::string relative = it->path().lexically_relative(view).generic_string();
    if (!wanted.count(relative)) stale.push_back(it->path());
  }
  for (const fs::path& path : stale) {
    spdlog::info("'{}' is no longer in S3: removed from the local copy", path_text(path));
    fs::remove(path, error);
  }
}

using nlohmann::json;

// The folder's manifest, or null when it has none.
Result<json> read_manifest(const s3::S3Client& client, const s3::S3Uri& folder) {
  const s3::S3Uri manifest_uri{folder.bucket, folder.key + kManifestName};
  auto got = client.get_object(manifest_uri);
  if (!got.ok()) {
    if (got.status().code() == ErrorCode::kNotFound) return json();
    return got.status();
  }
  try {
    json manifest = json::parse(got->body);
    if (!manifest.contains("files") || !manifest["files"].is_object()) {
      throw std::runtime_error("no 'files' object");
    }
    return manifest;
  } catch (const std::exception& error) {
    return Status(ErrorCode::kDataLoss, fmt::format("{} is not a Kennel manifest: {}", manifest_uri.text(),
                                                    error.what()));
  }
}

// Keeps only the objects the manifest commits; every one of them must be there.
Status apply_manifest(const json& manifest, const s3::S3Uri& folder, std::vector<ListedObject>& objects) {
  std::vector<ListedObject> committed;
  std::set<std::string> found;
  for (ListedObject& object : objects) {
    const auto entry = manifest["files"].find(object.relative);
    if (entry == manifest["files"].end()) continue;
    if (entry->value("size", uint64_t{0}) != object.summary.size) {
      return Status(ErrorCode::kDataLoss,
                    fmt::format("s3://{}/{} has {} bytes but {}{} says {}: the set was changed after it "
                                "was committed",
                                folder.bucket, object.summary.key, object.summary.size, folder.text(),
                                kManifestName, entry->value("size", uint64_t{0})));
    }
    found.insert(object.relative);
    committed.push_back(std::move(object));
  }
  for (const auto& [relative, entry] : manifest["files"].items()) {
    if (!found.count(relative)) {
      return Status(ErrorCode::kDataLoss,
                    fmt::format("{}{} commits '{}', but {}{} is missing: the set is incomplete", folder.text(),
                                kManifestName, relative, folder.text(), relative));
    }
  }
  objects = std::move(committed);
  return Status::ok_status();
}

Status download_object(const s3::S3Client& client, const std::string& bucket,
                       const ListedObject& object, Progress& progress, std::atomic<uint64_t>& received) {
  const s3::S3Uri uri{bucket, object.summary.key};
  KENNEL_RETURN_IF_ERROR(kennel::create_directories(object.cached.parent_path()));
  // Two syncs of different views may want the same object version at once.
  const FileLock lock(object.cached.string() + ".lock");
  std::error_code error;
  if (fs::exists(object.cached, error)) return Status::ok_status();
  s3::DownloadOptions download;
  download.if_match = object.summary.etag;
  download.on_progress = [&progress, &received](uint64_t bytes) {
    progress.advance(bytes);
    received += bytes;
  };
  auto info = client.download_file(uri, object.cached, download);
  if (!info.ok()) return info.status();
  const auto recorded = info->metadata.find("sha256");
  if (recorded != info->metadata.end()) {
    auto actual = file_sha256(object.cached);
    if (!actual.ok()) return actual.status();
    if (*actual != recorded->second) {
      fs::remove(object.cached, error);
      return Status(ErrorCode::kDataLoss,
                    fmt::format("{}: the downloaded bytes have SHA-256 {}, but the object's metadata "
                                "says {}: upload it again (`kennel data upload`)",
                                uri.text(), *actual, recorded->second));
    }
  }
  return Status::ok_status();
}

}  // namespace

std::string folder_prefix(const std::string& key) {
  if (key.empty() || key.back() == '/') return key;
  return key + "/";
}

Result<UploadSummary> upload_tree(const s3::S3Client& client, const fs::path& dir,
                                  const s3::S3Uri& prefix, const S3TransferOptions& options) {
  std::error_code error;
  if (!fs::is_directory(dir, error)) {
    return not_found("'{}' is not a folder: `kennel data upload` takes a dataset folder",
                     path_text(dir));
  }
  const s3::S3Uri folder{prefix.bucket, folder_prefix(prefix.key)};
  std::vector<std::pair<fs::path, std::string>> files;  // local path, key
  for (auto it = fs::recursive_directory_iterator(dir, error);
       !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    if (!it->is_regular_file()) continue;
    files.emplace_back(it->path(), folder.key + it->path().lexically_relative(dir).generic_string());
  }
  if (error) return Status(ErrorCode::kPermissionDenied,
                           fmt::format("cannot read '{}': {}", path_text(dir), error.message()));
  if (files.empty()) return not_found("'{}' holds no files to upload", path_text(dir));

  std::vector<ListedObject> listed;
  KENNEL_RETURN_IF_ERROR(list_prefix(client, folder, listed));
  std::map<std::string, uint64_t> existing_sizes;
  for (const ListedObject& object : listed) existing_sizes[object.summary.key] = object.summary.size;

  uint64_t total_bytes = 0;
  std::vector<uint64_t> sizes(files.size());
  for (size_t i = 0; i < files.size(); ++i) {
    sizes[i] = fs::file_size(files[i].first, error);
    total_bytes += sizes[i];
  }
  UploadSummary summary;
  summary.files = files.size();
  std::atomic<size_t> uploaded{0}, skipped{0};
  std::atomic<uint64_t> bytes_uploaded{0};
  Progress progress(fmt::format("uploading to {}", folder.text()), total_bytes, options.quiet);
  FirstError first_error;
  parallel_for(files.size(), std::max(1, options.concurrency), [&](size_t i) {
    if (first_error.failed()) return;
    const auto& [path, key] = files[i];
    const s3::S3Uri object{folder.bucket, key};
    auto sha = file_sha256(path);
    if (!sha.ok()) return first_error.record(sha.status());
    const auto there = existing_sizes.find(key);
    if (there != existing_sizes.end() && there->second == sizes[i]) {
      auto info = client.head_object(object);
      if (info.ok()) {
        const auto recorded = info->metadata.find("sha256");
        if (recorded != info->metadata.end() && recorded->second == *sha) {
          ++skipped;
          progress.advance(sizes[i]);
          return;
        }
      }
    }
    s3::UploadOptions upload;
    upload.put.metadata["sha256"] = *sha;
    upload.concurrency = 2;  // files are already uploaded in parallel
    auto put = client.upload_file(path, object, upload);
    if (!put.ok()) {
      return first_error.record(put.status().with_context(fmt::format("uploading '{}'", path_text(path))));
    }
    ++uploaded;
    bytes_uploaded += sizes[i];
    progress.advance(sizes[i]);
  });
  progress.finish();
  if (first_error.failed()) return first_error.status();
  summary.uploaded = uploaded;
  summary.skipped = skipped;
  summary.bytes_uploaded = bytes_uploaded;
  return summary;
}

Result<SyncedTree> sync_prefix(const s3::S3Client& client, const s3::S3Uri& prefix,
                               const fs::path& objects_dir, const fs::path& view,
                               const S3TransferOptions& options) {
  const s3::S3Uri folder{prefix.bucket, folder_prefix(prefix.key)};
  std::vector<ListedObject> objects;
  KENNEL_RETURN_IF_ERROR(list_prefix(client, folder, objects));
  auto manifest = read_manifest(client, folder);
  if (!manifest.ok()) return manifest.status();
  if (!manifest->is_null()) {
    KENNEL_RETURN_IF_ERROR(apply_manifest(*manifest, folder, objects));
  }
  if (objects.empty()) {
    return not_found("no objects under {} (bucket '{}' at {}): upload the folder first with "
                     "`kennel data upload DIR {}`",
                     folder.text(), folder.bucket, client.config().endpoint.text(), folder.text());
  }
  KENNEL_RETURN_IF_ERROR(kennel::create_directories(view.parent_path()));
  const FileLock view_lock(view.parent_path() / (view.filename().string() + ".lock"));

  std::vector<size_t> missing;
  uint64_t missing_bytes = 0;
  std::error_code error;
  for (size_t i = 0; i < objects.size(); ++i) {
    ListedObject& object = objects[i];
    object.id = sha256_hex(folder.bucket + "\n" + object.summary.key + "\n" + object.summary.etag);
    object.cached = objects_dir / object.id.substr(0, 2) / object.id;
    if (!fs::exists(object.cached, error)) {
      missing.push_back(i);
      missing_bytes += object.summary.size;
      // What a killed sync left in .part is fetched no more (S3Client::download_file resumes it).
      const uintmax_t partial = fs::file_size(object.cached.string() + ".part", error);
      if (!error && partial <= object.summary.size) missing_bytes -= partial;
      error.clear();
    }
  }
  SyncedTree tree;
  tree.root = view;
  std::atomic<uint64_t> received{0};
  {
    Progress progress(fmt::format("downloading {} ({} of {} objects)", folder.text(),
                                  missing.size(), objects.size()),
                      missing_bytes, options.quiet || missing.empty());
    FirstError first_error;
    parallel_for(missing.size(), std::max(1, options.concurrency), [&](size_t i) {
      if (first_error.failed()) return;
      Status status = download_object(client, folder.bucket, objects[missing[i]], progress, received);
      if (!status.ok()) first_error.record(std::move(status));
    });
    progress.finish();
    if (first_error.failed()) return first_error.status();
  }
  tree.downloaded = missing.size();
  tree.bytes_downloaded = received.load();

  std::set<std::string> wanted;
  for (const ListedObject& object : objects) {
    KENNEL_RETURN_IF_ERROR(link_into_view(object.cached, view / object.relative));
    wanted.insert(object.relative);
    tree.identities[object.relative] = fmt::format("s3://{}/{} etag={} size={}", folder.bucket,
                                                   object.summary.key, object.summary.etag,
                                                   object.summary.size);
  }
  remove_stale(view, wanted);
  return tree;
}

Status upload_committed_set(const s3::S3Client& client, const s3::S3Uri& prefix,
                            const std::vector<CommittedFile>& files, const S3TransferOptions& options) {
  const s3::S3Uri folder{prefix.bucket, folder_prefix(prefix.key)};
  auto previous = read_manifest(client, folder);
  if (!previous.ok()) return previous.status();
  json entries = json::object();
  std::vector<std::string> hashes(files.size()), etags(files.size());
  std::vector<uint64_t> sizes(files.size());
  const json committed = previous->is_null() ? json::object() : (*previous)["files"];
  FirstError first_error;
  parallel_for(files.size(), std::max(1, options.concurrency), [&](size_t i) {
    if (first_error.failed()) return;
    const CommittedFile& file = files[i];
    auto sha = file_sha256(file.local);
    if (!sha.ok()) return first_error.record(sha.status());
    hashes[i] = *sha;
    std::error_code error;
    sizes[i] = fs::file_size(file.local, error);
    {
      const auto entry = committed.find(file.relative);
      if (entry != committed.end() && entry->value("sha256", std::string()) == *sha) {
        etags[i] = entry->value("etag", std::string());
        return;  // already there, committed by the previous manifest
      }
    }
    s3::UploadOptions upload;
    upload.put.metadata["sha256"] = *sha;
    auto put = client.upload_file(file.local, s3::S3Uri{folder.bucket, folder.key + file.relative}, upload);
    if (!put.ok()) {
      return first_error.record(put.status().with_context(fmt::format("uploading '{}'", path_text(file.local))));
    }
    etags[i] = put->etag;
  });
  if (first_error.failed()) return first_error.status();
  for (size_t i = 0; i < files.size(); ++i) {
    entries[files[i].relative] = {{"size", sizes[i]}, {"sha256", hashes[i]}, {"etag", etags[i]}};
  }
  const json manifest = {{"format", "kennel-manifest"},
                         {"version", 1},
                         {"committed_at", std::chrono::duration<double>(
                                              std::chrono::system_clock::now().time_since_epoch())
                                              .count()},
                         {"files", entries}};
  s3::PutOptions put;
  put.content_type = "application/json";
  auto written = client.put_object(s3::S3Uri{folder.bucket, folder.key + kManifestName},
                                   manifest.dump(2) + "\n", put);
  if (!written.ok()) return written.status().with_context(fmt::format("committing {}", folder.text()));
  if (!previous->is_null()) {
    for (const auto& [relative, entry] : (*previous)["files"].items()) {
      if (entries.contains(relative)) continue;
      Status deleted = client.delete_object(s3::S3Uri{folder.bucket, folder.key + relative});
      if (!deleted.ok()) spdlog::warn("could not delete the superseded {}{}: {}", folder.text(), relative,
                                      deleted.message());
    }
  }
  return Status::ok_status();
}

Result<SyncedTree> sync_s3_folder(const std::string& uri, const store::S3CachePaths& cache,
                                  SyncedKind kind, const S3TransferOptions& options) {
  auto location = s3::parse_s3_uri(uri);
  if (!location.ok()) return location.status();
  auto client = s3::make_s3_client(s3::command_line_options());
  if (!client.ok()) return client.status().with_context(fmt::format("reading {}", uri));
  const std::string id = sha256_hex(location->text()).substr(0, 32);
  const fs::path view = kind == SyncedKind::kModel ? cache.model(id) : cache.dataset(id);
  return sync_prefix(**client, *location, cache.objects(), view, options);
}

}  // namespace kennel::data

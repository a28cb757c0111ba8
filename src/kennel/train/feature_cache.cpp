#include "kennel/train/feature_cache.h"

#include <sys/stat.h>

#include <algorithm>
#include <sstream>

#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/tensor.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/serialize.h>
#include <torch/utils.h>

#include "kennel/data/decode.h"
#include "kennel/data/transforms.h"
#include "kennel/models/backbone.h"
#include "kennel/util/fs.h"
#include "kennel/util/hash.h"
#include "kennel/util/parallel.h"
#include "kennel/util/progress.h"

namespace kennel::train {

namespace fs = std::filesystem;

std::string dataset_content_hash(const std::vector<data::ImageSample>& samples, const fs::path& root,
                                 const std::map<std::string, std::string>& identities) {
  std::vector<std::string> file_hashes(samples.size());
  parallel_for(samples.size(), 0, [&](size_t i) {
    if (!identities.empty()) {
      const auto known = identities.find(fs::path(samples[i].path).lexically_relative(root).generic_string());
      if (known != identities.end()) {
        file_hashes[i] = "object " + known->second;
        return;
      }
    }
    auto bytes = read_file_bytes(samples[i].path);
    file_hashes[i] = bytes.ok() ? sha256_hex(bytes->data(), bytes->size()) : "unreadable";
  });
  std::string manifest;
  const std::string prefix = root.string();
  for (size_t i = 0; i < samples.size(); ++i) {
    std::string path = samples[i].path;
    if (path.rfind(prefix, 0) == 0) path = path.substr(prefix.size());
    manifest += fmt::format("{}\t{}\t{}\n", path, samples[i].label, file_hashes[i]);
  }
  return sha256_hex(manifest);
}

Result<std::string> file_content_hash(const fs::path& path) {
  auto bytes = read_file_bytes(path);
  if (!bytes.ok()) return bytes.status();
  return sha256_hex(bytes->data(), bytes->size());
}

FeatureCacheIdentity::FeatureCacheIdentity()
    : decode_version(data::kDecodeVersion),
      transform_version(data::kTransformVersion),
      backbone_version(models::kBackboneVersion) {}

bool FeatureCacheIdentity::current_code() const {
  const FeatureCacheIdentity current;
  return decode_version == current.decode_version && transform_version == current.transform_version &&
         backbone_version == current.backbone_version;
}

nlohmann::json to_json(const FeatureCacheIdentity& identity) {
  return {{"arch", identity.arch},
          {"weights_id", identity.weights_id},
          {"dataset_id", identity.dataset_id},
          {"transform_id", identity.transform_id},
          {"device", identity.device},
          {"precision", identity.precision},
          {"layout", identity.layout},
          {"decode_version", identity.decode_version},
          {"transform_version", identity.transform_version},
          {"backbone_version", identity.backbone_version}};
}

namespace {

constexpr const char* kIdentityFile = "identity.json";

std::optional<FeatureCacheIdentity> identity_from_json(const nlohmann::json& json) {
  try {
    FeatureCacheIdentity identity;
    identity.arch = json.at("arch").get<std::string>();
    identity.weights_id = json.at("weights_id").get<std::string>();
    identity.dataset_id = json.at("dataset_id").get<std::string>();
    identity.transform_id = json.at("transform_id").get<std::string>();
    identity.device = json.at("device").get<std::string>();
    identity.precision = json.at("precision").get<std::string>();
    identity.layout = json.at("layout").get<std::string>();
    identity.decode_version = json.at("decode_version").get<int>();
    identity.transform_version = json.at("transform_version").get<int>();
    identity.backbone_version = json.at("backbone_version").get<int>();
    return identity;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

double modified_seconds(const fs::path& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return 0;
  return static_cast<double>(info.st_mtim.tv_sec) + static_cast<double>(info.st_mtim.tv_nsec) * 1e-9;
}

}  // namespace

std::string feature_cache_key(const FeatureCacheIdentity& identity) {
  // Every field on its own line: no two identities print the same text.
  return sha256_hex(fmt::format("kennel-features-v2\n{}\n", to_json(identity).dump())).substr(0, 32);
}

std::optional<FeatureSet> FeatureCache::load(const std::string& key, const std::string& split) const {
  const fs::path path = dir_ / key / (split + ".pt");
  std::error_code error;
  if (!fs::exists(path, error)) return std::nullopt;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path.string());
    FeatureSet set;
    archive.read("features", set.features);
    archive.read("labels", set.labels);
    at::Tensor skipped;
    archive.read("skipped", skipped);
    set.skipped = skipped.item<int64_t>();
    std::error_code touched;
    fs::last_write_time(dir_ / key, fs::file_time_type::clock::now(), touched);  // "last used", for prune
    return set;
  } catch (const std::exception& e) {
    spdlog::warn("feature cache entry '{}' is unreadable ({}); recomputing", path.string(), e.what());
    return std::nullopt;
  }
}

Status FeatureCache::store(const FeatureCacheIdentity& identity, const std::string& split,
                           const FeatureSet& set) const {
  const std::string key = feature_cache_key(identity);
  KENNEL_RETURN_IF_ERROR(kennel::create_directories(dir_ / key));
  KENNEL_RETURN_IF_ERROR(write_file_atomic(dir_ / key / kIdentityFile, to_json(identity).dump(2) + "\n"));
  std::ostringstream bytes;
  torch::serialize::OutputArchive archive;
  archive.write("features", set.features);
  archive.write("labels", set.labels);
  archive.write("skipped", torch::tensor(set.skipped));
  archive.save_to(bytes);
  return write_file_atomic(dir_ / key / (split + ".pt"), bytes.str());
}

Result<std::vector<FeatureCacheEntry>> FeatureCache::list() const {
  std::vector<FeatureCacheEntry> entries;
  std::error_code error;
  if (!fs::exists(dir_, error)) return entries;
  for (fs::directory_iterator it(dir_, error), end; !error && it != end; it.increment(error)) {
    if (!it->is_directory(error)) continue;
    FeatureCacheEntry entry;
    entry.key = it->path().filename().string();
    entry.dir = it->path();
    entry.last_used = modified_seconds(entry.dir);
    std::error_code inner;
    for (fs::directory_iterator file(entry.dir, inner), file_end; !inner && file != file_end; file.increment(inner)) {
      const fs::path& path = file->path();
      entry.bytes += static_cast<int64_t>(file->file_size(inner));
      if (path.extension() == ".pt") entry.splits.push_back(path.stem().string());
      entry.last_used = std::max(entry.last_used, modified_seconds(path));
    }
    std::sort(entry.splits.begin(), entry.splits.end());
    if (auto text = read_file_text(entry.dir / kIdentityFile); text.ok()) {
      const auto json = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
      if (!json.is_discarded()) entry.identity = identity_from_json(json);
    }
    entries.push_back(std::move(entry));
  }
  if (error) {
    return Status(ErrorCode::kPermissionDenied, fmt::format("cannot list '{}': {}", dir_.string(), error.message()));
  }
  std::sort(entries.begin(), entries.end(),
            [](const FeatureCacheEntry& a, const FeatureCacheEntry& b) { return a.last_used > b.last_used; });
  return entries;
}

Status FeatureCache::remove(const FeatureCacheEntry& entry) const {
  std::error_code error;
  fs::remove_all(entry.dir, error);
  if (error) {
    return Status(ErrorCode::kPermissionDenied,
                  fmt::format("cannot remove '{}': {}", entry.dir.string(), error.message()));
  }
  // The per-split lock files beside the entry ("<key>-<split>.lock").
  for (fs::directory_iterator it(dir_, error), end; !error && it != end; it.increment(error)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(entry.key + "-", 0) == 0 && it->path().extension() == ".lock") {
      std::error_code ignored;
      fs::remove(it->path(), ignored);
    }
  }
  return {};
}

FeatureSet compute_features(data::ImageLoader& loader, const std::function<at::Tensor(const at::Tensor&)>& extract,
                            const std::string& progress_label, bool quiet) {
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> features, labels, indices;
  Progress progress(progress_label, static_cast<uint64_t>(loader.epoch_size()), quiet);
  const int64_t skipped_before = loader.stats().skipped;
  loader.start_epoch(0);
  while (auto batch = loader.next()) {
    features.push_back(extract(batch->images).to(at::kCPU, at::kFloat));
    labels.push_back(batch->labels);
    indices.push_back(at::tensor(batch->sample_indices, at::kLong));
    progress.advance(static_cast<uint64_t>(batch->labels.size(0)));
  }
  progress.finish();
  FeatureSet set;
  set.skipped = loader.stats().skipped - skipped_before;
  if (features.empty()) {
    set.features = at::empty({0, 0}, at::kFloat);
    set.labels = at::empty({0}, at::kLong);
    set.sample_indices = at::empty({0}, at::kLong);
  } else {
    set.features = at::cat(features);
    set.labels = at::cat(labels);
    set.sample_indices = at::cat(indices);
  }
  return set;
}

}  // namespace kennel::train

// S3Client's file transfers: upload_file (one PUT or a parallel multipart
// upload) and download_file (resumable, atomic).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <system_error>

#include <spdlog/spdlog.h>

#include "kennel/s3/client.h"
#include "kennel/s3/errors.h"
#include "kennel/s3/request.h"
#include "kennel/s3/xml_responses.h"
#include "kennel/util/fs.h"
#include "kennel/util/parallel.h"

namespace kennel::s3 {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kMinPartSize = 5ull << 20;  // S3's minimum for every part but the last
constexpr uint64_t kMaxParts = 10000;

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }
  // Closes now, reporting the error close() gives (data not written).
  int close() {
    const int result = fd_ >= 0 ? ::close(fd_) : 0;
    fd_ = -1;
    return result;
  }

 private:
  int fd_;
};

Status file_error(const std::string& doing, const fs::path& path, int error) {
  const ErrorCode code = error == ENOENT   ? ErrorCode::kNotFound
                         : error == EACCES ? ErrorCode::kPermissionDenied
                                           : ErrorCode::kDataLoss;
  return Status(code, fmt::format("{} {}: {}", doing, path_text(path), std::strerror(error)));
}

Status fsync_directory(const fs::path& directory) {
  const int fd =
      ::open(directory.empty() ? "." : directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return file_error("opening the directory", directory, errno);
  const int result = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  return result == 0 ? Status() : file_error("syncing the directory", directory, error);
}

// Writes a 2xx GET body to the .part file at the right offset.
class PartFileSink final : public BodySink {
 public:
  PartFileSink(int fd, fs::path part_path, fs::path etag_path, ProgressCallback on_progress)
      : fd_(fd),
        part_path_(std::move(part_path)),
        etag_path_(std::move(etag_path)),
        on_progress_(std::move(on_progress)) {}

  // Before each attempt: the bytes already in the file, and the ETag they belong to.
  void begin(uint64_t offset, std::string expected_etag, bool etag_recorded) {
    offset_ = offset;
    expected_etag_ = std::move(expected_etag);
    etag_recorded_ = etag_recorded;
    object_changed_ = false;
  }

  bool on_headers(const HttpResponse& response) override {
    info_ = object_info_from_headers(response);
    if (!expected_etag_.empty() && !info_.etag.empty() && info_.etag != expected_etag_) {
      // The server ignored If-Match (some S3-compatible stores do).
      object_changed_ = true;
      return refuse(Status(
          ErrorCode::kFailedPrecondition,
          fmt::format("the object changed (ETag {} is now {})", expected_etag_, info_.etag)));
    }
    if (response.status == 206) {
      const std::string range = response.header("content-range");
      const std::string expected = fmt::format("bytes {}-", offset_);
      if (range.rfind(expected, 0) != 0) {
        return refuse(Status(
            ErrorCode::kUpstreamFailed,
            fmt::format("asked for bytes from {} and got Content-Range '{}'", offset_, range)));
      }
    } else if (offset_ > 0) {
      // A 200 to a ranged request: the whole object follows, so start the file over.
      offset_ = 0;
      if (::ftruncate(fd_, 0) != 0) return refuse(file_error("truncating", part_path_, errno));
    }
    if (!etag_recorded_ && !info_.etag.empty()) {
      // Written before any byte of the body: a .part file never outlives the
      // record of which object version it holds.
      const Status written = write_file_atomic(etag_path_, info_.etag);
      if (!written.ok()) return refuse(written);
      etag_recorded_ = true;
    }
    return true;
  }

  bool on_data(std::string_view chunk) override {
    while (!chunk.empty()) {
      const ssize_t written =
          ::pwrite(fd_, chunk.data(), chunk.size(), static_cast<off_t>(offset_));
      if (written < 0) {
        if (errno == EINTR) continue;
        return refuse(file_error("writing", part_path_, errno));
      }
      offset_ += static_cast<uint64_t>(written);
      chunk.remove_prefix(static_cast<size_t>(written));
      if (on_progress_) on_progress_(static_cast<uint64_t>(written));
    }
    return true;
  }

  uint64_t offset() const { return offset_; }
  const ObjectInfo& info() const { return info_; }
  bool object_changed() const { return object_changed_; }
  bool etag_recorded() const { return etag_recorded_; }

 private:
  bool refuse(Status status) {
    refusal = std::move(status);
    return false;
  }

  const int fd_;
  const fs::path part_path_;
  const fs::path etag_path_;
  const ProgressCallback on_progress_;
  uint64_t offset_ = 0;
  std::string expected_etag_;
  bool etag_recorded_ = false;
  bool object_changed_ = false;
  ObjectInfo info_;
};

}  // namespace

// ---- uploads -------------------------------------------------------------------

Result<PutResult> S3Client::upload_file(const fs::path& source, const S3Uri& object,
                                        const UploadOptions& options) const {
  if (object.key.empty()) return invalid_argument("{}: an upload needs a key", object.text());
  KENNEL_RETURN_IF_ERROR(validate_metadata(options.put.metadata).with_context(object.text()));
  if (options.concurrency < 1) {
    return invalid_argument("upload concurrency must be at least 1, got {}", options.concurrency);
  }
  FileDescriptor fd(::open(source.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return file_error("opening", source, errno);
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) return file_error("reading the size of", source, errno);
  if (!S_ISREG(info.st_mode)) {
    return invalid_argument("{} is not a regular file; only files can be uploaded",
                            path_text(source));
  }
  const auto size = static_cast<uint64_t>(info.st_size);
  if (size > options.multipart_threshold) {
    auto result = upload_multipart(fd.get(), size, object, options);
    if (!result.ok())
      return result.status().with_context(
          fmt::format("uploading {} to {}", path_text(source), object.text()));
    return result;
  }
  RequestBody body;
  body.fd = fd.get();
  body.length = size;
  auto response = send(put_object_request(object, body, options.put));
  if (!response.ok()) {
    return response.status().with_context(
        fmt::format("uploading {} to {}", path_text(source), object.text()));
  }
  if (options.on_progress) options.on_progress(size);
  return PutResult{response->header("etag")};
}

Result<PutResult> S3Client::upload_multipart(int fd, uint64_t size, const S3Uri& object,
                                             const UploadOptions& options) const {
  uint64_t part_size = std::max(options.part_size, kMinPartSize);
  part_size = std::max(part_size, (size + kMaxParts - 1) / kMaxParts);
  const uint64_t part_count = (size + part_size - 1) / part_size;

  auto created = send(create_multipart_upload_request(object, options.put));
  if (!created.ok()) return created.status();
  auto upload_id = parse_initiate_multipart_upload(created->body);
  if (!upload_id.ok()) return upload_id.status();

  std::vector<CompletedPart> parts(part_count);
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  Status first_error;
  const int threads = static_cast<int>(std::min<uint64_t>(options.concurrency, part_count));
  parallel_for(part_count, threads, [&](size_t index) {
    if (failed.load()) return;
    RequestBody body;
    body.fd = fd;
    body.offset = index * part_size;
    body.length = std::min(part_size, size - body.offset);
    const int number = static_cast<int>(index + 1);
    auto response = send(upload_part_request(object, *upload_id, number, body));
    Status status = response.ok() ? Status() : response.status();
    if (status.ok() && response->header("etag").empty()) {
      status = Status(ErrorCode::kUpstreamFailed, "the server sent no ETag for the part");
    }
    if (!status.ok()) {
      std::lock_guard lock(error_mutex);
      if (first_error.ok()) {
        first_error = status.with_context(fmt::format("part {} of {}", number, part_count));
      }
      failed.store(true);
      return;
    }
    parts[index] = CompletedPart{number, response->header("etag")};
    if (options.on_progress) options.on_progress(body.length);
  });

  Status failure = first_error;
  std::string etag;
  if (failure.ok()) {
    auto completed = complete_multipart(object, *upload_id, complete_multipart_upload_body(parts));
    if (completed.ok()) return PutResult{*completed};
    failure = completed.status();
  }
  const Status aborted = abort_multipart(object, *upload_id);
  if (!aborted.ok()) {
    return Status(
        failure.code(),
        fmt::format("{}; aborting the multipart upload failed too ({}): remove it with "
                    "`aws s3api abort-multipart-upload --bucket {} --key {} "
                    "--upload-id {}` or a lifecycle rule",
                    failure.message(), aborted.message(), object.bucket, object.key, *upload_id));
  }
  return failure;
}

Result<std::string> S3Client::complete_multipart(const S3Uri& object, const std::string& upload_id,
                                                 const std::string& xml) const {
  auto response = send(complete_multipart_upload_request(object, upload_id, xml));
  if (!response.ok()) return response.status();
  return parse_complete_multipart_upload(response->body);
}

Status S3Client::abort_multipart(const S3Uri& object, const std::string& upload_id) const {
  auto response = send(abort_multipart_upload_request(object, upload_id));
  return response.ok() ? Status() : response.status();
}

// ---- downloads -----------------------------------------------------------------

Result<ObjectInfo> S3Client::download_file(const S3Uri& object, const fs::path& destination,
                                           const DownloadOptions& options) const {
  if (object.key.empty()) return invalid_argument("{}: a download needs a key", object.text());
  const fs::path part_path = fs::path(destination).concat(".part");
  const fs::path etag_path = fs::path(destination).concat(".part.etag");
  const auto context = fmt::format("downloading {} to {}", object.text(), path_text(destination));
  if (destination.has_parent_path()) {
    KENNEL_RETURN_IF_ERROR(
        kennel::create_directories(destination.parent_path()).with_context(context));
  }

  // What an earlier, interrupted download left, if it is of the version wanted.
  std::string etag = options.if_match;
  bool from_part = false;
  std::error_code error;
  if (options.resume && fs::exists(part_path, error) && fs::exists(etag_path, error)) {
    auto recorded = read_file_text(etag_path);
    if (recorded.ok() && !recorded->empty() && (etag.empty() || etag == *recorded)) {
      etag = *recorded;
      from_part = true;
    }
  }
  if (!from_part) {
    fs::remove(etag_path, error);
    fs::remove(part_path, error);
  }
  FileDescriptor fd(::open(part_path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  if (fd.get() < 0) return file_error("creating", part_path, errno).with_context(context);
  struct stat part_info {};
  if (::fstat(fd.get(), &part_info) != 0) return file_error("reading", part_path, errno);
  uint64_t offset = from_part ? static_cast<uint64_t>(part_info.st_size) : 0;

  PartFileSink sink(fd.get(), part_path, etag_path, options.on_progress);
  bool etag_recorded = from_part;
  bool started_over = false;
  int failures = 0;
  const auto start_over = [&] {
    started_over = true;
    from_part = false;
    etag = options.if_match;
    etag_recorded = false;
    offset = 0;
    fs::remove(etag_path, error);
    return ::ftruncate(fd.get(), 0) == 0;
  };
  while (true) {
    const S3Request request = get_object_request(
        object,
        offset > 0 ? std::optional<ByteRange>(ByteRange{offset, std::nullopt}) : std::nullopt,
        etag);
    sink.begin(offset, etag, etag_recorded);
    const HttpExchange exchange = attempt(request, std::string(kEmptyPayloadSha256), &sink);
    const bool progressed = sink.offset() > offset;
    offset = sink.offset();
    etag_recorded = sink.etag_recorded();
    if (etag.empty() && etag_recorded) etag = sink.info().etag;
    const long status = exchange.response.status;
    if (exchange.completed() && !exchange.sink_refused && is_success(status)) break;

    // The bytes so far belong to another version of the object (the .part file
    // of an earlier call, or the first attempt of this one), or the .part file
    // is as long as the object: begin again, once. A version the caller asked
    // for (options.if_match) is never swapped for another.
    const bool version_changed = (exchange.completed() && status == 412) || sink.object_changed();
    const bool past_the_end = exchange.completed() && status == 416 && from_part;
    const bool stale_part =
        !started_over &&
        (past_the_end || (version_changed && (from_part || options.if_match.empty())));
    if (stale_part) {
      if (!start_over()) return file_error("truncating", part_path, errno).with_context(context);
      continue;
    }
    if (exchange.sink_refused) return sink.refusal.with_context(context);
    ++failures;
    if (progressed) failures = 1;  // a flaky link that keeps delivering is not failing
    bool retryable;
    Status failure;
    if (!exchange.completed()) {
      retryable = is_retryable_transport_error(exchange.transport_error);
      failure = status_for_transport_error(exchange, request, config_, failures);
    } else {
      const auto document = parse_error_document(exchange.response.body);
      retryable = is_retryable_http_status(status, document ? document->code : "");
      failure = status_for_response(exchange.response, request, config_, failures);
    }
    if (!retryable || failures >= options_.retry.max_attempts) {
      // The .part file stays: a later call resumes from it.
      return failure.with_context(context);
    }
    // Handled, so not a warning; but a sync that slows down should say why.
    spdlog::info("{}; retrying from byte {} ({} failed attempt(s) in a row, {} allowed)",
                 failure.message(), offset, failures, options_.retry.max_attempts);
    wait_before_retry(failures);
  }

  const ObjectInfo info = sink.info();
  if (offset != info.size) {
    return Status(ErrorCode::kDataLoss,
                  fmt::format("{}: got {} bytes of {}", context, offset, info.size));
  }
  if (::fsync(fd.get()) != 0) return file_error("syncing", part_path, errno).with_context(context);
  if (fd.close() != 0) return file_error("closing", part_path, errno).with_context(context);
  fs::rename(part_path, destination, error);
  if (error) {
    return Status(ErrorCode::kDataLoss, fmt::format("{}: renaming {} into place: {}", context,
                                                    path_text(part_path), error.message()));
  }
  KENNEL_RETURN_IF_ERROR(fsync_directory(destination.parent_path()).with_context(context));
  fs::remove(etag_path, error);
  return info;
}

}  // namespace kennel::s3

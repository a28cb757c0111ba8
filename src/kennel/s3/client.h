// Kennel's S3 client: the object store at the bottom of Kennel, used by data/
// (datasets in s3://), models/ and job/ (checkpoints and models written to
// s3://), serve/ (models and {"url": "s3://..."} inputs). It depends on util/,
// libcurl, OpenSSL and pugixml, and on nothing above it.
//
// What it owns: signing (sigv4.h, Kennel's own SigV4), settings and
// credentials as the AWS tools read them (config.h), addressing (addressing.h),
// retries (retry.h), S3's XML (xml_responses.h) and error messages (errors.h).
// What it does not: caches, manifests, progress bars (callers pass a
// ProgressCallback), deciding what to upload or download.
//
// Every call retries on its own (retry.h); downloads resume from where a
// dropped connection or a killed process left off; uploads above a threshold
// go in parallel parts and a failed multipart upload is aborted. Failures come
// back as Statuses whose messages name the bucket, key, endpoint and profile
// and say what to do (errors.h).
//
// Thread-safety: every method may be called from many threads at once; the
// client holds no per-call state (the transport pools its connections).
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "kennel/s3/addressing.h"
#include "kennel/s3/config.h"
#include "kennel/s3/objects.h"
#include "kennel/s3/retry.h"
#include "kennel/s3/transport.h"
#include "kennel/util/status.h"

namespace kennel::s3 {

struct S3Request;  // request.h

struct S3ClientOptions {
  RetryPolicy retry;
  // Timeouts; transport.ca_bundle is taken from the S3Config when empty.
  TransportOptions transport;
};

// Seams for tests; each left empty means the real thing.
struct S3ClientSeams {
  std::shared_ptr<HttpTransport> transport;                    // libcurl
  std::function<std::chrono::system_clock::time_point()> now;  // the system clock (signing)
  std::function<void(double seconds)> sleep;                   // std::this_thread::sleep_for
  std::function<double()> uniform01;                           // jitter source in [0, 1)
};

struct GetResult {
  ObjectInfo info;  // info.size is the whole object's size, also for a range
  std::string body;
};

class S3Client {
 public:
  // kInternal when libcurl cannot be initialised.
  static Result<std::unique_ptr<S3Client>> create(S3Config config, S3ClientOptions options = {},
                                                  S3ClientSeams seams = {});

  const S3Config& config() const { return config_; }

  // The object's bytes (or a range of them) in memory. kResourceExhausted when
  // larger than options.max_bytes; kNotFound for a missing key or bucket;
  // kFailedPrecondition when if_match no longer matches.
  Result<GetResult> get_object(const S3Uri& object, const GetOptions& options = {}) const;

  // Size, ETag, Last-Modified, content type and user metadata. kNotFound when
  // the key (or the bucket) does not exist.
  Result<ObjectInfo> head_object(const S3Uri& object) const;

  // One page of ListObjectsV2.
  Result<ListPage> list_objects_page(const ListRequest& request) const;
  // Every page, in order, each handed to `on_page`; stops at the first non-OK
  // Status `on_page` returns and returns it.
  Status for_each_list_page(ListRequest request,
                            const std::function<Status(const ListPage&)>& on_page) const;
  // Every page merged into one (is_truncated false). For large buckets prefer
  // for_each_list_page.
  Result<ListPage> list_objects(const ListRequest& request) const;

  // Stores `bytes` under the key (one PUT, payload signed). Returns the ETag.
  Result<PutResult> put_object(const S3Uri& object, std::string_view bytes,
                               const PutOptions& options = {}) const;

  // Uploads a file: one PUT up to options.multipart_threshold, else a
  // multipart upload with options.concurrency parts in flight; on any part's
  // final failure the upload is aborted (no invisible parts left billed) and
  // the part's Status returned. Errors: the file's (kNotFound, ...), S3's.
  Result<PutResult> upload_file(const std::filesystem::path& source, const S3Uri& object,
                                const UploadOptions& options = {}) const;

  // Downloads to `destination` atomically: bytes go to DESTINATION.part
  // (its ETag recorded in DESTINATION.part.etag), which is fsynced and renamed
  // into place when complete, so DESTINATION is never a partial file. A
  // dropped connection continues with a Range request from the bytes already
  // written; so does a later call after the process was killed, as long as
  // the object's ETag still matches (If-Match), else it starts over. The
  // parent directory is created. Returns what the GET said about the object.
  // Two downloads to one destination at once (threads or processes) would
  // share the .part file: callers that may race hold a FileLock (util/fs.h).
  Result<ObjectInfo> download_file(const S3Uri& object, const std::filesystem::path& destination,
                                   const DownloadOptions& options = {}) const;

  // Deletes the key (S3 reports success for a key that does not exist).
  Status delete_object(const S3Uri& object) const;

 private:
  S3Client(S3Config config, S3ClientOptions options, S3ClientSeams seams);

  // Sends `request` with retries (retry.h); a 2xx response is returned,
  // anything else becomes errors.h's Status. A sink, when given, gets the 2xx
  // body; one that refuses it ends the call with the sink's Status.
  Result<HttpResponse> send(const S3Request& request, BodySink* sink = nullptr) const;
  // One attempt: sign for now() and perform.
  HttpExchange attempt(const S3Request& request, const std::string& payload_hash,
                       BodySink* sink) const;
  void wait_before_retry(int failed_attempts) const;
  Result<PutResult> upload_multipart(int fd, uint64_t size, const S3Uri& object,
                                     const UploadOptions& options) const;
  Status abort_multipart(const S3Uri& object, const std::string& upload_id) const;
  Result<std::string> complete_multipart(const S3Uri& object, const std::string& upload_id,
                                         const std::string& xml) const;

  const S3Config config_;
  const S3ClientOptions options_;
  S3ClientSeams seams_;
};

// What a GET or HEAD response's headers say about the object (size from
// Content-Range when the response is partial).
ObjectInfo object_info_from_headers(const HttpResponse& response);

// Convenience for callers holding user input: resolve_s3_config() + create().
Result<std::unique_ptr<S3Client>> make_s3_client(const S3Options& options,
                                                 const S3ClientOptions& client_options = {});

}  // namespace kennel::s3

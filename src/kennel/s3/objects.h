// The plain values S3Client takes and returns: objects, listings, ranges,
// upload options. Thread-safety: values.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kennel::s3 {

// What HEAD (or a GET's headers) says about an object.
struct ObjectInfo {
  uint64_t size = 0;          // the whole object's size, also after a ranged GET
  std::string etag;           // as S3 sends it, quotes included; not an MD5 for multipart uploads
  std::string last_modified;  // the HTTP date S3 sends ("Wed, 12 Oct 2009 17:50:00 GMT")
  std::string content_type;
  // User metadata (x-amz-meta-NAME), names lower-case without the prefix: {"sha256": "..."}.
  std::map<std::string, std::string> metadata;
};

// One entry of a listing.
struct ObjectSummary {
  std::string key;
  uint64_t size = 0;
  std::string etag;           // quotes included
  std::string last_modified;  // ISO 8601, as S3 gives it
  std::string storage_class;
};

struct ListPage {
  std::vector<ObjectSummary> objects;
  std::vector<std::string> common_prefixes;  // with a delimiter: the "folders" below the prefix
  bool is_truncated = false;
  std::string next_continuation_token;  // set when is_truncated
};

struct ListRequest {
  std::string bucket;
  std::string prefix;
  std::string delimiter;           // "" lists everything below the prefix; "/" one level
  std::string continuation_token;  // from the previous page
  std::string start_after;
  int max_keys = 1000;  // per page; S3 never returns more than 1000
};

// Bytes first..last of an object, both inclusive; no last = to the end.
struct ByteRange {
  uint64_t first = 0;
  std::optional<uint64_t> last;

  std::string header() const {
    return "bytes=" + std::to_string(first) + "-" + (last ? std::to_string(*last) : "");
  }
};

struct GetOptions {
  std::optional<ByteRange> range;
  // Only this version: an ETag from a listing or HEAD; a changed object fails
  // with kFailedPrecondition instead of mixing versions.
  std::string if_match;
  uint64_t max_bytes = 256ull << 20;  // get_object keeps the body in memory
};

struct PutOptions {
  std::string content_type;  // empty: S3's default (binary/octet-stream)
  // User metadata; names are lower-case letters, digits, '-' and '_', values
  // printable ASCII (S3 stores them as HTTP headers). E.g. {"sha256": hex}.
  std::map<std::string, std::string> metadata;
};

// Called with the number of bytes moved since the last call, from any of the
// transfer's threads (so it must be thread-safe; kennel::Progress::advance is).
using ProgressCallback = std::function<void(uint64_t bytes)>;

struct UploadOptions {
  PutOptions put;
  // Files up to this size go in one PUT; larger ones as a multipart upload.
  uint64_t multipart_threshold = 64ull << 20;
  // Multipart part size: S3 wants 5 MiB..5 GiB and at most 10,000 parts, so it
  // grows for files above 160 GiB. Larger parts: fewer requests, more to resend on a failure.
  uint64_t part_size = 16ull << 20;
  // Parts in flight at once: throughput grows with it until the link is full.
  int concurrency = 4;
  ProgressCallback on_progress;
};

struct DownloadOptions {
  // Only this version (see GetOptions::if_match).
  std::string if_match;
  // Continue from DEST.part when its recorded ETag still matches the object.
  bool resume = true;
  ProgressCallback on_progress;
};

struct PutResult {
  std::string etag;
};

}  // namespace kennel::s3

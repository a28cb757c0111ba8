// Folders of files in S3: a local tree uploaded under a prefix, and a prefix
// mirrored into a local folder through a content-addressed object cache. This
// is how datasets (`kennel data upload`, `--data s3://`) and model directories
// (`kennel serve s3://.../model/`) move; the job then runs on local files, as
// the cloud's "File mode" does.
//
// Upload: every file's SHA-256 goes into the object's metadata
// (x-amz-meta-sha256); an object whose size and recorded SHA-256 already match
// is skipped (an ETag is not an MD5 for multipart or KMS-encrypted objects).
// Sync: the prefix is listed (every page); each object version is stored once
// in `objects_dir`, named by SHA-256(bucket, key, ETag), so an unchanged object
// is never fetched again and a changed one (new ETag) is. Downloads go to a
// .part file renamed into place when complete (s3/client.h), so a partial
// download is never used; a recorded SHA-256 is checked after download. The
// view is then a folder of hard links to those files, with files no longer
// in the prefix removed.
//
// The manifest rule (S3 has no multi-object commit): a set of files that
// belongs together (a checkpoint, a model directory, a job's records) is
// uploaded file by file and then committed by `kennel-manifest.json`, written
// last, listing each file's size, SHA-256 and ETag. A sync of a folder that
// has a manifest takes exactly the files it lists (so a set still being
// uploaded, or a newer one half-written, is never mixed in); a listed file
// that is missing or has another size is kDataLoss. A folder without one
// (a dataset from `kennel data upload`) is taken whole.
//
// Keys that would leave the view (empty, "." or ".." segments) are skipped
// with a warning; "folder" marker keys ending in '/' are ignored.
// Thread-safety: concurrent syncs of one view (trials of a tuning job, ranks
// of a data-parallel job) are serialised by a lock file beside the view;
// different views may share objects (a per-object lock guards the download).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "kennel/s3/client.h"
#include "kennel/store/layout.h"
#include "kennel/util/status.h"

namespace kennel::data {

struct S3TransferOptions {
  // Objects in flight at once: loopback and LAN stores fill their link at 8-16;
  // more mostly adds connections.
  int concurrency = 8;
  bool quiet = false;  // no progress bar
};

struct UploadSummary {
  size_t files = 0;
  size_t uploaded = 0;
  size_t skipped = 0;  // already there with the same SHA-256
  uint64_t bytes_uploaded = 0;
};

// Uploads every regular file below `dir` to `prefix` + its relative path ('/'
// separated). Errors: kNotFound / kInvalidArgument for `dir`, S3's (errors.h)
// for the first object that fails, naming it.
Result<UploadSummary> upload_tree(const s3::S3Client& client, const std::filesystem::path& dir,
                                  const s3::S3Uri& prefix, const S3TransferOptions& options);

struct SyncedTree {
  std::filesystem::path root;  // the view
  // Relative path in the view ('/' separated) -> what the object is:
  // "s3://bucket/key etag=... size=...". Changes whenever the object does.
  std::map<std::string, std::string> identities;
  size_t downloaded = 0;
  uint64_t bytes_downloaded = 0;  // received by this sync: a resumed object counts only the rest
};

// The prefix as a folder: "s3://b/data" and "s3://b/data/" both list "data/".
std::string folder_prefix(const std::string& key);

// Mirrors `prefix` into `view`, downloading only object versions missing from
// `objects_dir`. Errors: kNotFound naming the bucket or prefix when it is
// missing or holds no objects; S3's for listing and downloads (the first
// failure, naming the key); kDataLoss when an object's bytes do not match the
// SHA-256 in its metadata; the filesystem's for the cache.
Result<SyncedTree> sync_prefix(const s3::S3Client& client, const s3::S3Uri& prefix,
                               const std::filesystem::path& objects_dir,
                               const std::filesystem::path& view,
                               const S3TransferOptions& options);

inline constexpr const char* kManifestName = "kennel-manifest.json";

struct CommittedFile {
  std::filesystem::path local;
  std::string relative;  // '/' separated, below the folder
};

// Uploads `files` under `folder` (a prefix; '/' added) and commits them with
// the manifest. Files the folder's current manifest already lists with the
// same SHA-256 are not sent again; objects that only the previous manifest
// listed are deleted after the new one is written. Errors: the first failing
// file's or S3's, naming the key; nothing is committed then.
Status upload_committed_set(const s3::S3Client& client, const s3::S3Uri& folder,
                            const std::vector<CommittedFile>& files, const S3TransferOptions& options);

// `uri` ("s3://bucket/prefix") synced into the home's S3 cache: objects under
// cache.objects(), the view under cache.dataset(...) or cache.model(...),
// named by a hash of the URI. Settings and credentials from the AWS chain
// (s3/config.h). Errors: kInvalidArgument for a URI that is not s3://BUCKET/...,
// the chain's (no credentials, ...), sync_prefix's.
enum class SyncedKind { kDataset, kModel };
Result<SyncedTree> sync_s3_folder(const std::string& uri, const store::S3CachePaths& cache,
                                  SyncedKind kind, const S3TransferOptions& options);

}  // namespace kennel::data

// Filesystem helpers: whole-file reads that report why they failed, and
// atomic writes (temp file in the same directory, fsync, rename, fsync of the
// directory) so a reader never sees a half-written file, even after SIGKILL.
// Thread-safety: free functions, safe from any thread on distinct paths.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "kennel/util/status.h"

namespace kennel {

// Reads a regular file into memory. Errors: kNotFound (missing / dangling
// symlink), kPermissionDenied, kInvalidArgument (not a regular file: a
// directory, FIFO or device — never blocks on one), kDataLoss (read error),
// kResourceExhausted (larger than max_bytes).
Result<std::vector<uint8_t>> read_file_bytes(const std::filesystem::path& path,
                                             uint64_t max_bytes = UINT64_MAX);
Result<std::string> read_file_text(const std::filesystem::path& path);

// Reads `root / relative` without following any symbolic link below `root`, so a
// path checked earlier cannot be swapped for a link that leads elsewhere before it
// is opened. `relative` must be plain (no "..", not absolute). Errors as
// read_file_bytes, plus kPermissionDenied when a component is a symbolic link and
// kInvalidArgument for a path that is not plain.
Result<std::vector<uint8_t>> read_file_beneath(const std::filesystem::path& root,
                                               const std::filesystem::path& relative,
                                               uint64_t max_bytes = UINT64_MAX);

// Writes `bytes` to `path` atomically. The parent directory must exist.
Status write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

// Creates `dir` and its parents; a clear error when it exists as a file or is not writable.
Status create_directories(const std::filesystem::path& dir);

// An exclusive advisory lock (flock) on a lock file, held until destruction:
// lets several processes agree that one of them computes a shared entry while
// the others wait and then reuse it. A lock that cannot be taken (unwritable
// directory) is reported by held() == false rather than an error: callers
// then just proceed unlocked.
class FileLock {
 public:
  explicit FileLock(const std::filesystem::path& path);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  bool held() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// Path as UTF-8 text for messages and JSON (Linux paths are bytes; non-UTF-8 bytes pass through).
inline std::string path_text(const std::filesystem::path& path) { return path.string(); }

}  // namespace kennel

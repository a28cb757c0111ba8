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

// Writes `bytes` to `path` atomically. The parent directory must exist.
Status write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

// Creates `dir` and its parents; a clear error when it exists as a file or is not writable.
Status create_directories(const std::filesystem::path& dir);

// Path as UTF-8 text for messages and JSON (Linux paths are bytes; non-UTF-8 bytes pass through).
inline std::string path_text(const std::filesystem::path& path) { return path.string(); }

}  // namespace kennel

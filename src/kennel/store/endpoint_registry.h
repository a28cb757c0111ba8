// Running inference endpoints (`kennel serve` processes) of a home, so that a
// dashboard can list them: a server registers itself once it is ready, with
// one small JSON file (<home>/endpoints/<host>-<pid>.json, see layout.h), and
// removes it when it stops. A server killed with SIGKILL cannot remove its
// file, so readers keep only entries whose process is still the one that
// wrote it (same pid and same process start time: a reused pid does not count).
// Entries written on another host cannot be checked here and are returned with
// `same_host == false`; the caller decides (Studio probes their /ping).
//
// Files only, no locks: each server owns its own file, written atomically.
// Thread-safety: free functions and a move-only handle.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "kennel/util/status.h"

namespace kennel::store {

struct EndpointRecord {
  std::string url;        // how to reach it, e.g. http://127.0.0.1:8080
  std::string model;      // what the user asked to serve: a job name or a model directory
  std::string model_dir;  // the resolved model directory
  std::string host;       // gethostname() of the serving machine
  int64_t pid = 0;
  uint64_t process_start = 0;  // /proc/<pid>/stat field 22: tells a reused pid apart
  double started_at = 0;       // Unix seconds
  bool same_host = true;       // set by list_endpoints, not stored
};

// Registers an endpoint while alive: writes the file on create(), removes it
// on destruction. Fails (kPermissionDenied, kNotFound...) naming the file when
// the home cannot take it; serving goes on without a registration then.
class EndpointRegistration {
 public:
  // Fills host, pid, process_start and started_at of `record` from this process.
  static Result<EndpointRegistration> create(const std::filesystem::path& home,
                                             EndpointRecord record);
  EndpointRegistration(EndpointRegistration&& other) noexcept : path_(std::move(other.path_)) {
    other.path_.clear();
  }
  EndpointRegistration& operator=(EndpointRegistration&&) = delete;
  EndpointRegistration(const EndpointRegistration&) = delete;
  ~EndpointRegistration();
  const std::filesystem::path& path() const { return path_; }

 private:
  explicit EndpointRegistration(std::filesystem::path path) : path_(std::move(path)) {}
  std::filesystem::path path_;
};

// The registered endpoints of `home` whose process still runs (entries of other
// hosts included, unchecked), oldest first. Unreadable or malformed files are
// skipped: a half-written file is never there (atomic writes), so they are debris.
std::vector<EndpointRecord> list_endpoints(const std::filesystem::path& home);

// /proc/<pid>/stat's start time of a process, or 0 when it does not exist.
uint64_t process_start_ticks(int64_t pid);

}  // namespace kennel::store

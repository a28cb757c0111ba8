// The job registry: one row per training or tuning job in an SQLite database
// (`<home>/kennel.db`, WAL mode), the embedded default that `kennel jobs`
// reads, like the cloud's list/describe-training-job.
//
// Safe for several processes at once (trainers, tuners, `kennel jobs`):
// SQLite's locking with WAL and a busy timeout; each write is one
// transaction. A job whose process died without updating its row is found by
// its stale heartbeat (and, on the same host, a dead pid) and recorded as
// Failed when read. Thread-safety: one JobRegistry per thread.
//
// A reader that must never hold up the writers (a dashboard) opens it
// read-only: no schema change, no WAL switch, a short busy timeout, and dead
// jobs are reported as Failed without writing that down.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kennel/util/status.h"

struct sqlite3;

namespace kennel::store {

enum class JobStatus { kInProgress, kCompleted, kFailed, kStopped };
const char* job_status_name(JobStatus status);  // "InProgress", ...
std::optional<JobStatus> parse_job_status(const std::string& name);

struct JobRecord {
  std::string name;
  std::string kind = "training";  // "training" | "tuning"
  std::string parent;             // the tuning job of a trial, else empty
  JobStatus status = JobStatus::kInProgress;
  std::string failure_reason;     // why it Failed or Stopped
  std::string spec_json;          // the resolved spec
  std::string job_dir;
  double created_at = 0, started_at = 0, ended_at = 0, heartbeat_at = 0;  // Unix seconds
  int64_t pid = 0;
  std::string host;
  std::string final_metrics_json = "{}";
  std::string artifacts_json = "{}";

  double duration_seconds(double now) const;
};

struct JobFilter {
  std::string kind;         // empty: any
  std::string parent;       // empty: any
  std::optional<JobStatus> status;
  std::string name_contains;
  int64_t limit = 0;        // 0: all
};

class JobRegistry {
 public:
  // Opens (creating if needed) the registry database. Errors name the file
  // and the reason (unwritable directory, not a database, ...).
  static Result<std::unique_ptr<JobRegistry>> open(const std::filesystem::path& db_path);
  // Opens an existing registry for reading only (SQLITE_OPEN_READONLY): every
  // write answers kFailedPrecondition; a statement waits at most
  // `busy_timeout_seconds` for a writer's lock, then answers kUnavailable.
  // kNotFound when the file does not exist (no job has run with this home).
  static Result<std::unique_ptr<JobRegistry>> open_read_only(const std::filesystem::path& db_path,
                                                             double busy_timeout_seconds = 2);
  ~JobRegistry();
  JobRegistry(const JobRegistry&) = delete;
  JobRegistry& operator=(const JobRegistry&) = delete;

  // kAlreadyExists when the name is taken.
  Status create_job(const JobRecord& record);
  // Updates status (and reason, end time when terminal). kNotFound for an unknown job.
  Status set_status(const std::string& name, JobStatus status, const std::string& reason = "");
  // Re-opens a finished job for resumption: InProgress, new pid/host/heartbeat, no end time.
  Status reopen_job(const std::string& name);
  Status heartbeat(const std::string& name);
  Status set_final_metrics(const std::string& name, const std::string& metrics_json);
  Status set_artifacts(const std::string& name, const std::string& artifacts_json);

  // Reads a job; an InProgress job whose heartbeat is older than the stale
  // limit (or whose process on this host is gone) is marked Failed first; a
  // read-only registry reports it as Failed without writing.
  Result<JobRecord> get_job(const std::string& name);
  Result<std::vector<JobRecord>> list_jobs(const JobFilter& filter = {});

  // Heartbeats older than this mean the process is gone (the trainer beats every few seconds).
  void set_stale_after_seconds(double seconds) { stale_after_seconds_ = seconds; }

 private:
  JobRegistry(sqlite3* db, std::filesystem::path path, bool read_only)
      : db_(db), path_(std::move(path)), read_only_(read_only) {}
  Status exec(const std::string& sql);
  Status check_writable() const;
  Status mark_stale_jobs();
  // Why an InProgress row's process is gone, or empty when it may be alive.
  std::string stale_reason(const JobRecord& record, double now) const;
  void settle_stale(JobRecord& record, double now) const;

  sqlite3* db_;
  std::filesystem::path path_;
  bool read_only_ = false;
  double stale_after_seconds_ = 120;
};

double unix_now();

// Asks a running job to stop: SIGTERM to its process, which checkpoints and
// ends Stopped (`kennel train --resume` finishes it). kFailedPrecondition when
// the job is not InProgress, runs on another host, or cannot be signalled.
Status request_stop(const JobRecord& job);

}  // namespace kennel::store

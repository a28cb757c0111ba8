// The job registry: one row per training, tuning or command job, what
// `kennel jobs` reads, like the cloud's list/describe-training-job. An
// interface; the store (store.h) implements it on the embedded SQLite file of
// a Kennel home (`<home>/kennel.db`, WAL mode) or on a shared PostgreSQL.
//
// Safe for several processes at once (trainers, tuners, workers on other
// hosts, `kennel jobs`): each write is one transaction. A job whose process
// died without updating its row is found by its stale heartbeat (and, on the
// same host, a dead pid) and recorded as Failed when read; a row with pid 0
// has no owning process (a study that waits for its workers) and never goes
// stale. Thread-safety: one JobRegistry per thread.
//
// A reader that must never hold up the writers (a dashboard) opens the store
// read-only (store.h, open_store_read_only): a short wait for locks, every
// write refused, and a dead job reported as Failed without writing that down.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kennel/util/status.h"

namespace kennel::store {

enum class JobStatus { kInProgress, kCompleted, kFailed, kStopped };
const char* job_status_name(JobStatus status);  // "InProgress", ...
std::optional<JobStatus> parse_job_status(const std::string& name);

struct JobRecord {
  std::string name;
  std::string kind = "training";  // "training" | "tuning" | "command"
  std::string parent;             // the tuning job of a trial, else empty
  JobStatus status = JobStatus::kInProgress;
  std::string failure_reason;     // why it Failed or Stopped
  std::string spec_json;          // the resolved spec
  std::string job_dir;            // on `host`
  double created_at = 0, started_at = 0, ended_at = 0, heartbeat_at = 0;  // Unix seconds (the store's clock)
  int64_t pid = 0;                // 0: the caller's pid on create; kNoOwner: nobody's
  std::string host;               // empty: this host on create
  std::string final_metrics_json = "{}";
  std::string artifacts_json = "{}";

  static constexpr int64_t kNoOwner = -1;  // create a row no process owns (pid 0 in the store)
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
  // The embedded registry at `db_path` (SQLite), created if needed. Errors name
  // the file and the reason (unwritable directory, not a database, newer schema).
  static Result<std::unique_ptr<JobRegistry>> open(const std::filesystem::path& db_path);

  // The same file opened for reading only (open_store_read_only in store.h):
  // kNotFound when it does not exist, writes answer kFailedPrecondition.
  static Result<std::unique_ptr<JobRegistry>> open_read_only(const std::filesystem::path& db_path,
                                                             double busy_timeout_seconds = 2);

  virtual ~JobRegistry() = default;

  // kAlreadyExists when the name is taken.
  virtual Status create_job(const JobRecord& record) = 0;
  // Creates the row or overwrites every field of an existing one (InProgress,
  // new owner): a tuning worker's copy of a trial it re-runs on its host.
  virtual Status replace_job(const JobRecord& record) = 0;
  // Updates status (and reason, end time when terminal). kNotFound for an unknown job.
  virtual Status set_status(const std::string& name, JobStatus status, const std::string& reason = "") = 0;
  // Re-opens a finished job for resumption: InProgress, new pid/host/heartbeat, no end time.
  virtual Status reopen_job(const std::string& name) = 0;
  virtual Status heartbeat(const std::string& name) = 0;
  virtual Status set_final_metrics(const std::string& name, const std::string& metrics_json) = 0;
  virtual Status set_artifacts(const std::string& name, const std::string& artifacts_json) = 0;

  // Reads a job; an InProgress job whose heartbeat is older than the stale
  // limit (or, on this host, whose pid is dead) is marked Failed first; a
  // read-only registry reports it as Failed without writing (and a status
  // filter applies to what it reports).
  virtual Result<JobRecord> get_job(const std::string& name) = 0;
  virtual Result<std::vector<JobRecord>> list_jobs(const JobFilter& filter = {}) = 0;

  // What error messages call this registry: "'<home>/kennel.db'", "postgresql://host:5432/db".
  virtual std::string describe() const = 0;

  // Heartbeats older than this mean the process is gone (the trainer beats every few seconds).
  void set_stale_after_seconds(double seconds) { stale_after_seconds_ = seconds; }

 protected:
  double stale_after_seconds_ = 120;
};

double unix_now();
std::string this_host();  // gethostname()

// Asks a running job to stop: SIGTERM to its process, which checkpoints and
// ends Stopped (`kennel train --resume` finishes it). kFailedPrecondition when
// the job is not InProgress, has no owning process (a study run by tuning
// workers), runs on another host, or cannot be signalled. What `kennel jobs
// stop` and Studio's Stop button both do.
Status request_stop(const JobRecord& job);

}  // namespace kennel::store

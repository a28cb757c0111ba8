// Studies and their trials in the store: what tuning workers on any host
// share. The store knows nothing of strategies: a claim asks the caller's
// NewTrialDecider for a new trial's hyperparameters while it holds the
// study's lock, so every worker sees the same trials and the same order.
//
// The claim/lease protocol (docs/tuning.md, "Tune across machines"):
//   claim     one transaction holding the study's lock (PostgreSQL:
//             SELECT ... FOR UPDATE on the study row; SQLite: BEGIN
//             IMMEDIATE): re-queue trials whose lease expired more than the
//             grace time ago, refuse when max_parallel_jobs trials run, else
//             take the lowest pending trial, else create trial number
//             count(trials) if count < max_jobs. Each claim gets a new random
//             token, attempts + 1 and a lease (the store's clock + lease_seconds).
//   fencing   renew, report and finish write only `WHERE token = <the claim's
//             token>`; a re-queue clears the token, so a worker cut off past
//             its lease can never write over the re-run (those calls answer false).
// Trial states: pending (waiting for a claim: a retry or a re-queue), running,
// Completed, Stopped, Failed. Thread-safety: one StudyStore per thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kennel/store/job_registry.h"
#include "kennel/util/status.h"

namespace kennel::store {

inline constexpr const char* kTrialPending = "pending";
inline constexpr const char* kTrialRunning = "running";
inline constexpr const char* kTrialCompleted = "Completed";
inline constexpr const char* kTrialStopped = "Stopped";
inline constexpr const char* kTrialFailed = "Failed";

struct TrialRecord {
  int64_t index = 0;
  std::string name;
  nlohmann::json hyperparameters = nlohmann::json::object();
  std::string source;  // how the values were chosen: random | grid | startup | tpe | warm-start-best
  std::string state = kTrialPending;
  bool early_stopped = false;
  std::string reason;
  std::optional<double> objective;
  std::vector<double> intermediate;  // the objective metric after each epoch (raw, as reported)
  int64_t epochs_run = 0;
  int64_t attempts = 0;
  double started_at = 0, ended_at = 0;
  // The lease of the latest claim.
  std::string worker;     // host:pid of the worker that holds (or last held) it
  std::string host;       // where it runs (or ran): its job directory is there
  std::string launch_id;  // "pid 1234", "slurm 57"
  double lease_expires_at = 0;
  double heartbeat_at = 0;
  std::string token;  // the latest claim's lease token (never printed)

  bool finished() const;
  nlohmann::json to_json() const;  // without the lease token
  static TrialRecord from_json(const nlohmann::json& object);
};

struct StudyRecord {
  std::string name;
  std::string spec_json;          // the resolved study spec
  int64_t max_jobs = 1;
  int64_t max_parallel_jobs = 1;  // trials running at once, across every worker
  int64_t max_retries = 1;        // re-runs of a trial that crashed or lost its worker
  double lease_seconds = 60;      // a claim's lease; workers renew it every lease/4
  double requeue_grace_seconds = 30;  // after expiry, before another worker may re-run it
  bool exhausted = false;         // the strategy has nothing more to suggest (grid)
  double created_at = 0;
};

// What the strategy says when the claim may create trial `index`.
struct NewTrialDecision {
  enum class Kind { kCreate, kWait, kExhausted };
  Kind kind = Kind::kWait;
  std::string name;
  nlohmann::json hyperparameters = nlohmann::json::object();
  std::string source;
  std::string why;  // kWait: what it waits for
};
using NewTrialDecider =
    std::function<NewTrialDecision(const StudyRecord& study, const std::vector<TrialRecord>& trials, int64_t index)>;

struct ClaimRequest {
  std::string study;
  std::string worker;  // host:pid[:tag]
  std::string host;
  NewTrialDecider decide;
};

struct Lease {
  std::string study;
  int64_t index = 0;
  std::string token;
};

struct ClaimResult {
  enum class Kind {
    kClaimed,      // `trial` is ours under `lease`
    kBusy,         // max_parallel_jobs trials run already
    kWait,         // the strategy waits for earlier trials (detail says which)
    kNothingLeft,  // every trial is created; others still run (one may be re-queued later)
    kStudyOver,    // every trial finished, or the study is not InProgress
  };
  Kind kind = Kind::kBusy;
  TrialRecord trial;
  Lease lease;
  std::string detail;
  std::vector<TrialRecord> requeued;   // trials this claim re-queued or failed for a lost lease
  std::vector<TrialRecord> snapshot;   // every trial as the claim saw them (after its changes)
};

struct TrialOutcome {
  std::string state;  // Completed | Stopped | Failed, or pending (run it again: a retry, an interruption)
  bool early_stopped = false;
  std::string reason;
  std::optional<double> objective;
  std::vector<double> intermediate;
  int64_t epochs_run = 0;
};

class StudyStore {
 public:
  virtual ~StudyStore() = default;

  // The study row and its tuning job's registry row, in one transaction.
  // kAlreadyExists (naming the store) when a study or job of that name exists.
  virtual Status create_study(const StudyRecord& study, const JobRecord& job) = 0;
  virtual Result<StudyRecord> get_study(const std::string& name) = 0;
  // Trials by index.
  virtual Result<std::vector<TrialRecord>> list_trials(const std::string& study) = 0;

  virtual Result<ClaimResult> claim_trial(const ClaimRequest& request) = 0;
  // Extends the lease (and beats the heartbeat). false: the lease is lost (re-queued, or finished by another).
  virtual Result<bool> renew_lease(const Lease& lease) = 0;
  // The running trial's intermediate values and where it runs. false: lease lost.
  virtual Result<bool> report_progress(const Lease& lease, const std::vector<double>& intermediate,
                                       int64_t epochs_run, const std::string& launch_id) = 0;
  // Records the outcome (or puts it back to pending). false: lease lost, nothing written.
  virtual Result<bool> finish_trial(const Lease& lease, const TrialOutcome& outcome) = 0;

  // The study row alone, for a study whose registry row exists already (one
  // an older kennel recorded in files). kAlreadyExists when it is there.
  virtual Status import_study(const StudyRecord& study) = 0;
  // Unfenced: a resumed study's owner sets its interrupted trials back to pending,
  // or records one that completed while its tuner was down.
  virtual Status put_trial(const std::string& study, const TrialRecord& trial) = 0;
  // The store's clock (Unix seconds): what leases are measured with.
  virtual Result<double> now() = 0;
};

}  // namespace kennel::store

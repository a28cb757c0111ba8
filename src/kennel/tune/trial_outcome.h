// How a trial ended, decided from the facts the worker gathered: how its
// process (or Slurm job) ended, whether the tuner stopped it and why, the
// Kennel trial's own registry row, the objective it reported, and its
// attempts. A crash (a signal nobody sent, a lost node, no recorded outcome)
// is re-run while attempts <= max_retries; a trial the worker interrupts (a
// stopping worker) goes back to pending; everything else is final. Pure.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "kennel/store/job_registry.h"
#include "kennel/store/study_store.h"
#include "kennel/tune/trial_launcher.h"

namespace kennel::tune {

struct TrialEndFacts {
  bool external = false;  // a --command trial (else `kennel train`)
  TrialEnd end;
  bool terminated_by_us = false;
  std::optional<std::string> early_stop_reason;  // why the tuner stopped it early
  std::optional<store::JobStatus> row_status;    // a Kennel trial's own outcome, if it recorded one
  std::string row_reason;
  std::optional<double> objective;
  int64_t attempts = 1;
  int64_t max_retries = 1;
  std::string objective_metric;
  std::string objective_regex;                // external
  std::vector<std::string> metrics_seen;      // Kennel: what metrics.jsonl had
  std::string log_tail;                       // the last output lines, for reasons
};

struct ClassifiedEnd {
  store::TrialOutcome outcome;     // state: Completed | Stopped | Failed | pending
  store::JobStatus job_status = store::JobStatus::kFailed;  // for the trial's registry row
  bool retry = false;              // pending because it crashed (a retry), not because we stopped it
  bool interrupted = false;        // pending because the worker is stopping
  std::string message;             // the worker's log line ("" when the caller says it)
};

ClassifiedEnd classify_trial_end(const TrialEndFacts& facts);

}  // namespace kennel::tune

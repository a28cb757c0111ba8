// The claim rule of study_store.h as a pure function of what the claim's
// transaction read: which expired leases to re-queue (or fail, when the trial
// has used its retries), whether the study's parallelism allows one more
// running trial, and which trial to take — the lowest pending one, else a new
// one from the decider. Both store backends apply the plan it returns inside
// the same transaction. No I/O.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "kennel/store/study_store.h"

namespace kennel::store {

struct ClaimPlan {
  ClaimResult::Kind kind = ClaimResult::Kind::kBusy;
  std::string detail;
  // Re-queued (state pending) or failed trials, each with the token its lease had.
  std::vector<std::pair<TrialRecord, std::string>> requeued;
  std::optional<TrialRecord> claimed;  // an existing pending trial, now running under the new token
  std::optional<TrialRecord> created;  // a new trial, running under the new token
  bool exhausted_now = false;          // the decider answered kExhausted
  std::vector<TrialRecord> snapshot;   // every trial after the plan
};

// `trials` by index; `now` is the store's clock; `token` the new lease's token.
ClaimPlan plan_claim(const StudyRecord& study, bool study_in_progress, std::vector<TrialRecord> trials, double now,
                     const ClaimRequest& request, const std::string& token);

// Why a lease was given up for lost, for the trial's reason and the workers' logs.
std::string lost_lease_reason(const TrialRecord& trial, double now);

}  // namespace kennel::store

#include "kennel/store/claim_plan.h"

#include <algorithm>

#include <fmt/format.h>

namespace kennel::store {

std::string lost_lease_reason(const TrialRecord& trial, double now) {
  return fmt::format("its worker {} on {} stopped renewing the lease {:.0f} s ago (killed, frozen, or cut off "
                     "from the store)",
                     trial.worker.empty() ? "?" : trial.worker, trial.host.empty() ? "?" : trial.host,
                     std::max(0.0, now - trial.lease_expires_at));
}

ClaimPlan plan_claim(const StudyRecord& study, bool study_in_progress, std::vector<TrialRecord> trials, double now,
                     const ClaimRequest& request, const std::string& token) {
  ClaimPlan plan;
  auto finish = [&](ClaimResult::Kind kind, std::string detail) {
    plan.kind = kind;
    plan.detail = std::move(detail);
    plan.snapshot = std::move(trials);
    return plan;
  };
  if (!study_in_progress) return finish(ClaimResult::Kind::kStudyOver, "the study is not in progress");

  // 1. Leases that expired more than the grace time ago: the worker is gone.
  for (auto& trial : trials) {
    if (trial.state != kTrialRunning || trial.lease_expires_at <= 0) continue;
    if (now <= trial.lease_expires_at + study.requeue_grace_seconds) continue;
    const std::string old_token = trial.token;
    const std::string why = lost_lease_reason(trial, now);
    if (trial.attempts <= study.max_retries) {
      trial.state = kTrialPending;
      trial.reason = fmt::format("re-queued: {}", why);
    } else {
      trial.state = kTrialFailed;
      trial.reason = fmt::format("lost after {} attempt{}: {}", trial.attempts, trial.attempts == 1 ? "" : "s", why);
      trial.ended_at = now;
    }
    trial.lease_expires_at = 0;
    trial.token.clear();
    plan.requeued.emplace_back(trial, old_token);
  }

  const auto running = std::count_if(trials.begin(), trials.end(),
                                     [](const TrialRecord& t) { return t.state == kTrialRunning; });
  const auto all_finished = [&] {
    return std::all_of(trials.begin(), trials.end(), [](const TrialRecord& t) { return t.finished(); });
  };
  const bool all_created = study.exhausted || static_cast<int64_t>(trials.size()) >= study.max_jobs;
  if (all_created && all_finished()) return finish(ClaimResult::Kind::kStudyOver, "every trial has finished");
  if (running >= study.max_parallel_jobs) {
    return finish(ClaimResult::Kind::kBusy,
                  fmt::format("{} trials run already (max_parallel_jobs {})", running, study.max_parallel_jobs));
  }

  auto take = [&](TrialRecord& trial) {
    trial.state = kTrialRunning;
    trial.token = token;
    ++trial.attempts;
    trial.worker = request.worker;
    trial.host = request.host;
    // launch_id still names the previous attempt's process or job (the store
    // clears it): a worker can cancel a batch job its lost predecessor left.
    trial.early_stopped = false;
    trial.lease_expires_at = now + study.lease_seconds;
    trial.heartbeat_at = now;
    if (trial.started_at <= 0) trial.started_at = now;
    trial.ended_at = 0;
  };

  // 2. The lowest pending trial (a retry or a re-queue) goes first.
  for (auto& trial : trials) {
    if (trial.state != kTrialPending) continue;
    take(trial);
    plan.claimed = trial;
    return finish(ClaimResult::Kind::kClaimed, "");
  }

  // 3. A new trial, while the budget and the strategy allow.
  if (!all_created) {
    const auto index = static_cast<int64_t>(trials.size());
    NewTrialDecision decision = request.decide ? request.decide(study, trials, index) : NewTrialDecision{};
    if (decision.kind == NewTrialDecision::Kind::kCreate) {
      TrialRecord trial;
      trial.index = index;
      trial.name = decision.name;
      trial.hyperparameters = std::move(decision.hyperparameters);
      trial.source = std::move(decision.source);
      take(trial);
      trials.push_back(trial);
      plan.created = trial;
      return finish(ClaimResult::Kind::kClaimed, "");
    }
    if (decision.kind == NewTrialDecision::Kind::kWait) return finish(ClaimResult::Kind::kWait, decision.why);
    plan.exhausted_now = true;
    if (all_finished()) return finish(ClaimResult::Kind::kStudyOver, "the search space is exhausted");
  }
  return finish(ClaimResult::Kind::kNothingLeft, "every trial is claimed; waiting for those still running");
}

}  // namespace kennel::store

#include "kennel/tune/trial_outcome.h"

#include <fmt/format.h>

namespace kennel::tune {

using store::JobStatus;

ClassifiedEnd classify_trial_end(const TrialEndFacts& facts) {
  ClassifiedEnd result;
  store::TrialOutcome& out = result.outcome;
  out.objective = facts.objective;
  const ExitInfo& exit = facts.end.exit;
  const bool scheduler_verdict = facts.end.verdict != TrialEnd::Verdict::kExited;
  const bool completed = !scheduler_verdict && (facts.external ? (!exit.signaled && exit.code == 0)
                                                               : facts.row_status == JobStatus::kCompleted);
  const bool we_stopped = facts.terminated_by_us && !scheduler_verdict;
  // A crash: the process died in a way no training error explains (a signal we
  // did not send, a lost node, or no outcome recorded).
  // `kennel train` exits 1 for a failed job and 2 for a usage error (a bad spec,
  // refused before any row exists): both are answers, not crashes.
  const bool clean_exit = !exit.signaled && (exit.code == 1 || exit.code == 2);
  const bool crashed =
      facts.end.verdict == TrialEnd::Verdict::kLostNode ||
      (!completed && !we_stopped && !scheduler_verdict &&
       (facts.external ? exit.signaled || exit.died_in_shell()
                       : (exit.signaled || facts.row_status == JobStatus::kInProgress ||
                          (!facts.row_status && !clean_exit) || (exit.code != 0 && !clean_exit))));

  if (completed && facts.objective) {
    out.state = store::kTrialCompleted;
    result.job_status = JobStatus::kCompleted;
    return result;
  }
  if (completed) {
    out.state = store::kTrialFailed;
    out.reason = facts.external
                     ? fmt::format("the objective '{}' was never reported: its regex '{}' matched no line of the "
                                   "command's output (last output: {})",
                                   facts.objective_metric, facts.objective_regex, facts.log_tail)
                     : fmt::format("the objective '{}' was never reported (metrics.jsonl has: {})",
                                   facts.objective_metric,
                                   facts.metrics_seen.empty() ? std::string("nothing")
                                                              : fmt::format("{}", fmt::join(facts.metrics_seen, ", ")));
    result.message = fmt::format("failed: {}", out.reason);
    return result;
  }
  if (we_stopped && facts.early_stop_reason) {
    out.state = store::kTrialStopped;
    out.early_stopped = true;
    out.reason = *facts.early_stop_reason;
    result.job_status = JobStatus::kStopped;
    return result;
  }
  if (we_stopped) {
    // The worker itself is stopping: another worker (or `kennel tune resume`) runs it again.
    out.state = store::kTrialPending;
    out.reason = "interrupted with the tuning job";
    result.interrupted = true;
    result.job_status = JobStatus::kStopped;
    return result;
  }
  switch (facts.end.verdict) {
    case TrialEnd::Verdict::kCancelledOutside:
      out.state = store::kTrialStopped;
      out.reason = facts.end.detail;
      result.job_status = JobStatus::kStopped;
      result.message = fmt::format("stopped: {}", out.reason);
      return result;
    case TrialEnd::Verdict::kTimeLimit:
    case TrialEnd::Verdict::kOutOfMemory:
      out.state = store::kTrialFailed;
      out.reason = facts.end.detail;
      result.message = fmt::format("failed: {}", out.reason);
      return result;
    case TrialEnd::Verdict::kLostNode:
    case TrialEnd::Verdict::kExited:
      break;
  }
  if (crashed && facts.attempts <= facts.max_retries) {
    const std::string why = !facts.end.detail.empty() && scheduler_verdict ? facts.end.detail
                            : facts.row_reason.empty()                     ? exit.describe()
                                                                           : facts.row_reason;
    out.state = store::kTrialPending;
    out.reason = why;
    result.retry = true;
    result.message = fmt::format("crashed ({}); retrying ({} of {} retries)", why, facts.attempts, facts.max_retries);
    return result;
  }
  out.state = facts.row_status == JobStatus::kStopped && !crashed ? store::kTrialStopped : store::kTrialFailed;
  std::string why = scheduler_verdict ? facts.end.detail : facts.row_reason;
  if (why.empty()) {
    why = exit.describe();
    if (!facts.log_tail.empty()) why += ": " + facts.log_tail;
  }
  if (crashed) {
    why = fmt::format("crashed ({}) after {} attempt{}", why, facts.attempts, facts.attempts == 1 ? "" : "s");
  }
  out.reason = why;
  result.job_status = out.state == store::kTrialStopped ? JobStatus::kStopped : JobStatus::kFailed;
  result.message = fmt::format("{}: {}", out.state == store::kTrialStopped ? "stopped" : "failed", why);
  return result;
}

}  // namespace kennel::tune

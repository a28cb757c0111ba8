// What a trial's end means: each clause of classify_trial_end, and Slurm's
// job states as scontrol shows them.
#include "kennel/tune/trial_outcome.h"

#include <signal.h>

#include <gtest/gtest.h>

#include "kennel/tune/slurm_launcher.h"

namespace kennel::tune {
namespace {

using store::JobStatus;

TrialEndFacts kennel_trial(std::optional<JobStatus> row, int code = 0) {
  TrialEndFacts facts;
  facts.row_status = row;
  facts.end.exit.code = code;
  facts.objective_metric = "valid_accuracy";
  facts.objective = 0.8;
  return facts;
}

TEST(TrialOutcomeTest, ACompletedTrialWithItsObjective) {
  const auto end = classify_trial_end(kennel_trial(JobStatus::kCompleted));
  EXPECT_EQ(end.outcome.state, store::kTrialCompleted);
  EXPECT_EQ(end.job_status, JobStatus::kCompleted);
}

TEST(TrialOutcomeTest, CompletedWithoutTheObjectiveFailsNamingWhatWasThere) {
  auto facts = kennel_trial(JobStatus::kCompleted);
  facts.objective.reset();
  facts.metrics_seen = {"train_loss"};
  const auto end = classify_trial_end(facts);
  EXPECT_EQ(end.outcome.state, store::kTrialFailed);
  EXPECT_NE(end.outcome.reason.find("never reported (metrics.jsonl has: train_loss)"), std::string::npos);
}

TEST(TrialOutcomeTest, EarlyStopAndInterruptionByTheTuner) {
  auto facts = kennel_trial(JobStatus::kStopped);
  facts.terminated_by_us = true;
  facts.early_stop_reason = "median rule";
  auto end = classify_trial_end(facts);
  EXPECT_EQ(end.outcome.state, store::kTrialStopped);
  EXPECT_TRUE(end.outcome.early_stopped);
  facts.early_stop_reason.reset();
  end = classify_trial_end(facts);
  EXPECT_EQ(end.outcome.state, store::kTrialPending);
  EXPECT_TRUE(end.interrupted);
}

TEST(TrialOutcomeTest, ACrashIsRetriedThenFails) {
  auto facts = kennel_trial(JobStatus::kInProgress);
  facts.end.exit = {true, SIGKILL};
  facts.attempts = 1;
  auto end = classify_trial_end(facts);
  EXPECT_EQ(end.outcome.state, store::kTrialPending);
  EXPECT_TRUE(end.retry);
  facts.attempts = 2;
  end = classify_trial_end(facts);
  EXPECT_EQ(end.outcome.state, store::kTrialFailed);
  EXPECT_NE(end.outcome.reason.find("after 2 attempts"), std::string::npos) << end.outcome.reason;
}

TEST(TrialOutcomeTest, ATrainingErrorIsFinalWithTheJobsReason) {
  auto facts = kennel_trial(JobStatus::kFailed, 1);
  facts.row_reason = "batch size 64 is larger than the dataset";
  const auto end = classify_trial_end(facts);
  EXPECT_EQ(end.outcome.state, store::kTrialFailed);
  EXPECT_EQ(end.outcome.reason, facts.row_reason);
}

TEST(TrialOutcomeTest, AUsageErrorBeforeAnyRowIsFinalNotACrash) {
  auto facts = kennel_trial(std::nullopt, 2);
  facts.objective.reset();
  facts.log_tail = "error: spec key 'batch_size' (32) is larger than the 30 training images";
  const auto end = classify_trial_end(facts);
  EXPECT_EQ(end.outcome.state, store::kTrialFailed);
  EXPECT_FALSE(end.retry);
  EXPECT_NE(end.outcome.reason.find("batch_size"), std::string::npos) << end.outcome.reason;
  facts.end.exit = {true, SIGSEGV};  // no row and a signal: that one is a crash
  EXPECT_TRUE(classify_trial_end(facts).retry);
}

TEST(TrialOutcomeTest, ACommandsExitCodeAndSilentRegex) {
  TrialEndFacts facts;
  facts.external = true;
  facts.end.exit.code = 3;
  facts.log_tail = "boom";
  auto end = classify_trial_end(facts);
  EXPECT_EQ(end.outcome.state, store::kTrialFailed);
  EXPECT_NE(end.outcome.reason.find("exit code 3"), std::string::npos);
  facts.end.exit.code = 0;
  facts.objective_metric = "valid_accuracy";
  facts.objective_regex = "acc=([0-9.]+)";
  end = classify_trial_end(facts);
  EXPECT_NE(end.outcome.reason.find("matched no line"), std::string::npos);
}

TEST(TrialOutcomeTest, TheSchedulersVerdictsWin) {
  auto facts = kennel_trial(JobStatus::kStopped);
  facts.end.verdict = TrialEnd::Verdict::kCancelledOutside;
  facts.end.detail = "Slurm job 7 was cancelled outside the tuner (scancel)";
  auto end = classify_trial_end(facts);
  EXPECT_EQ(end.outcome.state, store::kTrialStopped);
  EXPECT_EQ(end.outcome.reason, facts.end.detail);
  facts.end.verdict = TrialEnd::Verdict::kTimeLimit;
  facts.end.detail = "TIMEOUT: Slurm job 7 ran past its time limit";
  end = classify_trial_end(facts);
  EXPECT_EQ(end.outcome.state, store::kTrialFailed);
  EXPECT_EQ(end.outcome.reason.rfind("TIMEOUT", 0), 0u);
  facts.end.verdict = TrialEnd::Verdict::kLostNode;
  facts.end.detail = "Slurm job 7 ended NODE_FAIL";
  facts.attempts = 1;
  end = classify_trial_end(facts);
  EXPECT_TRUE(end.retry) << end.outcome.reason;
  EXPECT_EQ(end.outcome.reason, facts.end.detail);
}

TEST(SlurmStatesTest, ScontrolFieldsMapToTrialEnds) {
  auto fields = parse_scontrol_fields(
      "JobId=12 JobName=s-001 UserId=root(0) JobState=COMPLETED Reason=None Dependency=(null) Requeue=1 "
      "Restarts=1 BatchFlag=1 ExitCode=0:0 RunTime=00:00:03 TimeLimit=UNLIMITED NodeList=node1");
  EXPECT_EQ(fields["JobState"], "COMPLETED");
  EXPECT_EQ(fields["Restarts"], "1");
  auto end = slurm_end(fields, false);
  ASSERT_TRUE(end);
  EXPECT_EQ(end->verdict, TrialEnd::Verdict::kExited);
  EXPECT_EQ(end->exit.code, 0);

  fields["JobState"] = "FAILED";
  fields["ExitCode"] = "3:0";
  EXPECT_EQ(slurm_end(fields, false)->exit.code, 3);
  fields["ExitCode"] = "0:9";
  EXPECT_TRUE(slurm_end(fields, false)->exit.signaled);

  fields["JobState"] = "CANCELLED";
  EXPECT_EQ(slurm_end(fields, false)->verdict, TrialEnd::Verdict::kCancelledOutside);
  EXPECT_EQ(slurm_end(fields, true)->verdict, TrialEnd::Verdict::kExited);  // our own scancel
  fields["JobState"] = "TIMEOUT";
  fields["TimeLimit"] = "00:01:00";
  end = slurm_end(fields, false);
  EXPECT_EQ(end->verdict, TrialEnd::Verdict::kTimeLimit);
  EXPECT_NE(end->detail.find("00:01:00"), std::string::npos);
  for (const char* state : {"NODE_FAIL", "BOOT_FAIL", "PREEMPTED"}) {
    fields["JobState"] = state;
    EXPECT_EQ(slurm_end(fields, false)->verdict, TrialEnd::Verdict::kLostNode) << state;
  }
  fields["JobState"] = "OUT_OF_MEMORY";
  EXPECT_EQ(slurm_end(fields, false)->verdict, TrialEnd::Verdict::kOutOfMemory);
  for (const char* state : {"PENDING", "RUNNING", "COMPLETING", "REQUEUED", "SUSPENDED", "CONFIGURING"}) {
    fields["JobState"] = state;
    EXPECT_FALSE(slurm_end(fields, false)) << state;
  }
}

}  // namespace
}  // namespace kennel::tune

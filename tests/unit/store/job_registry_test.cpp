#include "kennel/store/job_registry.h"

#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "unit/test_util.h"

namespace kennel::store {
namespace {

class JobRegistryTest : public ::testing::Test {
 protected:
  std::unique_ptr<JobRegistry> open() {
    auto registry = JobRegistry::open(dir_ / "kennel.db");
    EXPECT_TRUE(registry.ok()) << registry.status().to_string();
    return std::move(registry).value();
  }
  testing::TempDir dir_;
};

TEST_F(JobRegistryTest, CreateUpdateGetList) {
  auto registry = open();
  JobRecord record;
  record.name = "job-1";
  record.spec_json = R"({"lr": 0.1})";
  ASSERT_TRUE(registry->create_job(record).ok());
  auto job = registry->get_job("job-1");
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->status, JobStatus::kInProgress);
  EXPECT_EQ(job->pid, ::getpid());
  EXPECT_GT(job->started_at, 0);

  ASSERT_TRUE(registry->set_final_metrics("job-1", R"({"valid_accuracy": 0.9})").ok());
  ASSERT_TRUE(registry->set_status("job-1", JobStatus::kCompleted).ok());
  job = registry->get_job("job-1");
  EXPECT_EQ(job->status, JobStatus::kCompleted);
  EXPECT_GT(job->ended_at, 0);
  EXPECT_EQ(job->final_metrics_json, R"({"valid_accuracy": 0.9})");

  record.name = "trial-001";
  record.parent = "study";
  ASSERT_TRUE(registry->create_job(record).ok());
  JobFilter by_parent;
  by_parent.parent = "study";
  auto trials = registry->list_jobs(by_parent);
  ASSERT_TRUE(trials.ok());
  ASSERT_EQ(trials->size(), 1u);
  EXPECT_EQ((*trials)[0].name, "trial-001");
  EXPECT_EQ(registry->list_jobs()->size(), 2u);
}

TEST_F(JobRegistryTest, DuplicateNamesAndUnknownJobsAreClearErrors) {
  auto registry = open();
  JobRecord record;
  record.name = "same";
  ASSERT_TRUE(registry->create_job(record).ok());
  Status duplicate = registry->create_job(record);
  EXPECT_EQ(duplicate.code(), ErrorCode::kAlreadyExists);
  EXPECT_NE(duplicate.message().find("same"), std::string::npos);
  EXPECT_EQ(registry->get_job("nope").status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(registry->set_status("nope", JobStatus::kFailed).code(), ErrorCode::kNotFound);
}

TEST_F(JobRegistryTest, ADeadProcessIsDetectedAsFailed) {
  auto registry = open();
  // A child process registers a job and dies without an outcome.
  const pid_t child = ::fork();
  if (child == 0) {
    auto child_registry = JobRegistry::open(dir_ / "kennel.db");
    JobRecord record;
    record.name = "doomed";
    (void)child_registry.value()->create_job(record);
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  auto job = registry->get_job("doomed");
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->status, JobStatus::kFailed);
  EXPECT_NE(job->failure_reason.find("died"), std::string::npos);
}

TEST_F(JobRegistryTest, StaleHeartbeatIsFailedEvenIfThePidLives) {
  auto registry = open();
  JobRecord record;
  record.name = "elsewhere";
  record.host = "another-host";
  ASSERT_TRUE(registry->create_job(record).ok());
  registry->set_stale_after_seconds(-1);
  auto job = registry->get_job("elsewhere");
  EXPECT_EQ(job->status, JobStatus::kFailed);
  EXPECT_NE(job->failure_reason.find("heartbeat"), std::string::npos);
}

TEST_F(JobRegistryTest, SeveralProcessesWriteAtOnce) {
  constexpr int kChildren = 4;
  std::vector<pid_t> children;
  for (int c = 0; c < kChildren; ++c) {
    const pid_t child = ::fork();
    if (child == 0) {
      auto child_registry = JobRegistry::open(dir_ / "kennel.db");
      if (!child_registry.ok()) ::_exit(1);
      for (int i = 0; i < 25; ++i) {
        JobRecord record;
        record.name = "c" + std::to_string(c) + "-" + std::to_string(i);
        if (!child_registry.value()->create_job(record).ok()) ::_exit(2);
        if (!child_registry.value()->heartbeat(record.name).ok()) ::_exit(3);
      }
      ::_exit(0);
    }
    children.push_back(child);
  }
  for (pid_t child : children) {
    int status = 0;
    ::waitpid(child, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  EXPECT_EQ(open()->list_jobs()->size(), static_cast<size_t>(kChildren * 25));
}

TEST_F(JobRegistryTest, UnwritableLocationIsAClearError) {
  auto registry = JobRegistry::open("/proc/kennel-cannot-write-here/kennel.db");
  ASSERT_FALSE(registry.ok());
  EXPECT_NE(registry.status().message().find("kennel-cannot-write-here"), std::string::npos);
}

}  // namespace
}  // namespace kennel::store

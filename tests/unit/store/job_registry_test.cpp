#include "kennel/store/job_registry.h"

#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

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

TEST_F(JobRegistryTest, ReadOnlyReadsButNeverWrites) {
  EXPECT_EQ(JobRegistry::open_read_only(dir_ / "kennel.db").status().code(), ErrorCode::kNotFound);
  auto writer = open();
  JobRecord record;
  record.name = "watched";
  ASSERT_TRUE(writer->create_job(record).ok());
  auto reader = JobRegistry::open_read_only(dir_ / "kennel.db");
  ASSERT_TRUE(reader.ok()) << reader.status().to_string();
  EXPECT_EQ((*reader)->get_job("watched")->status, JobStatus::kInProgress);
  EXPECT_EQ((*reader)->set_status("watched", JobStatus::kStopped).code(), ErrorCode::kFailedPrecondition);
  JobRecord other;
  other.name = "other";
  EXPECT_EQ((*reader)->create_job(other).code(), ErrorCode::kFailedPrecondition);
  // The writer's changes show up in the reader's next read.
  ASSERT_TRUE(writer->set_status("watched", JobStatus::kCompleted).ok());
  EXPECT_EQ((*reader)->get_job("watched")->status, JobStatus::kCompleted);
}

TEST_F(JobRegistryTest, ReadOnlySettlesDeadJobsWithoutWritingThem) {
  auto writer = open();
  JobRecord record;
  record.name = "gone";
  record.host = "another-host";
  ASSERT_TRUE(writer->create_job(record).ok());
  auto reader = JobRegistry::open_read_only(dir_ / "kennel.db").value();
  reader->set_stale_after_seconds(-1);
  const JobRecord seen = reader->get_job("gone").value();
  EXPECT_EQ(seen.status, JobStatus::kFailed);
  EXPECT_NE(seen.failure_reason.find("heartbeat"), std::string::npos);
  JobFilter failed;
  failed.status = JobStatus::kFailed;
  EXPECT_EQ(reader->list_jobs(failed)->size(), 1u);
  JobFilter running;
  running.status = JobStatus::kInProgress;
  EXPECT_EQ(reader->list_jobs(running)->size(), 0u);
  // Nothing was written: the writer (whose limit is the default) still sees it running.
  EXPECT_EQ(writer->get_job("gone")->status, JobStatus::kInProgress);
}

TEST_F(JobRegistryTest, ReadOnlyRefusesAFileThatIsNotARegistry) {
  { std::ofstream(dir_ / "kennel.db") << "not a database at all, just some text that is long enough"; }
  auto reader = JobRegistry::open_read_only(dir_ / "kennel.db");
  ASSERT_FALSE(reader.ok());
  EXPECT_NE(reader.status().message().find("kennel.db"), std::string::npos);
}

TEST_F(JobRegistryTest, RequestStopRefusesJobsItCannotSignal) {
  JobRecord done;
  done.name = "done";
  done.status = JobStatus::kCompleted;
  EXPECT_EQ(request_stop(done).code(), ErrorCode::kFailedPrecondition);
  JobRecord remote;
  remote.name = "remote";
  remote.host = "another-host";
  remote.pid = 1;
  const Status refused = request_stop(remote);
  EXPECT_EQ(refused.code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(refused.message().find("another-host"), std::string::npos);
}

}  // namespace
}  // namespace kennel::store

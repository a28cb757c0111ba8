#include "kennel/store/layout.h"

#include <gtest/gtest.h>

namespace kennel::store {
namespace {

// The layout is an on-disk format that users, scripts and older homes rely on: these names do not change.
TEST(HomeLayoutTest, JobFilesHaveTheirDocumentedNames) {
  const HomeLayout home("/h");
  EXPECT_EQ(home.registry(), "/h/kennel.db");
  EXPECT_EQ(home.feature_cache(), "/h/cache/features");
  EXPECT_EQ(home.endpoints(), "/h/endpoints");
  EXPECT_EQ(home.endpoint("box", 42), "/h/endpoints/box-42.json");
  const JobPaths job = home.job("j1");
  EXPECT_EQ(job.dir, "/h/jobs/j1");
  EXPECT_EQ(job.spec(), "/h/jobs/j1/spec.json");
  EXPECT_EQ(job.metrics(), "/h/jobs/j1/metrics.jsonl");
  EXPECT_EQ(job.log(), "/h/jobs/j1/log.txt");
  EXPECT_EQ(job.events(), "/h/jobs/j1/events");
  EXPECT_EQ(job.checkpoints(), "/h/jobs/j1/checkpoints");
  EXPECT_EQ(job.model(), "/h/jobs/j1/model");
  EXPECT_EQ(job.evaluation(), "/h/jobs/j1/evaluation");
  EXPECT_EQ(job.debug(), "/h/jobs/j1/debug");
  EXPECT_EQ(job.profile(), "/h/jobs/j1/profile");
}

TEST(HomeLayoutTest, StudyFilesHaveTheirDocumentedNames) {
  const StudyPaths study = HomeLayout("/h").study("s");
  EXPECT_EQ(study.dir, "/h/tuning/s");
  EXPECT_EQ(study.study(), "/h/tuning/s/study.json");
  EXPECT_EQ(study.trials(), "/h/tuning/s/trials.json");
  EXPECT_EQ(study.best(), "/h/tuning/s/best.json");
  EXPECT_EQ(study.best_spec(), "/h/tuning/s/best-spec.json");
  EXPECT_EQ(study.report(), "/h/tuning/s/report.html");
  EXPECT_EQ(study.trial_log("s-001"), "/h/tuning/s/trials/s-001.log");
  EXPECT_EQ(study.trial_spec("s-001"), "/h/tuning/s/trials/s-001.spec.json");
}

}  // namespace
}  // namespace kennel::store

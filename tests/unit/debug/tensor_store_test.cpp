#include "kennel/debug/tensor_store.h"

#include <algorithm>
#include <numeric>
#include <set>

#include <gtest/gtest.h>

#include "kennel/util/event_file.h"
#include "kennel/util/fs.h"
#include "unit/test_util.h"

namespace kennel::debug {
namespace {

namespace fs = std::filesystem;

StepRecord record_at(int64_t step) {
  StepRecord record;
  record.step = step;
  TensorSummary loss;
  loss.name = "losses/train_loss";
  loss.collection = "losses";
  loss.step = step;
  loss.count = 1;
  loss.values = {1.0 / static_cast<double>(step + 1)};
  TensorSummary weight;
  weight.name = "weights/fc.weight";
  weight.collection = "weights";
  weight.step = step;
  weight.count = 1000;
  weight.mean = static_cast<double>(step);
  weight.histogram = Histogram{{0, 1, 2}, {600, 400}};
  record.tensors = {loss, weight};
  return record;
}

std::set<std::string> files_starting(const fs::path& dir, const std::string& prefix) {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename().string().rfind(prefix, 0) == 0) names.insert(entry.path().filename().string());
  }
  return names;
}

TEST(TensorStore, TheIndexFindsEveryTensorAcrossRotatedFiles) {
  testing::TempDir dir;
  {
    auto store = TensorStore::open(dir.path(), Rotation{4096, 3600});
    ASSERT_TRUE(store.ok()) << store.status().message();
    for (int64_t step = 0; step < 60; ++step) ASSERT_TRUE((*store)->write(record_at(step)).ok());
  }
  EXPECT_GT(files_starting(dir.path(), "tensors-").size(), 2u);  // ~300 bytes a step, 4 KiB files
  auto index = read_index(dir.path());
  ASSERT_TRUE(index.ok());
  ASSERT_EQ(index->size(), 120u);
  for (const auto& entry : *index) {
    auto summary = read_summary(dir.path(), entry);
    ASSERT_TRUE(summary.ok()) << summary.status().message();
    EXPECT_EQ((*summary)["name"], entry.name);
    EXPECT_EQ((*summary)["step"], entry.step);
  }
}

TEST(TensorStore, RotatesByAgeAndEveryEventFileIsValid) {
  testing::TempDir dir;
  {
    auto store = TensorStore::open(dir.path(), Rotation{int64_t{64} << 20, 0});  // age 0: every write rotates
    ASSERT_TRUE(store.ok());
    for (int64_t step = 0; step < 3; ++step) ASSERT_TRUE((*store)->write(record_at(step)).ok());
  }
  EXPECT_EQ(files_starting(dir.path(), "tensors-").size(), 4u);  // three written, one opened after the last
  size_t records = 0;
  for (const auto& entry : fs::directory_iterator(dir.path() / "events")) {
    auto events = read_event_file(entry.path());  // checks every CRC
    ASSERT_TRUE(events.ok()) << events.status().message();
    records += events->size();
  }
  EXPECT_GE(records, 3u * 4u);  // per step: a scalar, a mean, an L2 norm and a histogram
}

TEST(TensorStore, AResumedJobAppendsAfterItsLastFile) {
  testing::TempDir dir;
  for (int run = 0; run < 2; ++run) {
    auto store = TensorStore::open(dir.path());
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->write(record_at(run)).ok());
  }
  EXPECT_EQ(files_starting(dir.path(), "tensors-"), (std::set<std::string>{"tensors-0000.jsonl", "tensors-0001.jsonl"}));
  auto index = read_index(dir.path());
  ASSERT_TRUE(index.ok());
  EXPECT_EQ(index->size(), 4u);
}

}  // namespace
}  // namespace kennel::debug

namespace kennel::debug {
namespace {

std::vector<int64_t> event_steps(const fs::path& events_dir, const std::string& tag) {
  std::vector<int64_t> steps;
  for (const auto& entry : fs::directory_iterator(events_dir)) {
    auto records = read_event_file(entry.path());
    EXPECT_TRUE(records.ok()) << records.status().message();
    for (const auto& record : *records) {
      if (record.tag == tag) steps.push_back(record.step);
    }
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

// Issue 16: a job resumed from a checkpoint after 25 steps, whose killed run had recorded 40,
// must not show steps 25..39 twice.
TEST(TensorStore, DiscardingAfterACheckpointLeavesEachStepOnce) {
  testing::TempDir dir;
  {
    auto store = TensorStore::open(dir.path(), Rotation{4096, 3600});
    ASSERT_TRUE(store.ok()) << store.status().message();
    for (int64_t step = 0; step < 40; ++step) ASSERT_TRUE((*store)->write(record_at(step)).ok());
  }
  const auto files_before = files_starting(dir.path(), "tensors-");
  ASSERT_TRUE(discard_records_after(dir.path(), 25).ok());
  {
    auto store = TensorStore::open(dir.path(), Rotation{4096, 3600});  // the resumed run
    ASSERT_TRUE(store.ok()) << store.status().message();
    for (int64_t step = 25; step < 50; ++step) ASSERT_TRUE((*store)->write(record_at(step)).ok());
  }
  auto index = read_index(dir.path());
  ASSERT_TRUE(index.ok());
  std::vector<int64_t> loss_steps;
  for (const auto& entry : *index) {
    auto summary = read_summary(dir.path(), entry);
    ASSERT_TRUE(summary.ok()) << summary.status().message();
    EXPECT_EQ((*summary)["step"], entry.step);
    if (entry.name == "losses/train_loss") loss_steps.push_back(entry.step);
  }
  std::vector<int64_t> expected(50);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(loss_steps, expected);
  EXPECT_EQ(event_steps(dir.path() / "events", "losses/train_loss"), expected);
  // The superseded bytes are gone from the data files, not only from the index.
  int64_t lines = 0;
  for (const auto& name : files_starting(dir.path(), "tensors-")) {
    const auto text = read_file_text(dir.path() / name);
    ASSERT_TRUE(text.ok());
    lines += std::count(text->begin(), text->end(), '\n');
  }
  EXPECT_EQ(lines, 100);
  EXPECT_FALSE(files_before.empty());
}

TEST(TensorStore, DiscardingInAFolderWithoutRecordsIsNoWork) {
  testing::TempDir dir;
  EXPECT_TRUE(discard_records_after(dir.path() / "debug", 10).ok());
  EXPECT_FALSE(fs::exists(dir.path() / "debug"));
}

}  // namespace
}  // namespace kennel::debug

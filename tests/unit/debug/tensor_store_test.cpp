#include "kennel/debug/tensor_store.h"

#include <set>

#include <gtest/gtest.h>

#include "kennel/util/event_file.h"
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

#include "kennel/studio/metrics_history.h"

#include <fstream>

#include <gtest/gtest.h>

#include "unit/test_util.h"

namespace kennel::studio {
namespace {

using nlohmann::json;

class MetricsHistoryTest : public ::testing::Test {
 protected:
  void append(const std::string& text) { std::ofstream(path_, std::ios::app) << text; }
  std::string step(int64_t number) {
    return json{{"type", "step"}, {"step", number}, {"train_loss", 1.0 / number}}.dump() + "\n";
  }
  std::string epoch(int64_t number) {
    return json{{"type", "epoch"}, {"step", number}, {"valid_accuracy", 0.5}}.dump() + "\n";
  }
  std::vector<std::pair<std::string, int64_t>> seen(const MetricsSlice& slice) {
    std::vector<std::pair<std::string, int64_t>> out;
    for (const auto& record : slice.records)
      out.emplace_back(record.value("type", ""), record["step"].get<int64_t>());
    return out;
  }

  testing::TempDir dir_;
  std::filesystem::path path_ = dir_ / "metrics.jsonl";
  MetricsHistoryCache cache_;
};

using Seen = std::vector<std::pair<std::string, int64_t>>;

TEST_F(MetricsHistoryTest, AMissingFileIsAnEmptyHistory) {
  const auto slice = cache_.read(path_, -1, false).value();
  EXPECT_TRUE(slice.records.empty());
  EXPECT_EQ(slice.next, -1);
}

TEST_F(MetricsHistoryTest, TheLatestStepWaitsWhileTheJobRuns) {
  append(step(1) + step(2));
  auto slice = cache_.read(path_, -1, /*finished=*/false).value();
  EXPECT_EQ(seen(slice), (Seen{{"step", 1}}));
  EXPECT_EQ(slice.next, 1);
  // The epoch's record comes after its last step's, with the same step number: not skipped.
  append(epoch(2) + step(3));
  slice = cache_.read(path_, slice.next, false).value();
  EXPECT_EQ(seen(slice), (Seen{{"step", 2}, {"epoch", 2}}));
  EXPECT_EQ(slice.next, 2);
  // Nothing new: nothing repeated, the cursor stays.
  slice = cache_.read(path_, 2, false).value();
  EXPECT_TRUE(slice.records.empty());
  EXPECT_EQ(slice.next, 2);
  // Once the job has ended its last step is complete.
  slice = cache_.read(path_, 2, /*finished=*/true).value();
  EXPECT_EQ(seen(slice), (Seen{{"step", 3}}));
  EXPECT_EQ(slice.next, 3);
}

TEST_F(MetricsHistoryTest, AHalfWrittenLastLineIsReadOnceComplete) {
  const std::string line = step(2);
  append(step(1) + line.substr(0, 10));
  auto slice = cache_.read(path_, -1, true).value();
  EXPECT_EQ(seen(slice), (Seen{{"step", 1}}));
  EXPECT_EQ(slice.skipped_lines, 0);
  append(line.substr(10));
  slice = cache_.read(path_, 1, true).value();
  EXPECT_EQ(seen(slice), (Seen{{"step", 2}}));
  EXPECT_EQ(slice.skipped_lines, 0);
}

TEST_F(MetricsHistoryTest, GarbageLinesAreCountedAndSkipped) {
  append(step(1) + "not json\n[1,2]\n" + std::string("\xff\xfe\n") + step(2));
  const auto slice = cache_.read(path_, -1, true).value();
  EXPECT_EQ(seen(slice), (Seen{{"step", 1}, {"step", 2}}));
  EXPECT_EQ(slice.skipped_lines, 3);
}

TEST_F(MetricsHistoryTest, AResumedJobReplacesTheStepsItLoggedAgain) {
  append(step(1) + step(2) + epoch(2) + step(3) + step(4));
  append(step(3) + step(4) + epoch(4));  // resumed from the checkpoint at step 2
  const auto slice = cache_.read(path_, -1, true).value();
  EXPECT_EQ(seen(slice),
            (Seen{{"step", 1}, {"step", 2}, {"epoch", 2}, {"step", 3}, {"step", 4}, {"epoch", 4}}));
}

TEST_F(MetricsHistoryTest, AReplacedFileIsReadAfresh) {
  append(step(1) + step(2) + step(3));
  EXPECT_EQ(cache_.read(path_, -1, true)->records.size(), 3u);
  std::filesystem::remove(path_);
  append(step(1));  // a re-run trial starts its metrics over
  EXPECT_EQ(seen(cache_.read(path_, -1, true).value()), (Seen{{"step", 1}}));
}

TEST_F(MetricsHistoryTest, RecordsWithoutAUsableStepTakeThePreviousOne) {
  append(step(5) +
         R"({"type": "evaluation", "test_accuracy": 0.9})"
         "\n" +
         R"({"type": "x", "step": "one"})"
         "\n");
  const auto slice = cache_.read(path_, -1, true).value();
  EXPECT_EQ(seen(slice), (Seen{{"step", 5}, {"evaluation", 5}, {"x", 5}}));
}

}  // namespace
}  // namespace kennel::studio

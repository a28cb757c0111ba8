#include "kennel/train/metrics_logger.h"

#include <algorithm>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "kennel/util/event_file.h"
#include "kennel/util/fs.h"
#include "unit/test_util.h"

namespace kennel::train {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::vector<json> read_records(const fs::path& path) {
  std::vector<json> records;
  const auto text = read_file_text(path);
  EXPECT_TRUE(text.ok());
  size_t start = 0;
  while (start < text->size()) {
    const size_t end = text->find('\n', start);
    records.push_back(json::parse(text->substr(start, end - start)));
    start = end + 1;
  }
  return records;
}

std::vector<std::pair<std::string, int64_t>> events_of(const fs::path& dir) {
  std::vector<std::pair<std::string, int64_t>> events;
  for (const auto& entry : fs::directory_iterator(dir)) {
    auto records = read_event_file(entry.path());
    EXPECT_TRUE(records.ok()) << records.status().message();
    for (const auto& record : *records) {
      if (!record.tag.empty()) events.emplace_back(record.tag, record.step);
    }
  }
  std::sort(events.begin(), events.end());
  return events;
}

// Issue 16: a killed run had recorded 3 epochs of 4 steps and its test evaluation; the job
// resumes from the checkpoint after epoch 0 (step 4). Everything after step 4 is written again
// by the resumed run, so it goes; the records up to the checkpoint stay, in their order.
TEST(MetricsLoggerTest, DiscardingAfterACheckpointKeepsEachStepAndEpochOnce) {
  testing::TempDir dir;
  const MetricsLoggerOptions options{.metrics_path = dir / "metrics.jsonl", .events_dir = dir / "events"};
  std::string lines;
  {
    auto events = EventFileWriter::open(options.events_dir);
    ASSERT_TRUE(events.ok());
    for (int64_t step = 1; step <= 12; ++step) {
      lines += json{{"type", "step"}, {"epoch", (step - 1) / 4}, {"step", step}, {"train_loss", 1.0}}.dump() + "\n";
      (*events)->add_scalar("train/loss", step, 1.0f);
      if (step % 4 == 0) {
        lines += json{{"type", "epoch"}, {"epoch", step / 4 - 1}, {"step", step}}.dump() + "\n";
        (*events)->add_scalar("epoch/valid_accuracy", step, 0.5f);
      }
    }
    lines += json{{"type", "evaluation"}, {"split", "test"}, {"step", 12}}.dump() + "\n";
    (*events)->add_scalar("test/accuracy", 12, 0.5f);
  }
  lines += R"({"type": "step", "epoch": 2, "st)";  // torn by the kill
  ASSERT_TRUE(write_file_atomic(options.metrics_path, lines).ok());

  ASSERT_TRUE(discard_records_after(options, 4).ok());
  const auto records = read_records(options.metrics_path);
  ASSERT_EQ(records.size(), 5u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(records[i]["step"], static_cast<int64_t>(i + 1));
  EXPECT_EQ(records[4]["type"], "epoch");
  EXPECT_EQ(records[4]["epoch"], 0);
  const std::vector<std::pair<std::string, int64_t>> expected = {
      {"epoch/valid_accuracy", 4}, {"train/loss", 1}, {"train/loss", 2}, {"train/loss", 3}, {"train/loss", 4}};
  EXPECT_EQ(events_of(options.events_dir), expected);

  // Nothing after the step: the files are left alone.
  const auto before = fs::last_write_time(options.metrics_path);
  ASSERT_TRUE(discard_records_after(options, 4).ok());
  EXPECT_EQ(fs::last_write_time(options.metrics_path), before);
}

// A job that completed training and was killed while evaluating resumes at its last step:
// the evaluation at that step is done again, so the earlier one goes.
TEST(MetricsLoggerTest, AnEvaluationAtTheCheckpointStepIsDiscarded) {
  testing::TempDir dir;
  const MetricsLoggerOptions options{.metrics_path = dir / "metrics.jsonl", .events_dir = dir / "events"};
  ASSERT_TRUE(write_file_atomic(options.metrics_path,
                                json{{"type", "epoch"}, {"epoch", 0}, {"step", 8}}.dump() + "\n" +
                                    json{{"type", "evaluation"}, {"split", "test"}, {"step", 8}}.dump() + "\n")
                  .ok());
  {
    auto events = EventFileWriter::open(options.events_dir);
    ASSERT_TRUE(events.ok());
    (*events)->add_scalar("epoch/train_loss", 8, 1.0f);
    (*events)->add_scalar("test/accuracy", 8, 0.5f);
  }
  ASSERT_TRUE(discard_records_after(options, 8).ok());
  const auto records = read_records(options.metrics_path);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0]["type"], "epoch");
  EXPECT_EQ(events_of(options.events_dir), (std::vector<std::pair<std::string, int64_t>>{{"epoch/train_loss", 8}}));
}

TEST(MetricsLoggerTest, DiscardingWithoutHistoryIsNoWork) {
  testing::TempDir dir;
  EXPECT_TRUE(discard_records_after({.metrics_path = dir / "metrics.jsonl", .events_dir = dir / "events"}, 0).ok());
  EXPECT_FALSE(fs::exists(dir / "metrics.jsonl"));
}

}  // namespace
}  // namespace kennel::train

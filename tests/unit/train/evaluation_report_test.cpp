#include "kennel/train/evaluation_report.h"

#include <tuple>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace kennel::train {
namespace {

TEST(WilsonIntervalTest, MatchesTheTextbookValues) {
  // 90 of 100: Wilson's 95 % interval is [0.8256, 0.9448] (not the Wald 0.9 +- 0.0588).
  auto [low, high] = wilson_interval_95(90, 100);
  EXPECT_NEAR(low, 0.8256, 1e-4);
  EXPECT_NEAR(high, 0.9448, 1e-4);
  // 9,000 of 10,000 narrows it to about +- 0.006.
  std::tie(low, high) = wilson_interval_95(9000, 10000);
  EXPECT_NEAR(low, 0.8940, 1e-4);
  EXPECT_NEAR(high, 0.9057, 1e-4);
}

TEST(WilsonIntervalTest, StaysInsideZeroOneAtTheEnds) {
  auto [low, high] = wilson_interval_95(10, 10);
  EXPECT_LT(low, 1.0);
  EXPECT_GT(low, 0.6);
  EXPECT_DOUBLE_EQ(high, 1.0);
  std::tie(low, high) = wilson_interval_95(0, 10);
  EXPECT_DOUBLE_EQ(low, 0.0);
  EXPECT_GT(high, 0.0);
  EXPECT_EQ(wilson_interval_95(0, 0), std::make_pair(0.0, 0.0));
}

TEST(ClassificationReportTest, AccuracyComesWithItsInterval) {
  const ConfusionMatrix confusion = {{45, 5}, {5, 45}};
  const ClassificationReport report = make_classification_report(confusion, {"a", "b"});
  EXPECT_EQ(report.samples, 100);
  EXPECT_DOUBLE_EQ(report.accuracy, 0.9);
  EXPECT_NEAR(report.accuracy_ci95_low, 0.8256, 1e-4);
  EXPECT_NEAR(report.accuracy_ci95_high, 0.9448, 1e-4);
  const nlohmann::json json = to_json(report);
  ASSERT_TRUE(json.contains("accuracy_ci95"));
  EXPECT_NEAR(json["accuracy_ci95"][0].get<double>(), 0.8256, 1e-4);
}

}  // namespace
}  // namespace kennel::train

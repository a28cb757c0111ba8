#include "kennel/studio/param_importance.h"

#include <cmath>
#include <random>

#include <gtest/gtest.h>

namespace kennel::studio {
namespace {

struct Sample {
  std::vector<std::vector<double>> points;
  std::vector<double> objective;
};

template <typename F>
Sample sample(size_t count, size_t dimensions, F f, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> unit(0, 1);
  Sample out;
  for (size_t i = 0; i < count; ++i) {
    std::vector<double> point(dimensions);
    for (auto& value : point) value = unit(rng);
    out.objective.push_back(f(point));
    out.points.push_back(std::move(point));
  }
  return out;
}

std::vector<ImportanceDimension> unit_cube(size_t dimensions) {
  std::vector<ImportanceDimension> out;
  for (size_t d = 0; d < dimensions; ++d) out.push_back({"x" + std::to_string(d), 0, 1});
  return out;
}

TEST(ParamImportanceTest, TheParameterThatMattersGetsTheVariance) {
  const Sample s =
      sample(200, 3, [](const std::vector<double>& x) { return 10 * x[0] + 0.5 * x[1]; });
  const auto importance = fanova_importance(unit_cube(3), s.points, s.objective).value();
  ASSERT_EQ(importance.size(), 3u);
  EXPECT_GT(importance[0], 0.9);
  EXPECT_LT(importance[1], 0.05);
  EXPECT_LT(importance[2], 0.02);
  EXPECT_LE(importance[0] + importance[1] + importance[2], 1.0 + 1e-9);
}

// A correlation misses an effect that is best in the middle; a variance decomposition does not.
TEST(ParamImportanceTest, SeesNonMonotonicEffectsACorrelationMisses) {
  const Sample s = sample(
      300, 2, [](const std::vector<double>& x) { return -std::pow(x[1] - 0.5, 2); }, 7);
  double mean_x = 0, mean_y = 0, covariance = 0, var_x = 0, var_y = 0;
  for (size_t i = 0; i < s.objective.size(); ++i) {
    mean_x += s.points[i][1] / s.objective.size();
    mean_y += s.objective[i] / s.objective.size();
  }
  for (size_t i = 0; i < s.objective.size(); ++i) {
    covariance += (s.points[i][1] - mean_x) * (s.objective[i] - mean_y);
    var_x += std::pow(s.points[i][1] - mean_x, 2);
    var_y += std::pow(s.objective[i] - mean_y, 2);
  }
  EXPECT_LT(std::abs(covariance / std::sqrt(var_x * var_y)),
            0.2);  // the correlation sees nearly nothing
  const auto importance = fanova_importance(unit_cube(2), s.points, s.objective).value();
  EXPECT_GT(importance[1], 0.85);
  EXPECT_LT(importance[0], 0.05);
}

TEST(ParamImportanceTest, InteractionsAreNotMainEffects) {
  // y = (x0 - .5)(x1 - .5): each parameter alone explains nothing on average.
  const Sample s = sample(
      400, 2, [](const std::vector<double>& x) { return (x[0] - 0.5) * (x[1] - 0.5); }, 3);
  const auto importance = fanova_importance(unit_cube(2), s.points, s.objective).value();
  EXPECT_LT(importance[0] + importance[1], 0.35);
}

TEST(ParamImportanceTest, CategoricalIndicesWeighEveryChoiceAlike) {
  // Three choices; choice 2 is much better; a second, irrelevant continuous parameter.
  std::vector<std::vector<double>> points;
  std::vector<double> objective;
  std::mt19937 rng(5);
  for (int i = 0; i < 90; ++i) {
    const double choice = i % 3;
    points.push_back({choice, std::uniform_real_distribution<double>(0, 1)(rng)});
    objective.push_back(choice == 2 ? 0.9 : 0.4);
  }
  const auto importance =
      fanova_importance({{"batch_size", -0.5, 2.5}, {"noise", 0, 1}}, points, objective).value();
  EXPECT_GT(importance[0], 0.95);
  EXPECT_LT(importance[1], 0.03);
}

TEST(ParamImportanceTest, IsDeterministicForASeed) {
  const Sample s = sample(60, 3, [](const std::vector<double>& x) { return x[0] * x[0] + x[2]; });
  EXPECT_EQ(fanova_importance(unit_cube(3), s.points, s.objective).value(),
            fanova_importance(unit_cube(3), s.points, s.objective).value());
}

TEST(ParamImportanceTest, RefusesWhatCannotBeExplained) {
  EXPECT_EQ(fanova_importance(unit_cube(1), {{0.5}}, {1.0}).status().code(),
            ErrorCode::kFailedPrecondition);
  EXPECT_EQ(fanova_importance(unit_cube(1), {{0.1}, {0.9}}, {2.0, 2.0}).status().code(),
            ErrorCode::kFailedPrecondition);
  EXPECT_EQ(fanova_importance(unit_cube(1), {{0.1}, {0.9, 1}}, {1.0, 2.0}).status().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(fanova_importance({{"empty", 1, 1}}, {{1}, {1}}, {1.0, 2.0}).status().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(fanova_importance(unit_cube(1), {{NAN}, {0.5}}, {1.0, 2.0}).status().code(),
            ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace kennel::studio

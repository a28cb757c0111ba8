// Samplers (random, grid, TPE) and stoppers (median, hyperband): determinism,
// ranges, enumeration order, whether TPE actually concentrates, and which
// trials the stoppers stop.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kennel/tune/search_space.h"
#include "kennel/tune/strategy.h"
#include "unit/tune/tune_test_util.h"

namespace kennel::tune {
namespace {

using test_helpers::param;

using nlohmann::json;


SearchSpace mixed_space() {
  SearchSpace space;
  space.parameters.push_back(param("lr", {{"min", 1e-5}, {"max", 1e-1}, {"scale", "log"}}));
  space.parameters.push_back(param("epochs", {{"min", 2}, {"max", 10}}));
  space.parameters.push_back(param("dropout", {{"min", 0.0}, {"max", 0.7}}));
  space.parameters.push_back(param("optimizer", json::array({"adam", "sgd", "momentum"})));
  return space;
}

std::unique_ptr<Sampler> sampler(const SamplerConfig& config, const SearchSpace& space, uint64_t seed) {
  auto made = make_sampler(config, space, seed);
  EXPECT_TRUE(made.ok()) << made.status().to_string();
  return made.ok() ? std::move(*made) : nullptr;
}

SamplerConfig kind(const std::string& name) {
  SamplerConfig config;
  config.kind = name;
  return config;
}

// ---- random ----------------------------------------------------------------

TEST(StrategyTest, RandomIsDeterministicPerSeedAndIndex) {
  const SearchSpace space = mixed_space();
  auto a = sampler(kind("random"), space, 7);
  auto b = sampler(kind("random"), space, 7);
  auto other = sampler(kind("random"), space, 8);
  ASSERT_TRUE(a && b && other);
  int differ_by_seed = 0, differ_by_index = 0;
  for (int64_t i = 0; i < 20; ++i) {
    const auto x = a->suggest(i, {});
    ASSERT_TRUE(x.has_value());
    EXPECT_EQ(*x, *b->suggest(i, {})) << "index " << i;
    // The history does not change a random draw.
    EXPECT_EQ(*x, *a->suggest(i, {{*x, 0.5, false}}));
    if (*x != *other->suggest(i, {})) ++differ_by_seed;
    if (*x != *a->suggest(i + 1, {})) ++differ_by_index;
  }
  EXPECT_GE(differ_by_seed, 19);
  EXPECT_GE(differ_by_index, 19);
  EXPECT_EQ(a->size(), std::nullopt);
}

TEST(StrategyTest, RandomValuesLieInTheirRanges) {
  const SearchSpace space = mixed_space();
  auto random = sampler(kind("random"), space, 3);
  ASSERT_TRUE(random);
  std::set<std::string> optimizers;
  std::set<int64_t> epochs;
  int below_1e3 = 0;
  for (int64_t i = 0; i < 400; ++i) {
    const json x = *random->suggest(i, {});
    ASSERT_EQ(x.size(), space.parameters.size()) << x.dump();
    for (const auto& parameter : space.parameters) {
      ASSERT_TRUE(x.contains(parameter.name)) << x.dump();
      EXPECT_TRUE(parameter.contains(x[parameter.name])) << parameter.name << " " << x.dump();
    }
    EXPECT_TRUE(x["epochs"].is_number_integer()) << x.dump();
    optimizers.insert(x["optimizer"].get<std::string>());
    epochs.insert(x["epochs"].get<int64_t>());
    if (x["lr"].get<double>() < 1e-3) ++below_1e3;
  }
  EXPECT_EQ(optimizers.size(), 3u);
  EXPECT_EQ(epochs.size(), 9u);  // 2..10, ends included
  // Log scale: half of [1e-5, 1e-1] in exponent lies below 1e-3 (a linear draw would put ~1 % there).
  EXPECT_GT(below_1e3, 140);
  EXPECT_LT(below_1e3, 260);
}

// ---- grid ------------------------------------------------------------------

TEST(StrategyTest, GridEnumeratesTheCartesianProductInOrder) {
  SearchSpace space;
  space.parameters.push_back(param("optimizer", json::array({"adam", "sgd"})));
  space.parameters.push_back(param("epochs", {{"min", 1}, {"max", 3}}));
  auto grid = sampler(kind("grid"), space, 0);
  ASSERT_TRUE(grid);
  ASSERT_EQ(grid->size(), std::optional<int64_t>(6));
  const std::vector<json> expected = {
      {{"optimizer", "adam"}, {"epochs", 1}}, {{"optimizer", "adam"}, {"epochs", 2}},
      {{"optimizer", "adam"}, {"epochs", 3}}, {{"optimizer", "sgd"}, {"epochs", 1}},
      {{"optimizer", "sgd"}, {"epochs", 2}},  {{"optimizer", "sgd"}, {"epochs", 3}},
  };
  for (int64_t i = 0; i < 6; ++i) {
    const auto x = grid->suggest(i, {});
    ASSERT_TRUE(x.has_value()) << i;
    EXPECT_EQ(*x, expected[static_cast<size_t>(i)]) << i;
  }
  EXPECT_EQ(grid->suggest(6, {}), std::nullopt);
  EXPECT_EQ(grid->suggest(100, {}), std::nullopt);
}

TEST(StrategyTest, GridLogContinuousHasExactEnds) {
  SearchSpace space;
  space.parameters.push_back(param("lr", {{"min", 1e-4}, {"max", 1e-1}, {"scale", "log"}}));
  SamplerConfig config = kind("grid");
  config.grid_points = 4;
  auto grid = sampler(config, space, 0);
  ASSERT_TRUE(grid);
  ASSERT_EQ(grid->size(), std::optional<int64_t>(4));
  const double first = (*grid->suggest(0, {}))["lr"].get<double>();
  const double last = (*grid->suggest(3, {}))["lr"].get<double>();
  EXPECT_EQ(first, 1e-4);  // exactly, not exp(log(1e-4))
  EXPECT_EQ(last, 1e-1);
  EXPECT_NEAR((*grid->suggest(1, {}))["lr"].get<double>(), 1e-3, 1e-12);
  EXPECT_NEAR((*grid->suggest(2, {}))["lr"].get<double>(), 1e-2, 1e-12);
  EXPECT_EQ(grid->suggest(4, {}), std::nullopt);
}

TEST(StrategyTest, GridOfAWideIntegerRangeUsesGridPoints) {
  SearchSpace space;
  space.parameters.push_back(param("n", {{"min", 1}, {"max", 100}}));
  SamplerConfig config = kind("grid");
  config.grid_points = 3;
  auto grid = sampler(config, space, 0);
  ASSERT_TRUE(grid);
  ASSERT_EQ(grid->size(), std::optional<int64_t>(3));
  EXPECT_EQ((*grid->suggest(0, {}))["n"], 1);
  EXPECT_EQ((*grid->suggest(2, {}))["n"], 100);
  EXPECT_TRUE((*grid->suggest(1, {}))["n"].is_number_integer());
}

TEST(StrategyTest, MakeSamplerErrors) {
  const SearchSpace space = mixed_space();
  auto unknown = make_sampler(kind("annealing"), space, 0);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("annealing"), std::string::npos);
  EXPECT_FALSE(make_sampler(kind("random"), SearchSpace{}, 0).ok());
  SamplerConfig zero_points = kind("grid");
  zero_points.grid_points = 0;
  EXPECT_FALSE(make_sampler(zero_points, space, 0).ok());
  SamplerConfig no_candidates = kind("bayesian");
  no_candidates.candidates = 0;
  EXPECT_FALSE(make_sampler(no_candidates, space, 0).ok());
  EXPECT_TRUE(make_sampler(kind("tpe"), space, 0).ok());
}

// ---- TPE -------------------------------------------------------------------

// TPE runs with one joint density (multivariate, the default) or one per parameter.
SamplerConfig tpe_config(bool multivariate, int64_t startup_trials = 3) {
  SamplerConfig config = kind("bayesian");
  config.startup_trials = startup_trials;
  config.multivariate = multivariate;
  return config;
}

const char* mode(bool multivariate) { return multivariate ? "multivariate" : "independent"; }

double objective(double lr) {
  const double d = std::log10(lr) + 3;
  return d * d;
}

// Runs `trials` sequential trials on objective(lr) and returns each suggestion's |log10(lr) + 3|.
std::vector<double> run_study(const SamplerConfig& config, uint64_t seed, int trials) {
  SearchSpace space;
  space.parameters.push_back(param("lr", {{"min", 1e-6}, {"max", 1.0}, {"scale", "log"}}));
  auto made = sampler(config, space, seed);
  std::vector<Observation> history;
  std::vector<double> distances;
  for (int64_t i = 0; i < trials; ++i) {
    const json x = *made->suggest(i, history);
    const double lr = x["lr"].get<double>();
    EXPECT_GE(lr, 1e-6);
    EXPECT_LE(lr, 1.0);
    history.push_back({x, objective(lr), false});
    distances.push_back(std::abs(std::log10(lr) + 3));
  }
  return distances;
}

double median_of(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

double median_of_last(const std::vector<double>& values, size_t count) {
  return median_of(std::vector<double>(values.end() - static_cast<std::ptrdiff_t>(count), values.end()));
}

TEST(StrategyTest, TpeIsDeterministicForTheSameHistoryAndSeed) {
  const SearchSpace space = mixed_space();
  auto random = sampler(kind("random"), space, 11);
  std::vector<Observation> history;
  for (int64_t i = 0; i < 8; ++i) {
    const json x = *random->suggest(i, {});
    history.push_back({x, x["dropout"].get<double>() + std::abs(std::log10(x["lr"].get<double>()) + 3), false});
  }
  for (bool multivariate : {true, false}) {
    SCOPED_TRACE(mode(multivariate));
    auto a = sampler(tpe_config(multivariate), space, 5);
    auto b = sampler(tpe_config(multivariate), space, 5);
    auto other_seed = sampler(tpe_config(multivariate), space, 6);
    int differ = 0;
    for (int64_t i = 8; i < 12; ++i) {
      const json x = *a->suggest(i, history);
      EXPECT_EQ(x, *b->suggest(i, history)) << i;
      EXPECT_EQ(x, *a->suggest(i, history)) << i;  // no hidden state
      if (x != *other_seed->suggest(i, history)) ++differ;
      ASSERT_EQ(x.size(), space.parameters.size()) << x.dump();
      for (const auto& parameter : space.parameters) {
        EXPECT_TRUE(parameter.contains(x[parameter.name])) << parameter.name << " " << x.dump();
      }
      EXPECT_TRUE(x["epochs"].is_number_integer()) << x.dump();
    }
    EXPECT_GE(differ, 3);
    // Below startup_trials it draws at random (still deterministic).
    const std::vector<Observation> two(history.begin(), history.begin() + 2);
    EXPECT_EQ(*a->suggest(2, two), *b->suggest(2, two));
    // A history of trials lacking parameters (warm start from a subset) is fine.
    std::vector<Observation> partial = history;
    for (auto& observation : partial) observation.hyperparameters.erase("optimizer");
    const json x = *a->suggest(20, partial);
    EXPECT_EQ(x, *b->suggest(20, partial));
    ASSERT_EQ(x.size(), space.parameters.size()) << x.dump();
    for (const auto& parameter : space.parameters) {
      EXPECT_TRUE(parameter.contains(x[parameter.name])) << parameter.name << " " << x.dump();
    }
    // So is one with values outside the space (a warm start from a wider study) and failed trials.
    std::vector<Observation> odd = history;
    odd.push_back({{{"lr", 5.0}, {"epochs", 99}, {"dropout", 0.1}, {"optimizer", "rmsprop"}}, 0.0, false});
    odd.push_back({history[0].hyperparameters, std::nan(""), false});
    const json y = *a->suggest(21, odd);
    for (const auto& parameter : space.parameters) {
      EXPECT_TRUE(parameter.contains(y[parameter.name])) << parameter.name << " " << y.dump();
    }
  }
}

TEST(StrategyTest, TpeConcentratesNearTheOptimum) {
  // f(lr) = (log10(lr) + 3)^2 over [1e-6, 1]: random's suggestions sit ~1.5 decades from 1e-3 (median).
  std::vector<double> random_medians;
  double random_best_sum = 0;
  std::vector<std::vector<double>> runs;
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    const auto r = run_study(kind("random"), seed, 40);
    random_medians.push_back(median_of_last(r, 10));
    random_best_sum += *std::min_element(r.begin(), r.end());
  }
  for (bool multivariate : {true, false}) {
    SCOPED_TRACE(mode(multivariate));
    std::vector<double> tpe_medians;
    int tpe_wins = 0;
    double tpe_best_sum = 0;
    for (uint64_t seed = 1; seed <= 5; ++seed) {
      const auto t = run_study(tpe_config(multivariate), seed, 40);
      tpe_medians.push_back(median_of_last(t, 10));
      if (tpe_medians.back() < random_medians[seed - 1]) ++tpe_wins;
      tpe_best_sum += *std::min_element(t.begin(), t.end());
    }
    EXPECT_GE(tpe_wins, 4) << "TPE beat random on the last-10 median in " << tpe_wins << " of 5 seeds";
    EXPECT_LT(median_of(tpe_medians), 0.5 * median_of(random_medians))
        << "TPE " << median_of(tpe_medians) << " random " << median_of(random_medians);
    EXPECT_LT(median_of(tpe_medians), 0.75);  // half of random's expected 1.5
    EXPECT_LE(tpe_best_sum, random_best_sum);
  }
}

// Median |x - y| of the last 10 of 50 trials minimising |x - y| over [0, 1]^2 (a diagonal valley).
double valley_median(const SamplerConfig& config, uint64_t seed) {
  SearchSpace space;
  space.parameters.push_back(param("x", {{"min", 0.0}, {"max", 1.0}}));
  space.parameters.push_back(param("y", {{"min", 0.0}, {"max", 1.0}}));
  auto made = sampler(config, space, seed);
  std::vector<Observation> history;
  std::vector<double> gaps;
  for (int64_t i = 0; i < 50; ++i) {
    const json p = *made->suggest(i, history);
    const double gap = std::abs(p["x"].get<double>() - p["y"].get<double>());
    history.push_back({p, gap, false});
    gaps.push_back(gap);
  }
  return median_of_last(gaps, 10);
}

TEST(StrategyTest, MultivariateTpeFollowsACorrelatedValley) {
  // The header's claim: one joint density follows a correlated valley that per-parameter densities miss.
  std::vector<double> joint, independent, random;
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    joint.push_back(valley_median(tpe_config(true, 5), seed));
    independent.push_back(valley_median(tpe_config(false, 5), seed));
    random.push_back(valley_median(kind("random"), seed));
  }
  // Uniform random: median |x - y| is 1 - 1/sqrt(2) ~ 0.29.
  EXPECT_GT(median_of(random), 0.15);
  EXPECT_LT(median_of(joint), 0.5 * median_of(random)) << median_of(joint) << " vs random " << median_of(random);
  EXPECT_LT(median_of(independent), median_of(random));
  EXPECT_LT(median_of(joint), median_of(independent))
      << "multivariate " << median_of(joint) << " independent " << median_of(independent);
}

TEST(StrategyTest, TpePrefersTheBestCategory) {
  SearchSpace space;
  space.parameters.push_back(param("optimizer", json::array({"sgd", "momentum", "adam", "adamw"})));
  std::vector<Observation> history;
  const std::vector<std::string> others = {"sgd", "momentum", "adamw"};
  for (int i = 0; i < 20; ++i) {
    // "adam" always scores best; every optimizer is tried.
    if (i % 4 == 0) {
      history.push_back({{{"optimizer", "adam"}}, 0.1 + 0.01 * i, false});
    } else {
      history.push_back({{{"optimizer", others[static_cast<size_t>(i % 3)]}}, 1.0 + 0.01 * i, false});
    }
  }
  for (bool multivariate : {true, false}) {
    auto tpe = sampler(tpe_config(multivariate), space, 42);
    int adam = 0;
    for (int64_t i = 20; i < 40; ++i) {
      if ((*tpe->suggest(i, history))["optimizer"] == "adam") ++adam;
    }
    EXPECT_GE(adam, 15) << mode(multivariate) << ": " << adam << " of 20 suggestions picked adam";
  }
}

TEST(StrategyTest, TpePrefersTheBestCategoryNextToANumericParameter) {
  // The joint density scores both dimensions at once: "adam" is best whatever the lr.
  SearchSpace space;
  space.parameters.push_back(param("lr", {{"min", 1e-4}, {"max", 1e-1}, {"scale", "log"}}));
  space.parameters.push_back(param("optimizer", json::array({"sgd", "adam", "adamw"})));
  auto random = sampler(kind("random"), space, 3);
  std::vector<Observation> history;
  for (int64_t i = 0; i < 30; ++i) {
    const json x = *random->suggest(i, {});
    history.push_back({x, (x["optimizer"] == "adam" ? 0.0 : 1.0) + 0.01 * x["lr"].get<double>(), false});
  }
  for (bool multivariate : {true, false}) {
    auto tpe = sampler(tpe_config(multivariate), space, 8);
    int adam = 0;
    for (int64_t i = 30; i < 50; ++i) {
      if ((*tpe->suggest(i, history))["optimizer"] == "adam") ++adam;
    }
    EXPECT_GE(adam, 14) << mode(multivariate) << ": " << adam << " of 20 suggestions picked adam";
  }
}

TEST(StrategyTest, TpeNeverTreatsAStoppedTrialAsGood) {
  // The stopped trial has the lowest loss (an intermediate value), but a stopped
  // trial ranks after every completed one.
  SearchSpace space;
  space.parameters.push_back(param("optimizer", json::array({"sgd", "adam"})));
  std::vector<Observation> history;
  // Were it ranked by loss alone, "sgd" would be the good value and win.
  history.push_back({{{"optimizer", "sgd"}}, 0.0, true});
  history.push_back({{{"optimizer", "adam"}}, 0.2, false});
  for (int i = 0; i < 8; ++i) history.push_back({{{"optimizer", i % 2 ? "adam" : "sgd"}}, 0.9, false});
  for (bool multivariate : {true, false}) {
    auto tpe = sampler(tpe_config(multivariate), space, 9);
    int adam = 0;
    for (int64_t i = 10; i < 30; ++i) {
      if ((*tpe->suggest(i, history))["optimizer"] == "adam") ++adam;
    }
    EXPECT_GE(adam, 15) << mode(multivariate) << ": " << adam << " of 20";
  }
}

// ---- median stopper --------------------------------------------------------

std::unique_ptr<Stopper> stopper(const StopperConfig& config) {
  auto made = make_stopper(config);
  EXPECT_TRUE(made.ok()) << made.status().to_string();
  return made.ok() ? std::move(*made) : nullptr;
}

StopperConfig median_config(int64_t min_trials = 3, int64_t min_epochs = 1) {
  StopperConfig config;
  config.kind = "median";
  config.min_trials = min_trials;
  config.min_epochs = min_epochs;
  return config;
}

TEST(StrategyTest, MedianStopsAWorseTrialAndKeepsABetterOne) {
  auto median = stopper(median_config());
  ASSERT_TRUE(median);
  const std::vector<TrialCurve> others = {{0, {1.0, 0.8}}, {1, {2.0, 1.5}}, {2, {3.0, 2.5}}};
  const auto stopped = median->should_stop({5, {2.5}}, others);
  ASSERT_TRUE(stopped.has_value());
  EXPECT_NE(stopped->find("median"), std::string::npos) << *stopped;
  EXPECT_EQ(median->should_stop({5, {1.5}}, others), std::nullopt);
  EXPECT_EQ(median->should_stop({5, {2.0}}, others), std::nullopt);  // at the median: keep
  // Compared at its own epoch (the second: median 1.5).
  EXPECT_EQ(median->should_stop({5, {9.0, 1.4}}, others), std::nullopt);
  EXPECT_TRUE(median->should_stop({5, {0.1, 1.6}}, others).has_value());
  // The trial itself in `others` does not count as a peer.
  std::vector<TrialCurve> with_self = {{0, {1.0}}, {1, {2.0}}, {5, {9.0}}};
  EXPECT_EQ(median->should_stop({5, {9.0}}, with_self), std::nullopt);
}

TEST(StrategyTest, MedianRespectsMinTrialsAndMinEpochs) {
  auto median = stopper(median_config(3, 1));
  ASSERT_TRUE(median);
  // Two peers only.
  EXPECT_EQ(median->should_stop({9, {5.0}}, {{0, {1.0}}, {1, {2.0}}}), std::nullopt);
  // Three peers, but only two reached the trial's epoch.
  EXPECT_EQ(median->should_stop({9, {5.0, 5.0}}, {{0, {1.0, 1.0}}, {1, {2.0, 2.0}}, {2, {3.0}}}), std::nullopt);
  EXPECT_EQ(median->should_stop({9, {}}, {{0, {1.0}}, {1, {2.0}}, {2, {3.0}}}), std::nullopt);

  auto patient = stopper(median_config(3, 3));
  ASSERT_TRUE(patient);
  const std::vector<TrialCurve> others = {
      {0, {1.0, 1.0, 1.0}}, {1, {2.0, 2.0, 2.0}}, {2, {3.0, 3.0, 3.0}}};
  EXPECT_EQ(patient->should_stop({9, {9.0}}, others), std::nullopt);
  EXPECT_EQ(patient->should_stop({9, {9.0, 9.0}}, others), std::nullopt);
  EXPECT_TRUE(patient->should_stop({9, {9.0, 9.0, 9.0}}, others).has_value());

  auto one_peer = stopper(median_config(1, 1));
  ASSERT_TRUE(one_peer);
  EXPECT_TRUE(one_peer->should_stop({9, {5.0}}, {{0, {1.0}}}).has_value());
}

// ---- hyperband -------------------------------------------------------------

StopperConfig hyperband_config(int64_t min_resource = 1, int64_t max_resource = 9, int64_t eta = 3) {
  StopperConfig config;
  config.kind = "hyperband";
  config.min_resource = min_resource;
  config.max_resource = max_resource;
  config.eta = eta;
  return config;
}

std::vector<double> flat(double loss, size_t epochs) { return std::vector<double>(epochs, loss); }

TEST(StrategyTest, HyperbandStopsTheLastAtBracketZeroRungs) {
  // min 1, max 9, eta 3: brackets 0..2 (trial index % 3); bracket 0's rungs at epochs 1 and 3.
  auto hyperband = stopper(hyperband_config());
  ASSERT_TRUE(hyperband);
  for (size_t rung : {1u, 3u}) {
    // Bracket-0 peers: indexes 3, 6, 9.
    const std::vector<TrialCurve> peers = {{3, flat(1.0, rung)}, {6, flat(2.0, rung)}, {9, flat(3.0, rung)}};
    const auto last = hyperband->should_stop({0, flat(5.0, rung)}, peers);
    ASSERT_TRUE(last.has_value()) << "rung " << rung;
    EXPECT_NE(last->find("hyperband"), std::string::npos) << *last;
    EXPECT_EQ(hyperband->should_stop({0, flat(0.5, rung)}, peers), std::nullopt) << "rung " << rung;
  }
}

TEST(StrategyTest, HyperbandDecidesOnlyAtRungs) {
  auto hyperband = stopper(hyperband_config());
  ASSERT_TRUE(hyperband);
  for (size_t epochs : {2u, 4u, 5u, 8u, 9u}) {
    const std::vector<TrialCurve> peers = {{3, flat(1.0, 9)}, {6, flat(2.0, 9)}, {9, flat(3.0, 9)}};
    EXPECT_EQ(hyperband->should_stop({0, flat(5.0, epochs)}, peers), std::nullopt) << "epoch " << epochs;
  }
  // Bracket 1 (indexes 1, 4, 7, 10) has its single rung at epoch 3, none at 1.
  const std::vector<TrialCurve> bracket1 = {{4, flat(1.0, 9)}, {7, flat(2.0, 9)}, {10, flat(3.0, 9)}};
  EXPECT_EQ(hyperband->should_stop({1, flat(5.0, 1)}, bracket1), std::nullopt);
  EXPECT_TRUE(hyperband->should_stop({1, flat(5.0, 3)}, bracket1).has_value());
  // Bracket 2 never stops a trial before max_resource.
  const std::vector<TrialCurve> bracket2 = {{5, flat(1.0, 9)}, {8, flat(2.0, 9)}, {11, flat(3.0, 9)}};
  for (size_t epochs = 1; epochs <= 9; ++epochs) {
    EXPECT_EQ(hyperband->should_stop({2, flat(5.0, epochs)}, bracket2), std::nullopt) << "epoch " << epochs;
  }
}

TEST(StrategyTest, HyperbandComparesOnlyWithinTheBracketAndAtTheRung) {
  auto hyperband = stopper(hyperband_config());
  ASSERT_TRUE(hyperband);
  // Better trials, but in other brackets (indexes 1, 2, 4, 5): no peers, keep.
  const std::vector<TrialCurve> other_brackets = {{1, flat(1.0, 3)}, {2, flat(1.0, 3)}, {4, flat(1.0, 3)},
                                                  {5, flat(1.0, 3)}};
  EXPECT_EQ(hyperband->should_stop({0, flat(5.0, 1)}, other_brackets), std::nullopt);
  // Peers compared at the rung epoch, not at their latest one.
  const std::vector<TrialCurve> peers = {{3, {9.0, 0.1, 0.1}}, {6, {9.0, 0.1, 0.1}}, {9, {9.0, 0.1, 0.1}}};
  EXPECT_EQ(hyperband->should_stop({0, {5.0}}, peers), std::nullopt);
  EXPECT_TRUE(hyperband->should_stop({0, {5.0, 5.0, 5.0}}, peers).has_value());
  // Peers that have not reached the rung do not count.
  const std::vector<TrialCurve> behind = {{3, {}}, {6, {}}, {9, {}}};
  EXPECT_EQ(hyperband->should_stop({0, {5.0}}, behind), std::nullopt);
}

TEST(StrategyTest, MakeStopperErrors) {
  auto off = make_stopper(StopperConfig{});
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(*off, nullptr);

  auto low_eta = make_stopper(hyperband_config(1, 9, 1));
  ASSERT_FALSE(low_eta.ok());
  EXPECT_NE(low_eta.status().message().find("eta"), std::string::npos) << low_eta.status().message();
  EXPECT_FALSE(make_stopper(hyperband_config(1, 9, 0)).ok());

  EXPECT_FALSE(make_stopper(hyperband_config(3, 3, 3)).ok());
  EXPECT_FALSE(make_stopper(hyperband_config(5, 2, 3)).ok());
  EXPECT_FALSE(make_stopper(hyperband_config(1, 0, 3)).ok());  // max_resource never set
  EXPECT_FALSE(make_stopper(hyperband_config(0, 9, 3)).ok());
  EXPECT_TRUE(make_stopper(hyperband_config(1, 2, 2)).ok());

  EXPECT_FALSE(make_stopper(median_config(0, 1)).ok());
  StopperConfig unknown;
  unknown.kind = "patience";
  auto bad = make_stopper(unknown);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("patience"), std::string::npos);
}

TEST(StrategyTest, TrialSeedsDifferAcrossIndexesAndSeeds) {
  std::set<uint64_t> seen;
  for (uint64_t seed : {0ull, 1ull, 2ull}) {
    for (int64_t index = 0; index < 200; ++index) seen.insert(trial_seed(seed, index));
  }
  EXPECT_EQ(seen.size(), 600u);
  EXPECT_EQ(trial_seed(5, 17), trial_seed(5, 17));
}

}  // namespace
}  // namespace kennel::tune

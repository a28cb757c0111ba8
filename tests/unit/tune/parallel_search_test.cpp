// Search with the tuning job's own rules: trials suggested under the
// visibility rule of study_view.h (P at a time, the P - 1 newest as pending),
// TPE against random on the strategy benchmark's Branin function over several
// seeds (issue 20: the study must really be Bayesian), the constant liar, and
// what each strategy does with a warm start.
#include <algorithm>
#include <cmath>
#include <numbers>

#include <gtest/gtest.h>

#include "kennel/tune/study_view.h"
#include "unit/tune/tune_test_util.h"

namespace kennel::tune {
namespace {

using test_helpers::param;

using nlohmann::json;


double branin(double x1, double x2) {
  const double pi = std::numbers::pi;
  const double b = 5.1 / (4 * pi * pi), c = 5 / pi, t = 1 / (8 * pi);
  return std::pow(x2 - b * x1 * x1 + c * x1 - 6, 2) + 10 * (1 - t) * std::cos(x1) + 10;
}

StudySpec branin_study(const std::string& strategy, int64_t parallel, int64_t trials) {
  StudySpec spec;
  spec.name = "branin";
  spec.strategy = strategy;
  spec.sampler.kind = strategy;
  spec.max_parallel_jobs = parallel;
  spec.max_jobs = trials;
  spec.space.parameters.push_back(param("x1", {{"min", -5.0}, {"max", 10.0}}));
  spec.space.parameters.push_back(param("x2", {{"min", 0.0}, {"max", 15.0}}));
  return spec;
}

// A whole study as the workers run it, trial i finishing before trial i + P
// starts; returns the best value found and how many trials TPE chose.
std::pair<double, int> run_branin(const std::string& strategy, uint64_t seed, int64_t parallel, int64_t trials) {
  StudySpec spec = branin_study(strategy, parallel, trials);
  spec.seed = seed;
  auto sampler = make_sampler(spec.sampler, spec.space, seed).value();
  std::vector<Trial> done;
  double best = INFINITY;
  int by_tpe = 0;
  for (int64_t index = 0; index < trials; ++index) {
    // Trials <= index - P have finished; the P - 1 before it still run.
    for (auto& trial : done) {
      if (trial.index <= index - parallel) trial.state = store::kTrialCompleted;
    }
    const auto decision = decide_new_trial(spec, *sampler, {}, done, index, false);
    EXPECT_EQ(decision.kind, store::NewTrialDecision::Kind::kCreate);
    if (decision.source == "tpe") ++by_tpe;
    Trial trial;
    trial.index = index;
    trial.state = store::kTrialRunning;
    trial.hyperparameters = decision.hyperparameters;
    const double value = branin(decision.hyperparameters["x1"].get<double>(), decision.hyperparameters["x2"].get<double>());
    trial.objective = value;
    best = std::min(best, value);
    done.push_back(trial);
  }
  return {best, by_tpe};
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

TEST(ParallelSearchTest, TpeBeatsRandomOnBraninTwoTrialsAtATime) {
  // bench/tune_strategy_bench.cpp's method, small: 20 seeds x 30 trials, P = 2,
  // best value found (Branin's minimum is 0.398). The objective is minimised.
  std::vector<double> tpe, random;
  int tpe_wins = 0;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const auto [tpe_best, by_tpe] = run_branin("bayesian", seed, 2, 30);
    const auto [random_best, none] = run_branin("random", seed, 2, 30);
    EXPECT_EQ(by_tpe, 30 - 6) << "trials 0-5 are the startup (5 finished + 1 pending)";
    EXPECT_EQ(none, 0);
    tpe.push_back(tpe_best);
    random.push_back(random_best);
    if (tpe_best < random_best) ++tpe_wins;
  }
  // Measured: 12 wins, one tie (both best values came from the shared random startup); median
  // best 0.75 (TPE) vs 1.46 (random), a gap to the minimum a third of random's.
  EXPECT_GT(tpe_wins, 10) << "TPE found the better value in " << tpe_wins << " of 20 seeds";
  EXPECT_LT(median(tpe) - 0.398, 0.6 * (median(random) - 0.398))
      << "median best: TPE " << median(tpe) << ", random " << median(random);
}

TEST(ParallelSearchTest, TheConstantLiarKeepsParallelSuggestionsApart) {
  SearchSpace space;
  space.parameters.push_back(param("x", {{"min", 0.0}, {"max", 1.0}}));
  SamplerConfig config;
  config.kind = "bayesian";
  config.startup_trials = 5;
  std::vector<Observation> history;
  for (int i = 0; i < 10; ++i) {
    const double x = 0.05 + 0.1 * i;
    history.push_back({{{"x", x}}, std::abs(x - 0.45), false, false});
  }
  auto tpe = make_sampler(config, space, 1).value();
  const double alone = (*tpe->suggest(10, history))["x"].get<double>();
  EXPECT_NEAR(alone, 0.45, 0.15);
  // With a trial pending right where it would go, the next suggestion moves away
  // in most draws (the pending one counts as a bad observation).
  int moved = 0;
  for (int64_t index = 10; index < 30; ++index) {
    const double free = (*tpe->suggest(index, history))["x"].get<double>();
    auto with_pending = history;
    with_pending.push_back({{{"x", free}}, 0.0, false, true});
    with_pending.push_back({{{"x", free}}, 0.0, false, true});
    const double next = (*tpe->suggest(index, with_pending))["x"].get<double>();
    if (std::abs(next - free) > 1e-9) ++moved;
  }
  EXPECT_GE(moved, 14) << moved << " of 20";
  // Pending trials never count towards the startup.
  std::vector<Observation> only_pending(6, Observation{{{"x", 0.5}}, 0.0, false, true});
  EXPECT_EQ(tpe->phase(6, only_pending), "startup");
  EXPECT_EQ(tpe->phase(10, history), "tpe");
}

TEST(ParallelSearchTest, GridSkipsTheWarmStartsPointsAndKeepsItsOrder) {
  SearchSpace space;
  space.parameters.push_back(param("a", json::array({1, 2})));
  space.parameters.push_back(param("b", json::array({"x", "y"})));
  SamplerConfig config;
  config.kind = "grid";
  auto grid = make_sampler(config, space, 0).value();
  ASSERT_EQ(grid->size(), 4);
  grid->set_warm_start({{{{"a", 1}, {"b", "y"}}, 0.1, false, false}, {{{"a", 2}}, 0.2, false, false}});
  ASSERT_EQ(grid->size(), 3);  // {a: 2} alone is not a grid point
  EXPECT_EQ(*grid->suggest(0, {}), json({{"a", 1}, {"b", "x"}}));
  EXPECT_EQ(*grid->suggest(1, {}), json({{"a", 2}, {"b", "x"}}));
  EXPECT_EQ(*grid->suggest(2, {}), json({{"a", 2}, {"b", "y"}}));
  EXPECT_FALSE(grid->suggest(3, {}));
  EXPECT_EQ(grid->phase(0, {}), "grid");
}

TEST(ParallelSearchTest, RandomSkipsEvaluatedConfigurationsAndHyperbandStartsFromTheBest) {
  SearchSpace space;
  space.parameters.push_back(param("a", json::array({1, 2, 3})));
  space.parameters.push_back(param("lr", {{"min", 1e-4}, {"max", 1e-1}, {"scale", "log"}}));
  SearchSpace discrete;
  discrete.parameters.push_back(param("a", json::array({1, 2, 3})));
  SamplerConfig config;
  config.kind = "random";
  auto random = make_sampler(config, discrete, 4).value();
  random->set_warm_start({{{{"a", 1}}, 0.5, false, false}, {{{"a", 2}}, 0.1, false, false}});
  for (int64_t i = 0; i < 20; ++i) EXPECT_EQ(*random->suggest(i, {}), json({{"a", 3}})) << i;

  config.start_from_best = true;  // the hyperband strategy
  auto hyperband = make_sampler(config, space, 4).value();
  EXPECT_EQ(hyperband->phase(0, {}), "random");
  hyperband->set_warm_start({{{{"a", 1}, {"lr", 0.01}}, 0.5, false, false},
                             {{{"a", 2}, {"lr", 0.002}}, 0.1, false, false},
                             {{{"a", 3}, {"lr", 0.05}}, 0.05, true, false}});  // stopped early: not "best"
  EXPECT_EQ(*hyperband->suggest(0, {}), json({{"a", 2}, {"lr", 0.002}}));
  EXPECT_EQ(hyperband->phase(0, {}), "warm-start-best");
  EXPECT_EQ(hyperband->phase(1, {}), "random");
  EXPECT_NE(*hyperband->suggest(1, {}), *hyperband->suggest(0, {}));
}

}  // namespace
}  // namespace kennel::tune

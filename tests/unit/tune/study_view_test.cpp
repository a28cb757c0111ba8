// The visibility rule (trial i is chosen from the finished trials <= i - P,
// with the ones in between pending), the decider a claim calls, and the
// notes a bayesian study prints before its first trial.
#include "kennel/tune/study_view.h"

#include <gtest/gtest.h>

namespace kennel::tune {
namespace {

using nlohmann::json;

Trial trial(int64_t index, const std::string& state, std::optional<double> objective = std::nullopt) {
  Trial t;
  t.index = index;
  t.name = trial_name("s", index);
  t.state = state;
  t.objective = objective;
  t.hyperparameters = {{"lr", 0.01 * static_cast<double>(index + 1)}};
  if (objective) t.intermediate = {*objective / 2, *objective};
  return t;
}

StudySpec spec_with(int64_t parallel, int64_t jobs, int64_t startup = 5) {
  StudySpec spec;
  spec.name = "s";
  spec.max_parallel_jobs = parallel;
  spec.max_jobs = jobs;
  spec.sampler.kind = "bayesian";
  spec.sampler.startup_trials = startup;
  auto parameter = parse_parameter("lr", {{"min", 1e-4}, {"max", 1.0}, {"scale", "log"}}, ValueHint::kFloat);
  spec.space.parameters.push_back(*parameter);
  return spec;
}

TEST(StudyViewTest, TrialIWaitsForEveryTrialUpToIMinusP) {
  const std::vector<Trial> trials = {trial(0, "Completed", 0.5), trial(1, "running"), trial(2, "running")};
  EXPECT_EQ(blocking_trial(trials, 3, 2), 1);  // trial 1 (<= 3 - 2) still runs
  EXPECT_EQ(blocking_trial(trials, 3, 3), std::nullopt);
  EXPECT_EQ(blocking_trial(trials, 2, 2), std::nullopt);
}

TEST(StudyViewTest, HistoryHasFinishedTrialsUpToIMinusPAndTheRestAsPending) {
  const std::vector<Trial> trials = {trial(0, "Completed", 0.5), trial(1, "Failed", 0.1), trial(2, "Stopped", 0.2),
                                     trial(3, "Completed", 0.9), trial(4, "running")};
  ObjectiveSpec objective;
  objective.goal = "maximize";
  const auto history = history_for(trials, 5, 2, objective, {{{{"lr", 0.5}}, -0.3, false, false}});
  // The warm start, trials 0, 2 and 3 (<= 5 - 2; the failed trial 1 says nothing), trial 4 pending.
  ASSERT_EQ(history.size(), 5u);
  EXPECT_DOUBLE_EQ(history[0].loss, -0.3);
  EXPECT_DOUBLE_EQ(history[1].loss, -0.5);  // maximised: negated
  EXPECT_FALSE(history[1].pending);
  EXPECT_DOUBLE_EQ(history[2].loss, -0.2);
  EXPECT_DOUBLE_EQ(history[3].loss, -0.9);
  EXPECT_TRUE(history[4].pending);
  // Trial 4 finished early would change nothing: the horizon is the index, not the clock.
  auto finished_early = trials;
  finished_early[4] = trial(4, "Completed", 0.1);
  const auto same = history_for(finished_early, 5, 2, objective, {{{{"lr", 0.5}}, -0.3, false, false}});
  ASSERT_EQ(same.size(), 5u);
  EXPECT_TRUE(same[4].pending);
  const auto curves = curves_visible_to(trials, 5, 2, objective);
  ASSERT_EQ(curves.size(), 4u);  // 0, 1 (failed, but it has a curve), 2, 3
  EXPECT_DOUBLE_EQ(curves[0].losses.back(), -0.5);
}

TEST(StudyViewTest, TheDeciderWaitsCreatesAndNamesThePhase) {
  StudySpec spec = spec_with(2, 10, 2);
  auto sampler = make_sampler(spec.sampler, spec.space, 3).value();
  std::vector<Trial> trials = {trial(0, "running"), trial(1, "running")};
  auto wait = decide_new_trial(spec, *sampler, {}, trials, 2, false);
  EXPECT_EQ(wait.kind, store::NewTrialDecision::Kind::kWait);
  EXPECT_NE(wait.why.find("s-001"), std::string::npos) << wait.why;
  trials[0] = trial(0, "Completed", 0.4);
  auto startup = decide_new_trial(spec, *sampler, {}, trials, 2, false);
  ASSERT_EQ(startup.kind, store::NewTrialDecision::Kind::kCreate);
  EXPECT_EQ(startup.name, "s-003");
  EXPECT_EQ(startup.source, "startup");  // one finished trial: TPE needs 2
  trials.push_back(trial(2, "running"));
  trials[1] = trial(1, "Completed", 0.6);
  auto tpe = decide_new_trial(spec, *sampler, {}, trials, 3, false);
  ASSERT_EQ(tpe.kind, store::NewTrialDecision::Kind::kCreate);
  EXPECT_EQ(tpe.source, "tpe");
  // The same trials give the same values: any worker computes them alike.
  EXPECT_EQ(decide_new_trial(spec, *sampler, {}, trials, 3, false).hyperparameters, tpe.hyperparameters);
  // The feature cache rule: nothing but trial 0 until it has finished.
  std::vector<Trial> cold = {trial(0, "running")};
  EXPECT_EQ(decide_new_trial(spec, *sampler, {}, cold, 1, true).kind, store::NewTrialDecision::Kind::kWait);
}

TEST(StudyViewTest, ABayesianStudyThatCannotLeaveItsStartupIsWarned) {
  // The main job's case: 6 trials, 2 at a time, 5 startup trials.
  const auto warned = plan_notes(spec_with(2, 6), 0);
  ASSERT_EQ(warned.warnings.size(), 1u);
  const std::string& text = warned.warnings[0];
  EXPECT_NE(text.find("bayesian with 6 trials, 2 at a time: all will be random"), std::string::npos) << text;
  EXPECT_NE(text.find("raise --max-jobs above 6"), std::string::npos) << text;
  EXPECT_NE(text.find("--startup-trials to 4"), std::string::npos) << text;
  // With --startup-trials 4, trial 6 (index 5) is TPE's: 4 finished trials by then.
  const auto fits = plan_notes(spec_with(2, 6, 4), 0);
  EXPECT_TRUE(fits.warnings.empty());
  ASSERT_EQ(fits.info.size(), 1u);
  EXPECT_NE(fits.info[0].find("trials 1-5 are random (startup), trials 6-6 chosen by TPE"), std::string::npos)
      << fits.info[0];
  // Warm-start trials count towards the startup.
  EXPECT_TRUE(plan_notes(spec_with(2, 6), 3).warnings.empty());
  EXPECT_EQ(first_tpe_trial(spec_with(1, 10).sampler, 1, 0), 5);
  EXPECT_EQ(first_tpe_trial(spec_with(3, 10).sampler, 3, 0), 7);
  EXPECT_EQ(first_tpe_trial(spec_with(3, 10).sampler, 3, 9), 0);
}

}  // namespace
}  // namespace kennel::tune

// What a trial may know of the others — the rule that makes a study a
// function of its seed and its parallelism P (max_parallel_jobs, across every
// worker): trial i is created only once every trial with index <= i - P has
// finished; it is suggested from those (failed ones aside) plus the warm
// start, with trials i - P + 1 .. i - 1 as pending (TPE's constant liar), and
// the early-stopping rules compare it with the same finished trials. Which of
// its P - 1 predecessors happen to have finished already never matters.
// Pure functions over the store's trials; no I/O but load_warm_start.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kennel/store/store.h"
#include "kennel/tune/strategy.h"
#include "kennel/tune/study_spec.h"
#include "kennel/tune/trial_metrics.h"

namespace kennel::tune {

// The earliest trial index <= index - parallel that has not finished (what trial `index` waits for).
std::optional<int64_t> blocking_trial(const std::vector<Trial>& trials, int64_t index, int64_t parallel);

std::vector<Observation> history_for(const std::vector<Trial>& trials, int64_t index, int64_t parallel,
                                     const ObjectiveSpec& objective, const std::vector<Observation>& warm_start);

std::vector<TrialCurve> curves_visible_to(const std::vector<Trial>& trials, int64_t index, int64_t parallel,
                                          const ObjectiveSpec& objective);

std::string trial_name(const std::string& study, int64_t index);  // <study>-NNN, from 1

// The claim's answer for a new trial: wait (for an earlier trial, or for trial
// 0 to fill the feature cache when `warm_cache_first`), create with the
// sampler's values and phase, or exhausted (grid).
store::NewTrialDecision decide_new_trial(const StudySpec& spec, Sampler& sampler,
                                         const std::vector<Observation>& warm_start, const std::vector<Trial>& trials,
                                         int64_t index, bool warm_cache_first);

// The finished trials of the spec's warm-start studies (in `store`), as
// observations restricted to this study's space. Errors name the study.
Result<std::vector<Observation>> load_warm_start(store::Store& store, const StudySpec& spec,
                                                 std::vector<std::string>* notes);

// What to tell the user before the first trial: which trials the strategy
// chooses how, and a warning when a bayesian study cannot leave its random
// startup phase ("bayesian with 6 trials: all will be random; ...").
struct StudyPlanNotes {
  std::vector<std::string> info;
  std::vector<std::string> warnings;
};
StudyPlanNotes plan_notes(const StudySpec& spec, int64_t warm_start_count);

}  // namespace kennel::tune

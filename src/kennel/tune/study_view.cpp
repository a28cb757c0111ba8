#include "kennel/tune/study_view.h"

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace kennel::tune {

using nlohmann::json;

std::string trial_name(const std::string& study, int64_t index) { return fmt::format("{}-{:03d}", study, index + 1); }

std::optional<int64_t> blocking_trial(const std::vector<Trial>& trials, int64_t index, int64_t parallel) {
  for (const auto& trial : trials) {
    if (trial.index <= index - parallel && !trial.finished()) return trial.index;
  }
  return std::nullopt;
}

std::vector<Observation> history_for(const std::vector<Trial>& trials, int64_t index, int64_t parallel,
                                     const ObjectiveSpec& objective, const std::vector<Observation>& warm_start) {
  std::vector<Observation> history = warm_start;
  for (const auto& trial : trials) {
    if (trial.index >= index) continue;
    if (trial.index > index - parallel) {
      // Running, or finished too recently to count: the same for every run of the study.
      history.push_back({trial.hyperparameters, 0.0, false, true});
      continue;
    }
    // A failed trial's partial value says little about its hyperparameters: TPE ignores it, as Optuna does.
    if (!trial.finished() || !trial.objective || trial.state == store::kTrialFailed) continue;
    const double value = *trial.objective;
    history.push_back({trial.hyperparameters, objective.maximize() ? -value : value, trial.early_stopped, false});
  }
  return history;
}

std::vector<TrialCurve> curves_visible_to(const std::vector<Trial>& trials, int64_t index, int64_t parallel,
                                          const ObjectiveSpec& objective) {
  std::vector<TrialCurve> curves;
  for (const auto& trial : trials) {
    if (trial.index > index - parallel || !trial.finished() || trial.intermediate.empty()) continue;
    curves.push_back(curve_of(trial, objective));
  }
  return curves;
}

store::NewTrialDecision decide_new_trial(const StudySpec& spec, Sampler& sampler,
                                         const std::vector<Observation>& warm_start, const std::vector<Trial>& trials,
                                         int64_t index, bool warm_cache_first) {
  store::NewTrialDecision decision;
  const int64_t parallel = spec.max_parallel_jobs;
  if (const auto blocking = blocking_trial(trials, index, parallel)) {
    decision.kind = store::NewTrialDecision::Kind::kWait;
    decision.why = fmt::format("trial {} waits for {} to finish (trial i is chosen from trials <= i - {})",
                               trial_name(spec.name, index), trial_name(spec.name, *blocking), parallel);
    return decision;
  }
  if (warm_cache_first && index > 0 && (trials.empty() || !trials.front().finished())) {
    decision.kind = store::NewTrialDecision::Kind::kWait;
    decision.why = "the first trial fills the feature cache alone";
    return decision;
  }
  const auto history = history_for(trials, index, parallel, spec.objective, warm_start);
  auto values = sampler.suggest(index, history);
  if (!values) {
    decision.kind = store::NewTrialDecision::Kind::kExhausted;
    return decision;
  }
  decision.kind = store::NewTrialDecision::Kind::kCreate;
  decision.name = trial_name(spec.name, index);
  decision.hyperparameters = std::move(*values);
  decision.source = sampler.phase(index, history);
  return decision;
}

Result<std::vector<Observation>> load_warm_start(store::Store& store, const StudySpec& spec,
                                                 std::vector<std::string>* notes) {
  std::vector<Observation> observations;
  for (const auto& source : spec.warm_start) {
    auto study = store.get_study(source);
    if (!study.ok()) {
      return not_found("--warm-start {}: no tuning job of that name in the store {} (`kennel jobs list` shows them)",
                       source, store.describe());
    }
    auto other = study_spec_from_json(json::parse(study->spec_json, nullptr, false));
    if (!other.ok()) return other.status().with_context(fmt::format("--warm-start {}", source));
    if (other->objective.metric != spec.objective.metric) {
      return invalid_argument("--warm-start {}: it optimised '{}', this study optimises '{}'", source,
                              other->objective.metric, spec.objective.metric);
    }
    auto trials = store.list_trials(source);
    if (!trials.ok()) return trials.status();
    size_t used = 0;
    for (const auto& trial : *trials) {
      if (!trial.objective || !trial.finished() || trial.state == store::kTrialFailed) continue;
      // Keep the values that lie in this study's space; a trial sharing none says nothing here.
      json values = json::object();
      for (const auto& parameter : spec.space.parameters) {
        if (trial.hyperparameters.contains(parameter.name) && parameter.contains(trial.hyperparameters[parameter.name])) {
          values[parameter.name] = trial.hyperparameters[parameter.name];
        }
      }
      if (values.empty()) continue;
      // Goals may differ in name only: both studies optimise the same metric.
      const double value = *trial.objective;
      observations.push_back({values, spec.objective.maximize() ? -value : value, trial.early_stopped, false});
      ++used;
    }
    if (used == 0) {
      return invalid_argument(
          "--warm-start {}: none of its trials has an objective and values inside this study's ranges ({})", source,
          spec.space.to_json().dump());
    }
    if (notes) notes->push_back(fmt::format("warm start: {} trials of {}", used, source));
  }
  return observations;
}

StudyPlanNotes plan_notes(const StudySpec& spec, int64_t warm_start_count) {
  StudyPlanNotes notes;
  const int64_t jobs = spec.max_jobs, parallel = spec.max_parallel_jobs;
  if (spec.sampler.kind == "bayesian") {
    const int64_t first = first_tpe_trial(spec.sampler, parallel, warm_start_count);
    const int64_t needed = std::max<int64_t>(spec.sampler.startup_trials, 2);
    if (first >= jobs) {
      // Raising max_jobs to first + 1 gives TPE one trial; lowering startup so that first <= jobs - 1.
      const int64_t startup_fits = jobs - parallel + warm_start_count;
      std::string lower = startup_fits >= 2
                              ? fmt::format("lower --startup-trials to {} or less", startup_fits)
                              : fmt::format("lower --max-parallel-jobs (TPE needs 2 finished trials)");
      notes.warnings.push_back(fmt::format(
          "bayesian with {} trials{}: all will be random (TPE chooses only once {} trials have finished, and trial "
          "i sees the trials <= i - {}); raise --max-jobs above {} or {}",
          jobs, parallel > 1 ? fmt::format(", {} at a time", parallel) : "", needed, parallel, first, lower));
    } else if (first > 0) {
      notes.info.push_back(fmt::format("bayesian: trials 1-{} are random (startup), trials {}-{} chosen by TPE{}",
                                       first, first + 1, jobs,
                                       warm_start_count > 0 ? fmt::format(" ({} warm-start trials count)", warm_start_count)
                                                            : ""));
    } else {
      notes.info.push_back(fmt::format("bayesian: every trial chosen by TPE ({} warm-start trials)", warm_start_count));
    }
  }
  return notes;
}

}  // namespace kennel::tune

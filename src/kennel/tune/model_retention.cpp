#include "kennel/tune/model_retention.h"

namespace kennel::tune {

namespace fs = std::filesystem;

std::optional<size_t> best_trial_index(const std::vector<Trial>& trials, const ObjectiveSpec& objective) {
  std::optional<size_t> best;
  auto rank = [](const Trial& trial) { return trial.state == store::kTrialCompleted ? 0 : 1; };
  for (size_t i = 0; i < trials.size(); ++i) {
    const Trial& trial = trials[i];
    if (!trial.finished() || !trial.objective || trial.state == store::kTrialFailed) continue;
    if (!best) {
      best = i;
      continue;
    }
    const Trial& current = trials[*best];
    if (rank(trial) != rank(current)) {
      if (rank(trial) < rank(current)) best = i;
      continue;
    }
    const bool better = objective.maximize() ? *trial.objective > *current.objective : *trial.objective < *current.objective;
    if (better) best = i;
  }
  return best;
}

std::vector<fs::path> prune_trial_files(const std::string& policy, const std::vector<Trial>& trials,
                                        const ObjectiveSpec& objective, const std::string& host,
                                        const store::HomeLayout& home) {
  std::vector<fs::path> removed;
  if (policy == "all") return removed;
  const auto best = best_trial_index(trials, objective);
  for (size_t i = 0; i < trials.size(); ++i) {
    const Trial& trial = trials[i];
    if (!trial.finished() || (!trial.host.empty() && trial.host != host)) continue;
    const store::JobPaths paths = home.job(trial.name);
    std::vector<fs::path> doomed = {paths.checkpoints()};
    if (policy == "none" || !best || *best != i) doomed.push_back(paths.model());
    for (const auto& path : doomed) {
      std::error_code error;
      if (!fs::exists(path, error)) continue;
      if (fs::remove_all(path, error) > 0 && !error) removed.push_back(path);
    }
  }
  return removed;
}

}  // namespace kennel::tune

// save_models: which finished trials keep their model on disk. A study of
// many trials must not fill the disk (a ResNet-50 trial saves ~100 MB):
//   best  only the study's current best trial keeps model/; every finished
//         trial loses checkpoints/ (a running one keeps them, to resume)
//   none  no finished trial keeps model/ or checkpoints/
//   all   everything stays (the behaviour before save_models)
// Each worker prunes only the trials that ran on its own host (their files
// are there); the best is re-decided after every trial, so a model that
// stops being the best is removed by its host's worker. Returns what it removed.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "kennel/store/layout.h"
#include "kennel/tune/study_spec.h"
#include "kennel/tune/trial_metrics.h"

namespace kennel::tune {

// The index into `trials` of the best finished trial with an objective: a
// Completed one beats any Stopped one (only a completed trial has a model to
// use); failed trials never count.
std::optional<size_t> best_trial_index(const std::vector<Trial>& trials, const ObjectiveSpec& objective);

std::vector<std::filesystem::path> prune_trial_files(const std::string& policy, const std::vector<Trial>& trials,
                                                     const ObjectiveSpec& objective, const std::string& host,
                                                     const store::HomeLayout& home);

}  // namespace kennel::tune

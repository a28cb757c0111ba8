// What a trial runs: the `kennel train` command line of a Kennel trial (a
// fresh spec, or `--resume` of its checkpoint) and an external --command with
// the trial's values substituted; the CPU threads each trial gets; and
// whether the first trial should fill the feature cache alone. Pure.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kennel/tune/study_spec.h"

namespace kennel::tune {

// {name} placeholders take the values (shell-quoted unless plainly safe); ${NAME} is the shell's.
std::string substitute_command(const std::string& command, const nlohmann::json& hyperparameters);

// The base spec with the trial's values, its name and (unless tuned) its thread share.
nlohmann::json kennel_trial_spec(const StudySpec& spec, const std::string& trial, const nlohmann::json& hyperparameters,
                                 int64_t threads);

struct KennelTrialCommand {
  std::filesystem::path executable;  // the kennel binary
  std::filesystem::path home;
  std::string store;                 // --store of the trial: where it registers itself
  std::string study;
  int64_t nproc_per_node = 1;
  std::string output;                // `--output` of the trial ("" = none): s3://BUCKET/PREFIX/STUDY
};
// The study's `output` with the study's name appended ("" without one).
std::string trial_output(const StudySpec& spec);
// `kennel --home H --store S train --spec SPEC --parent STUDY ...`
std::vector<std::string> kennel_train_argv(const KennelTrialCommand& command, const std::filesystem::path& spec_path);
// `kennel ... train --resume TRIAL ...`: continues its checkpoint.
std::vector<std::string> kennel_resume_argv(const KennelTrialCommand& command, const std::string& trial);

// Threads for all trials of this worker: the spec's `threads`, else the base
// training spec's, else every core.
int64_t total_threads(const StudySpec& spec);
// Parallel frozen-backbone trials all need the same cached features, and
// computing them is most of a cold study's time: the first trial runs alone,
// with every thread (the others would only wait on the cache's lock).
bool warms_feature_cache(const StudySpec& spec);

}  // namespace kennel::tune

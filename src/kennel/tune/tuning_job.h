// A tuning job: runs a StudySpec's trials as child processes (`kennel train`
// with the trial's spec, or the user's --command), at most max_parallel_jobs
// at once with the CPU threads split between them, asks the sampler for each
// trial's hyperparameters, watches each trial's intermediate objective and
// stops poor ones with the early-stopping rule, retries crashed trials, and
// records everything: the registry (the tuning job and every trial, with its
// parent), and tuning/<name>/{study.json, trials.json, best.json, report.html,
// trials/<trial>.log}.
//
// Reproducibility: trial i is suggested from the trials with index <= i - P
// (P = max_parallel_jobs), waiting for them to finish if needed, and compared
// with the same set by the stopper — so a study is a function of its seed and
// P, not of which trial happened to finish first.
//
// Resume: trials.json is rewritten atomically at every change. After the
// tuner dies (SIGKILL included; its trials get SIGTERM through
// PR_SET_PDEATHSIG and checkpoint), `resume_tuning_job` keeps finished
// trials, re-runs the interrupted ones (continuing their checkpoints) and goes
// on with the same history. Thread-safety: one tuning job per process.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kennel/store/job_registry.h"
#include "kennel/store/layout.h"
#include "kennel/tune/study_spec.h"
#include "kennel/util/status.h"

namespace kennel::tune {

struct TuneOptions {
  std::filesystem::path home;        // KENNEL_HOME
  std::filesystem::path executable;  // the kennel binary that runs trials (`kennel train`)
  bool quiet = false;                // no per-trial lines on stdout
};

// One trial as trials.json records it.
struct Trial {
  int64_t index = 0;
  std::string name;
  nlohmann::json hyperparameters = nlohmann::json::object();
  std::string state = "pending";  // pending | running | Completed | Stopped | Failed
  bool early_stopped = false;
  std::string reason;
  std::optional<double> objective;
  std::vector<double> intermediate;  // the objective metric after each epoch (raw, as reported)
  int64_t epochs_run = 0;
  int64_t attempts = 0;
  double started_at = 0, ended_at = 0;

  bool finished() const { return state == "Completed" || state == "Stopped" || state == "Failed"; }
  nlohmann::json to_json() const;
  static Trial from_json(const nlohmann::json& object);
};

struct TuningResult {
  std::string name;
  store::JobStatus status = store::JobStatus::kFailed;
  std::string reason;
  std::filesystem::path tuning_dir;
  double wall_seconds = 0;
};

// Usage errors (bad spec, name taken, unknown warm-start job) come back as a
// non-OK Result before anything is created.
Result<TuningResult> run_tuning_job(const StudySpec& spec, const TuneOptions& options);
// Continues a tuning job that was stopped or whose tuner died.
Result<TuningResult> resume_tuning_job(const std::string& name, const TuneOptions& options);

// ---- reading a study back (describe, best, report) ----

struct StudyState {
  StudySpec spec;
  std::vector<Trial> trials;
  store::JobRecord record;  // the tuning job's registry row
};

Result<StudyState> load_study(const std::filesystem::path& home, const std::string& name);
// The same from a registry row already read (e.g. through a read-only registry) and the
// study's folder: reads study.json and trials.json only.
Result<StudyState> load_study_files(const store::JobRecord& record, const store::StudyPaths& study);

// Index into state.trials of the best trial with an objective (early-stopped
// ones included: they reached that value), or nullopt.
std::optional<size_t> best_trial(const StudyState& state);

// {name, objective: {metric, goal, at, value}, hyperparameters, spec (the full
// training spec to feed to `kennel train --spec`, Kennel trials), model}.
nlohmann::json best_trial_json(const std::filesystem::path& home, const StudyState& state);

// Everything `describe` shows and the HTML report draws.
nlohmann::json study_summary_json(const std::filesystem::path& home, const StudyState& state);

// Writes tuning/<name>/report.html; returns its path.
Result<std::filesystem::path> write_tuning_report(const std::filesystem::path& home, const StudyState& state);

}  // namespace kennel::tune

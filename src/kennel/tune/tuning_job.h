// A tuning job: a study in the store (its spec, its trials, its registry row)
// and the workers that run its trials (study_worker.h). With the embedded
// store, `kennel tune` creates the study and is its only worker, as a
// one-machine tuner; with a shared store (PostgreSQL) the creating process is
// one worker among any number started with `kennel tune worker` on other
// hosts, and `--no-run` only creates the study.
//
// Files on each host: tuning/<name>/{study.json, trials.json (this host's
// view), log.txt, trials/<trial>.log, best.json, best-spec.json, report.html},
// and jobs/<trial>/ for the trials that ran there. The store is the record:
// describe/best read it from any host.
//
// Resume (the embedded store's one-tuner studies): after the tuner dies
// (SIGKILL included; its trials get SIGTERM through PR_SET_PDEATHSIG and
// checkpoint), `resume_tuning_job` keeps finished trials, waits for those
// still ending, re-runs the interrupted ones (continuing their checkpoints)
// and goes on with the same history. Thread-safety: one tuning job per process.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kennel/store/job_registry.h"
#include "kennel/store/layout.h"
#include "kennel/store/store.h"
#include "kennel/tune/study_spec.h"
#include "kennel/tune/study_worker.h"
#include "kennel/tune/trial_metrics.h"
#include "kennel/util/status.h"

namespace kennel::tune {

struct TuneOptions {
  std::filesystem::path home;        // KENNEL_HOME
  std::filesystem::path executable;  // the kennel binary that runs trials (`kennel train`)
  store::StoreLocation store;        // where the study lives (default: the home's embedded store)
  bool quiet = false;                // no per-trial lines on stdout
  int64_t max_parallel = 0;          // trials this process runs at once (0: the study's max_parallel_jobs)
  LauncherOptions launcher;
};

struct TuningResult {
  std::string name;
  store::JobStatus status = store::JobStatus::kFailed;
  std::string reason;
  std::filesystem::path tuning_dir;
  double wall_seconds = 0;
  bool ran = true;  // false: --no-run, the study waits for workers
  int stop_signal = 0;  // the signal that stopped this process's worker, or 0
};

// Usage errors (bad spec, name taken, unknown warm-start job, unreachable
// store) come back as a non-OK Result before anything is created.
Result<TuningResult> run_tuning_job(const StudySpec& spec, const TuneOptions& options);
// Creates the study (and its files here) without running a trial (`--no-run`).
Result<TuningResult> create_tuning_job(const StudySpec& spec, const TuneOptions& options);
// Continues a tuning job that was stopped or whose tuner died.
Result<TuningResult> resume_tuning_job(const std::string& name, const TuneOptions& options);
// `kennel tune worker`: runs trials of `study` (empty: every study in progress,
// oldest first) until none is left. The result is the last study's.
Result<TuningResult> run_tuning_worker(const std::string& study, const TuneOptions& options);

// ---- reading a study back (describe, best, report) ----

struct StudyState {
  StudySpec spec;
  std::vector<Trial> trials;
  store::JobRecord record;  // the tuning job's registry row
  std::string store;        // where it was read from, for messages
};

Result<StudyState> load_study(store::Store& store, const std::string& name);
// The same from a registry row already read (e.g. through a read-only store,
// which reads an older kennel's file-only study from `files` rather than
// importing it) and the study's folder on this host.
Result<StudyState> load_study(store::Store& store, const store::JobRecord& record, const store::StudyPaths& files);
Result<StudyState> load_study(const TuneOptions& options, const std::string& name);

// Index into state.trials of the best trial with an objective (early-stopped
// ones included: they reached that value), or nullopt.
std::optional<size_t> best_trial(const StudyState& state);

// {name, objective: {metric, goal, at, value}, hyperparameters, spec (the full
// training spec to feed to `kennel train --spec`, Kennel trials), model (a
// path on `host`, when it is still there)}.
nlohmann::json best_trial_json(const std::filesystem::path& home, const StudyState& state);

// Everything `describe` shows and the HTML report draws.
nlohmann::json study_summary_json(const std::filesystem::path& home, const StudyState& state);

// Writes tuning/<name>/report.html; returns its path.
Result<std::filesystem::path> write_tuning_report(const std::filesystem::path& home, const StudyState& state);

}  // namespace kennel::tune

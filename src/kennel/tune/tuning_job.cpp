// A tuning job as a table of contents: check the spec and the store, create
// the study (its rows and this host's files), say what the strategy will do,
// run a worker, and record the outcome once every trial has finished.
#include "kennel/tune/tuning_job.h"

#include <signal.h>

#include <chrono>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "kennel/store/layout.h"
#include "kennel/tune/study_view.h"
#include "kennel/tune/trial_metrics.h"
#include "kennel/util/fs.h"
#include "kennel/util/stop_signal.h"

namespace kennel::tune {

namespace fs = std::filesystem;
using nlohmann::json;
using store::JobStatus;

namespace {

Result<std::unique_ptr<store::Store>> open_store(const TuneOptions& options) {
  if (options.store.kind == store::StoreLocation::Kind::kEmbedded) {
    Status created = kennel::create_directories(options.home);
    if (!created.ok()) {
      return Status(ErrorCode::kPermissionDenied,
                    fmt::format("the Kennel home '{}' is not writable ({}): pass --home DIR or set KENNEL_HOME",
                                options.home.string(), created.message()));
    }
  }
  return store::open_store(options.store);
}

// The study's own tuner: the embedded store's `kennel tune`, which owns its
// study like a training job owns its run (its death ends the study: Failed,
// resumable). With a shared store no process owns a study; its workers come and go.
bool owns_study(const TuneOptions& options) { return !options.store.shared(); }

WorkerOptions worker_options(const TuneOptions& options, bool owner) {
  WorkerOptions worker;
  worker.home = options.home;
  worker.executable = options.executable;
  worker.store = options.store;
  worker.max_parallel = options.max_parallel;
  worker.launcher = options.launcher;
  worker.quiet = options.quiet;
  worker.owner = owner;
  return worker;
}

// This host's copy of the study's files, for the trials that run here.
Status write_study_files(const fs::path& home, const StudySpec& spec) {
  const store::StudyPaths paths = store::HomeLayout(home).study(spec.name);
  KENNEL_RETURN_IF_ERROR(kennel::create_directories(paths.trial_files()));
  return write_file_atomic(paths.study(), to_json(spec).dump(2) + "\n");
}

// The study's outcome: this host's best.json, best-spec.json and report; and,
// while its row still says InProgress, its final status (whichever worker sees
// the last trial end first writes it).
Result<TuningResult> record_outcome(store::Store& store, const TuneOptions& options, const StudySpec& spec,
                                    const WorkerResult& worked, double wall_seconds) {
  TuningResult result;
  result.name = spec.name;
  result.wall_seconds = wall_seconds;
  const store::StudyPaths study = store::HomeLayout(options.home).study(spec.name);
  result.tuning_dir = study.dir;
  auto state = load_study(store, spec.name);
  if (!state.ok()) return state.status();
  const auto best = best_trial(*state);
  json final_metrics = json::object();
  json artifacts = {{"tuning_dir", study.dir.string()}, {"trials", study.trials().string()}};
  if (best) {
    const json best_json = best_trial_json(options.home, *state);
    KENNEL_RETURN_IF_ERROR(write_file_atomic(study.best(), best_json.dump(2) + "\n"));
    if (best_json.contains("spec")) {
      KENNEL_RETURN_IF_ERROR(write_file_atomic(study.best_spec(), best_json["spec"].dump(2) + "\n"));
      artifacts["best_spec"] = study.best_spec().string();
    }
    final_metrics[spec.objective.metric] = best_json["objective"]["value"];
    final_metrics["best_trial"] = best_json["name"];
    artifacts["best_trial"] = best_json["name"];
    if (!best_json["model"].is_null()) artifacts["best_model"] = best_json["model"];
  }
  // The report shows the outcome this worker records (or finds recorded), not
  // the InProgress row the store still holds while the outcome is decided.
  auto write_report = [&] {
    if (auto report = write_tuning_report(options.home, *state); report.ok()) {
      artifacts["report"] = report->string();
    } else {
      spdlog::warn("could not write the tuning report: {}", report.status().message());
    }
  };
  const bool owner = owns_study(options);
  if (worked.stop_signal && !owner) {
    // One worker stopped; the study goes on with the others.
    write_report();
    result.status = state->record.status;
    result.reason = fmt::format("this worker was stopped by {}; the study goes on with its other workers (start one "
                                "with `kennel tune worker --study {}`)",
                                StopSignalScope::name(worked.stop_signal), spec.name);
    return result;
  }
  if (worked.stop_signal) {
    result.status = JobStatus::kStopped;
    result.reason = fmt::format("stopped by {}; continue with `kennel tune resume {}`",
                                StopSignalScope::name(worked.stop_signal), spec.name);
  } else if (!best) {
    result.status = JobStatus::kFailed;
    std::map<std::string, int> reasons;
    for (const auto& trial : state->trials) ++reasons[trial.reason.empty() ? trial.state : trial.reason];
    std::string summary;
    for (const auto& [reason, count] : reasons) summary += fmt::format("{}{}x {}", summary.empty() ? "" : "; ", count, reason);
    result.reason = fmt::format("all {} trials failed: {}", state->trials.size(), summary);
  } else {
    result.status = JobStatus::kCompleted;
  }
  auto row = store.get_job(spec.name);
  const bool records = owner || (row.ok() && row->status == JobStatus::kInProgress);
  if (!records && row.ok()) {
    // Another worker recorded the outcome first.
    result.status = row->status;
    result.reason = row->failure_reason;
  }
  state->record.status = result.status;
  state->record.failure_reason = result.reason;
  state->record.ended_at = records || !row.ok() ? store::unix_now() : row->ended_at;
  write_report();
  if (records) {
    (void)store.set_final_metrics(spec.name, final_metrics.dump());
    (void)store.set_artifacts(spec.name, artifacts.dump());
    KENNEL_RETURN_IF_ERROR(store.set_status(spec.name, result.status, result.reason));
  }
  return result;
}

Result<TuningResult> work(store::Store& store, StudyWorker& worker, const TuneOptions& options, const StudySpec& spec) {
  const auto started = std::chrono::steady_clock::now();
  auto worked = worker.run();
  if (!worked.ok()) return worked.status();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (!worked->study_over && !worked->stop_signal) {
    // The study was ended elsewhere (its row is no longer InProgress).
    auto state = load_study(store, spec.name);
    if (!state.ok()) return state.status();
    TuningResult result;
    result.name = spec.name;
    result.status = state->record.status;
    result.reason = state->record.failure_reason;
    result.tuning_dir = store::HomeLayout(options.home).study(spec.name).dir;
    result.wall_seconds = wall;
    return result;
  }
  auto result = record_outcome(store, options, spec, *worked, wall);
  if (result.ok()) result->stop_signal = worked->stop_signal;
  return result;
}

// Creates the study after every check; the worker (already made) will run it.
Result<StudySpec> create_study(store::Store& store, const StudySpec& requested, const TuneOptions& options,
                               bool running_here) {
  auto spec = resolve_study_spec(requested);
  if (!spec.ok()) return spec.status();
  if (auto existing = store.get_job(spec->name); existing.ok()) {
    return Status(ErrorCode::kAlreadyExists,
                  fmt::format("a job named '{}' already exists in the store {} ({}): choose another --name, or "
                              "continue it with `kennel tune resume {}`{}",
                              spec->name, store.describe(), store::job_status_name(existing->status), spec->name,
                              options.store.shared() ? fmt::format(" or `kennel tune worker --study {}`", spec->name)
                                                     : ""));
  }
  const store::StudyPaths study_paths = store::HomeLayout(options.home).study(spec->name);
  std::error_code error;
  if (fs::exists(study_paths.dir, error)) {
    return Status(ErrorCode::kAlreadyExists,
                  fmt::format("tuning directory '{}' already exists: choose another --name", study_paths.dir.string()));
  }
  for (const auto& source : spec->warm_start) {
    auto other = store.get_job(source);
    if (!other.ok() || other->kind != "tuning") {
      return not_found("--warm-start {}: no tuning job of that name in the store {} (`kennel jobs list` shows them)",
                       source, store.describe());
    }
  }
  const json study_json = to_json(*spec);
  store::StudyRecord study;
  study.name = spec->name;
  study.spec_json = study_json.dump();
  study.max_jobs = spec->max_jobs;
  study.max_parallel_jobs = spec->max_parallel_jobs;
  study.max_retries = spec->max_retries;
  study.lease_seconds = spec->lease_seconds;
  study.requeue_grace_seconds = spec->requeue_grace_seconds;
  store::JobRecord record;
  record.name = spec->name;
  record.kind = "tuning";
  record.spec_json = study_json.dump();
  record.job_dir = study_paths.dir.string();
  if (!(running_here && owns_study(options))) record.pid = store::JobRecord::kNoOwner;
  KENNEL_RETURN_IF_ERROR(store.create_study(study, record));
  if (Status written = write_study_files(options.home, *spec); !written.ok()) {
    (void)store.set_status(spec->name, JobStatus::kFailed, written.message());
    return written;
  }
  return spec;
}

void announce_plan(const StudyWorker& worker, const StudySpec& spec, store::Store& store) {
  auto warm = load_warm_start(store, spec, nullptr);
  const StudyPlanNotes notes = plan_notes(spec, warm.ok() ? static_cast<int64_t>(warm->size()) : 0);
  for (const auto& line : notes.info) worker.say(line);
  for (const auto& line : notes.warnings) {
    spdlog::warn("{}", line);
    worker.say("warning: " + line);
  }
}

}  // namespace

Result<TuningResult> run_tuning_job(const StudySpec& requested, const TuneOptions& options) {
  auto resolved = resolve_study_spec(requested);
  if (!resolved.ok()) return resolved.status();
  auto store = open_store(options);
  if (!store.ok()) return store.status();
  // The worker first: its checks (warm start, launcher) must pass before anything is created.
  auto worker = StudyWorker::create(*resolved, worker_options(options, owns_study(options)));
  if (!worker.ok()) return worker.status();
  auto spec = create_study(**store, *resolved, options, /*running_here=*/true);
  if (!spec.ok()) return spec.status();
  announce_plan(**worker, *spec, **store);
  return work(**store, **worker, options, *spec);
}

Result<TuningResult> create_tuning_job(const StudySpec& requested, const TuneOptions& options) {
  auto resolved = resolve_study_spec(requested);
  if (!resolved.ok()) return resolved.status();
  auto store = open_store(options);
  if (!store.ok()) return store.status();
  auto warm = load_warm_start(**store, *resolved, nullptr);
  if (!warm.ok()) return warm.status();
  auto spec = create_study(**store, *resolved, options, /*running_here=*/false);
  if (!spec.ok()) return spec.status();
  const StudyPlanNotes notes = plan_notes(*spec, static_cast<int64_t>(warm->size()));
  for (const auto& line : notes.warnings) spdlog::warn("{}", line);
  TuningResult result;
  result.name = spec->name;
  result.status = JobStatus::kInProgress;
  result.tuning_dir = store::HomeLayout(options.home).study(spec->name).dir;
  result.ran = false;
  return result;
}

Result<TuningResult> resume_tuning_job(const std::string& name, const TuneOptions& options) {
  auto store = open_store(options);
  if (!store.ok()) return store.status();
  auto state = load_study(**store, name);
  if (!state.ok()) return state.status();
  if (options.store.shared()) {
    return failed_precondition("tuning job '{}' lives in the shared store {}, where no tuner owns a study: join it "
                               "with `kennel tune worker --study {}`",
                               name, (*store)->describe(), name);
  }
  if (state->record.status == JobStatus::kInProgress) {
    return failed_precondition("tuning job '{}' is still running (pid {} on {}): stop it first with `kennel jobs stop {}`",
                               name, state->record.pid, state->record.host, name);
  }
  if (state->record.status == JobStatus::kCompleted) {
    return failed_precondition("tuning job '{}' already completed: nothing to resume (see `kennel tune describe {}`)",
                               name, name);
  }
  auto spec = resolve_study_spec(state->spec);
  if (!spec.ok()) return spec.status().with_context(fmt::format("the spec of study {}", name));
  auto worker = StudyWorker::create(*spec, worker_options(options, owns_study(options)));
  if (!worker.ok()) return worker.status();
  KENNEL_RETURN_IF_ERROR(write_study_files(options.home, *spec));
  KENNEL_RETURN_IF_ERROR((*store)->reopen_job(name));
  {
    // Its tuner is gone: trials it left running get up to two minutes to end
    // (they got SIGTERM and checkpoint); those that completed meanwhile keep
    // their result, the others run again.
    for (auto trial : state->trials) {
      if (trial.finished()) continue;
      if (spec->command.empty()) {
        for (int waited = 0; waited < 1200; ++waited) {
          auto row = (*store)->get_job(trial.name);
          if (!row.ok() || row->status != JobStatus::kInProgress) break;
          if (waited == 600 && row->pid > 0) ::kill(static_cast<pid_t>(row->pid), SIGTERM);
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        auto row = (*store)->get_job(trial.name);
        if (row.ok() && row->status == JobStatus::kCompleted) {
          const auto values = read_epoch_values(store::HomeLayout(options.home).job(trial.name).metrics(),
                                                spec->objective.metric);
          trial.intermediate = values.values;
          trial.epochs_run = static_cast<int64_t>(values.values.size());
          trial.objective = objective_of(trial.intermediate, spec->objective);
          trial.state = trial.objective ? store::kTrialCompleted : store::kTrialFailed;
          trial.reason = trial.objective ? "" : fmt::format("the objective '{}' was never reported (metrics.jsonl has: {})",
                                                            spec->objective.metric, join_names(values.metrics_seen));
          trial.ended_at = row->ended_at;
          trial.token.clear();
          KENNEL_RETURN_IF_ERROR((*store)->put_trial(name, trial));
          (*worker)->say(fmt::format("trial {} finished while the tuner was down: {}", trial.name, trial.state));
          continue;
        }
      }
      trial.state = store::kTrialPending;
      trial.reason = "interrupted with the tuning job";
      trial.token.clear();
      trial.lease_expires_at = 0;
      KENNEL_RETURN_IF_ERROR((*store)->put_trial(name, trial));
    }
  }
  return work(**store, **worker, options, *spec);
}

Result<TuningResult> run_tuning_worker(const std::string& study, const TuneOptions& options) {
  auto store = open_store(options);
  if (!store.ok()) return store.status();
  std::optional<TuningResult> last;
  std::set<std::string> done;
  while (true) {
    std::string next = study;
    if (next.empty()) {
      store::JobFilter filter;
      filter.kind = "tuning";
      filter.status = JobStatus::kInProgress;
      auto studies = (*store)->list_jobs(filter);
      if (!studies.ok()) return studies.status();
      // Oldest first (the list is newest first).
      for (auto it = studies->rbegin(); it != studies->rend(); ++it) {
        if (!done.count(it->name)) {
          next = it->name;
          break;
        }
      }
      if (next.empty()) break;
    }
    done.insert(next);
    auto state = load_study(**store, next);
    if (!state.ok()) return state.status();
    if (state->record.status != JobStatus::kInProgress) {
      if (!study.empty()) {
        return failed_precondition("tuning job '{}' is {}: a worker only joins a study in progress", next,
                                   store::job_status_name(state->record.status));
      }
      continue;
    }
    auto spec = resolve_study_spec(state->spec);
    if (!spec.ok()) return spec.status().with_context(fmt::format("the spec of study {}", next));
    auto worker = StudyWorker::create(*spec, worker_options(options, /*owner=*/false));
    if (!worker.ok()) return worker.status();
    KENNEL_RETURN_IF_ERROR(write_study_files(options.home, *spec));
    (*worker)->say(fmt::format("worker {}:{} joins study {} (store {})", store::this_host(), ::getpid(), next,
                               (*store)->describe()));
    auto result = work(**store, **worker, options, *spec);
    if (!result.ok()) return result.status();
    last = *result;
    if (!study.empty() || result->stop_signal) break;
  }
  if (!last) {
    return not_found("no tuning job is in progress in the store {}: create one with `kennel tune --store ... --no-run`",
                     (*store)->describe());
  }
  return *last;
}

}  // namespace kennel::tune

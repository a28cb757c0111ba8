// A training job, as a table of contents: prepare (check everything; writes
// nothing) -> create the job (registry row, directory, spec.json) -> inputs
// (model + batch sources) -> hooks -> the trainer's loop -> export (test
// evaluation, model) -> the registry's last word. Each step lives in its own
// file of job/.
#include "kennel/job/training_job.h"

#include <chrono>
#include <condition_variable>
#include <thread>

#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>
#include <torch/optim/optimizer.h>

#include "kennel/job/export.h"
#include "kennel/job/hooks.h"
#include "kennel/job/inputs.h"
#include "kennel/job/prepare.h"
#include "kennel/train/checkpoint.h"
#include "kennel/train/metrics_logger.h"
#include "kennel/train/schedule.h"
#include "kennel/util/fs.h"
#include "kennel/util/parallel.h"
#include "kennel/util/stop_signal.h"

namespace kennel::job {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// SIGINT/SIGTERM ask the running job to checkpoint and stop.
class StopOnSignal : public train::TrainerCallback {
 public:
  void on_step_end(train::Trainer& trainer, const train::StepResult&) override {
    if (const int signal_number = StopSignalScope::received(); signal_number != 0) {
      trainer.request_stop("stopped by " + StopSignalScope::name(signal_number));
    }
  }
};

// Beats the registry every few seconds from its own thread (feature extraction
// and long steps must not look like a dead job).
class HeartbeatThread {
 public:
  HeartbeatThread(store::StoreLocation location, std::string name)
      : location_(std::move(location)), name_(std::move(name)) {
    thread_ = std::thread([this] { run(); });
  }
  ~HeartbeatThread() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  HeartbeatThread(const HeartbeatThread&) = delete;
  HeartbeatThread& operator=(const HeartbeatThread&) = delete;

 private:
  void run() {
    auto registry = store::open_store(location_);  // its own connection: one per thread
    if (!registry.ok()) return;
    std::unique_lock lock(mutex_);
    while (!wake_.wait_for(lock, std::chrono::seconds(5), [&] { return stopping_; })) {
      (void)(*registry)->heartbeat(name_);
    }
  }
  store::StoreLocation location_;
  std::string name_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

json final_metrics_from(const train::TrainOutcome& outcome, const std::optional<train::EvalMetrics>& test) {
  json metrics = json::object();
  if (!outcome.epochs.empty()) {
    const auto& last = outcome.epochs.back();
    metrics["epoch"] = last.epoch;
    metrics["step"] = last.step;
    metrics["train_loss"] = last.train_loss;
    metrics["train_accuracy"] = last.train_accuracy;
    if (last.valid) {
      metrics["valid_loss"] = last.valid->loss;
      metrics["valid_accuracy"] = last.valid->accuracy;
      metrics["valid_top5_accuracy"] = last.valid->top5_accuracy;
    }
  }
  if (test) {
    metrics["test_loss"] = test->loss;
    metrics["test_accuracy"] = test->accuracy;
    metrics["test_top5_accuracy"] = test->top5_accuracy;
  }
  return metrics;
}

train::TrainerOptions trainer_options_of(const PreparedJob& prepared, const JobInputs& inputs) {
  const TrainSpec& spec = prepared.spec;
  const int64_t steps_per_epoch = inputs.train->batches_per_epoch();
  train::TrainerOptions options;
  options.epochs = spec.epochs;
  options.max_steps = spec.max_steps;
  options.num_classes = static_cast<int64_t>(prepared.index.classes.size());
  options.label_smoothing = spec.label_smoothing;
  options.device = prepared.device;
  options.precision = spec.precision;
  options.channels_last = inputs.channels_last;
  options.schedule = {.kind = spec.lr_schedule,
                      .base_lr = spec.lr,
                      .steps_per_epoch = steps_per_epoch,
                      .total_steps = steps_per_epoch * spec.epochs,
                      .step_epochs = spec.lr_step_epochs,
                      .gamma = spec.lr_gamma,
                      .warmup_steps = spec.warmup_epochs * static_cast<double>(steps_per_epoch)};
  return options;
}

void restore_checkpoint(train::Trainer& trainer, const fs::path& checkpoints) {
  auto state = train::load_latest_checkpoint(checkpoints, trainer.model().module(), trainer.optimizer());
  if (state.ok()) {
    trainer.state() = *state;
    spdlog::info("resuming from epoch {} batch {} (step {})", state->epoch, state->batch, state->step);
  } else if (state.status().code() != ErrorCode::kNotFound) {
    throw Error(state.status());
  } else {
    spdlog::info("no checkpoint yet: starting from the beginning");
  }
}

// ---- the run itself, once the job exists ------------------------------------
struct RunContext {
  const PreparedJob& prepared;
  store::HomeLayout home;
  store::JobPaths paths;
  store::JobRegistry& registry;
  bool quiet;
  bool resume;
};

void record_artifacts(const RunContext& run, const json& artifacts) {
  if (!artifacts.empty()) (void)run.registry.set_artifacts(run.prepared.spec.name, artifacts.dump());
}

TrainJobResult run_job(const RunContext& run) {
  const PreparedJob& prepared = run.prepared;
  const TrainSpec& spec = prepared.spec;
  const int threads = spec.threads > 0 ? static_cast<int>(spec.threads) : default_thread_count();
  at::set_num_threads(threads);

  JobInputs inputs;  // built below, once the profiler watches
  profile::ProfilerHook::LoaderProbe loader_probe;
  if (!uses_feature_cache(spec)) {
    loader_probe = [&inputs] {
      profile::LoaderSample sample;
      sample.time = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
      if (auto stats = inputs.train_loader_stats()) {
        sample.queue_depth = stats->ready_batches;
        sample.decode_seconds = stats->decode_seconds;
      }
      return sample;
    };
  }
  JobHooks hooks(prepared, run.paths, threads, std::move(loader_probe));
  auto logger = train::MetricsLogger::create({.metrics_path = run.paths.metrics(),
                                              .log_path = run.paths.log(),
                                              .events_dir = run.paths.events(),
                                              .log_every_steps = 10,
                                              .print = !run.quiet})
                    .value();
  for (const auto& notice : prepared.notices) spdlog::info("{}", notice);
  for (const auto& warning : prepared.index.warnings) spdlog::warn("{}", warning);

  inputs = build_job_inputs(prepared, {.home = run.home, .threads = threads, .quiet = run.quiet});
  auto optimizer = train::make_optimizer(inputs.model->trainable_parameters(),
                                         {.kind = spec.optimizer, .lr = spec.lr, .momentum = spec.momentum,
                                          .weight_decay = spec.weight_decay});
  train::TrainerOptions trainer_options = trainer_options_of(prepared, inputs);
  trainer_options.synchronize_phases = hooks.profiling();
  train::Trainer trainer(*inputs.model, *optimizer, *inputs.train, inputs.valid.get(), trainer_options);
  if (run.resume) restore_checkpoint(trainer, run.paths.checkpoints());
  trainer.add_callback(logger);
  trainer.add_callback(std::make_shared<StopOnSignal>());
  trainer.add_callback(std::make_shared<train::Checkpointer>(run.paths.checkpoints()));
  hooks.attach(trainer);

  train::TrainOutcome outcome;
  try {
    outcome = trainer.fit();
  } catch (...) {
    // A job that fails still gets its debugger verdicts and its profile.
    record_artifacts(run, hooks.finish());
    throw;
  }
  hooks.end_loop();
  TrainJobResult result;
  result.name = spec.name;
  result.job_dir = run.paths.dir;
  if (!outcome.completed) {
    result.status = store::JobStatus::kStopped;
    result.reason = outcome.stop_reason;
    result.final_metrics = final_metrics_from(outcome, std::nullopt);
    record_artifacts(run, hooks.finish());
    return result;
  }

  const std::optional<train::EvalMetrics> test = evaluate_test_split(trainer, inputs);
  if (test) write_test_evaluation(*test, trainer.state().step, prepared, run.paths, *logger);
  export_model(prepared, run.paths);
  json artifacts = {{"job_dir", run.paths.dir.string()},
                    {"metrics", run.paths.metrics().string()},
                    {"log", run.paths.log().string()},
                    {"events", run.paths.events().string()},
                    {"checkpoints", run.paths.checkpoints().string()},
                    {"model", run.paths.model().string()}};
  if (test) artifacts["evaluation"] = run.paths.evaluation().string();
  artifacts.update(hooks.finish());
  result.status = store::JobStatus::kCompleted;
  result.final_metrics = final_metrics_from(outcome, test);
  record_artifacts(run, artifacts);
  return result;
}

// Creates the job's registry row, directory and spec.json (or re-opens a resumed job's row).
Status create_job(const PreparedJob& prepared, const TrainJobOptions& options, store::JobRegistry& registry) {
  const TrainSpec& spec = prepared.spec;
  const store::JobPaths paths = store::HomeLayout(options.home).job(spec.name);
  std::error_code error;
  if (fs::exists(paths.dir, error)) {
    return Status(ErrorCode::kAlreadyExists,
                  fmt::format("job directory '{}' already exists: choose another --name, or continue that "
                              "job with `kennel train --resume {}`",
                              paths.dir.string(), spec.name));
  }
  store::JobRecord record;
  record.name = spec.name;
  record.parent = options.parent;
  record.spec_json = to_json(spec).dump();
  record.job_dir = paths.dir.string();
  KENNEL_RETURN_IF_ERROR(registry.create_job(record));
  Status created = kennel::create_directories(paths.dir);
  if (created.ok()) created = write_file_atomic(paths.spec(), to_json(spec).dump(2) + "\n");
  if (!created.ok()) (void)registry.set_status(spec.name, store::JobStatus::kFailed, created.message());
  return created;
}

// Where the job registers: --store, else the home's own registry.
store::StoreLocation registry_location(const TrainJobOptions& options) {
  if (options.store.kind != store::StoreLocation::Kind::kEmbedded) return options.store;
  return store::parse_store_location("", options.home).value();
}

// The registry, creating the home when needed.
Result<std::unique_ptr<store::JobRegistry>> open_registry(const TrainJobOptions& options) {
  const store::HomeLayout home(options.home);
  Status created = kennel::create_directories(home.jobs());
  if (!created.ok()) {
    return Status(ErrorCode::kPermissionDenied,
                  fmt::format("the Kennel home '{}' is not writable ({}): pass --home DIR or set KENNEL_HOME",
                              home.home().string(), created.message()));
  }
  auto opened = store::open_store(registry_location(options));
  if (!opened.ok()) return opened.status();
  return std::unique_ptr<store::JobRegistry>(std::move(*opened));
}

Result<TrainJobResult> execute(const PreparedJob& prepared, const TrainJobOptions& options,
                               store::JobRegistry& registry, bool resume) {
  const TrainSpec& spec = prepared.spec;
  const store::HomeLayout home(options.home);
  KENNEL_RETURN_IF_ERROR(resume ? registry.reopen_job(spec.name) : create_job(prepared, options, registry));

  StopSignalScope signals;
  HeartbeatThread heartbeat(registry_location(options), spec.name);
  const RunContext run{.prepared = prepared,
                       .home = home,
                       .paths = home.job(spec.name),
                       .registry = registry,
                       .quiet = options.quiet,
                       .resume = resume};
  TrainJobResult result;
  result.name = spec.name;
  result.job_dir = run.paths.dir;
  try {
    result = run_job(run);
  } catch (const Error& error) {
    result.status = store::JobStatus::kFailed;
    result.reason = error.status().message();
  } catch (const c10::Error& error) {
    result.status = store::JobStatus::kFailed;
    result.reason = fmt::format("LibTorch error: {}", error.what_without_backtrace());
  } catch (const std::exception& error) {
    result.status = store::JobStatus::kFailed;
    result.reason = error.what();
  }
  (void)registry.set_final_metrics(spec.name, result.final_metrics.dump());
  KENNEL_RETURN_IF_ERROR(registry.set_status(spec.name, result.status, result.reason));
  return result;
}

// A resume's spec: the job's saved spec.json, after the registry says it may be resumed.
Result<TrainSpec> resumable_spec(const std::string& name, const store::HomeLayout& home,
                                 store::JobRegistry& registry) {
  auto job = registry.get_job(name);
  if (!job.ok()) return job.status();
  if (job->status == store::JobStatus::kInProgress) {
    return failed_precondition("job '{}' is still running (pid {} on {}): stop it first with `kennel jobs stop {}`",
                               name, job->pid, job->host, name);
  }
  if (job->status == store::JobStatus::kCompleted) {
    return failed_precondition("job '{}' already completed: nothing to resume", name);
  }
  auto spec_json = read_spec_file(home.job(name).spec());
  if (!spec_json.ok()) return spec_json.status();
  TrainSpec spec;
  KENNEL_RETURN_IF_ERROR(apply_spec_json(spec, *spec_json, "spec.json of job " + name));
  return spec;
}

}  // namespace

Result<TrainJobResult> run_training_job(const TrainSpec& spec, const TrainJobOptions& options) {
  auto prepared = prepare_training_job(spec);
  if (!prepared.ok()) return prepared.status();
  auto registry = open_registry(options);
  if (!registry.ok()) return registry.status();
  if (auto job = (*registry)->get_job(prepared->spec.name); job.ok()) {
    return Status(ErrorCode::kAlreadyExists,
                  fmt::format("a job named '{}' already exists ({}): choose another --name, or continue it with "
                              "`kennel train --resume {}`",
                              prepared->spec.name, store::job_status_name(job->status), prepared->spec.name));
  }
  return execute(*prepared, options, **registry, /*resume=*/false);
}

Result<TrainJobResult> resume_training_job(const std::string& name, const TrainJobOptions& options) {
  const store::HomeLayout home(options.home);
  auto registry = open_registry(options);
  if (!registry.ok()) return registry.status();
  auto spec = resumable_spec(name, home, **registry);
  if (!spec.ok()) return spec.status();
  auto prepared = prepare_training_job(*spec);
  if (!prepared.ok()) return prepared.status();
  TrainJobOptions resumed = options;
  if (auto job = (*registry)->get_job(name); job.ok()) resumed.parent = job->parent;
  return execute(*prepared, resumed, **registry, /*resume=*/true);
}

}  // namespace kennel::job

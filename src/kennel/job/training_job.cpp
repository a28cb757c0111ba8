// A training job, as a table of contents: prepare (check everything; writes
// nothing) -> create the job (registry row, directory, spec.json) -> inputs
// (model + batch sources) -> hooks -> the trainer's loop -> export (test
// evaluation, model) -> the registry's last word. Each step lives in its own
// file of job/.
#include "kennel/job/training_job.h"

#include <chrono>

#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>
#include <torch/optim/optimizer.h>

#include "kennel/debug/tensor_store.h"
#include "kennel/dist/rank_environment.h"
#include "kennel/dist/sync_batchnorm.h"
#include "kennel/job/distributed.h"
#include "kennel/job/export.h"
#include "kennel/job/heartbeat.h"
#include "kennel/job/hooks.h"
#include "kennel/job/inputs.h"
#include "kennel/job/prepare.h"
#include "kennel/job/s3_output.h"
#include "kennel/models/batch_norm.h"
#include "kennel/train/checkpoint.h"
#include "kennel/train/metrics_logger.h"
#include "kennel/train/schedule.h"
#include "kennel/util/blas_kernels.h"
#include "kennel/util/cpu_features.h"
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
                      .warmup_steps = spec.warmup_epochs * static_cast<double>(steps_per_epoch),
                      .min_lr = spec.lr_min};
  return options;
}

// Restores the newest checkpoint; in a data-parallel job rank 0 reads it and every rank restores its bytes.
void restore_checkpoint(train::Trainer& trainer, const fs::path& checkpoints, JobGroup* group,
                        int previous_world_size) {
  Result<train::CheckpointBytes> checkpoint = not_found("no checkpoint");
  if (group == nullptr || group->leader()) checkpoint = train::read_latest_checkpoint(checkpoints);
  if (group != nullptr) {
    const json sent = group->leader() ? json{{"name", checkpoint.ok() ? checkpoint->name : ""},
                                             {"error", checkpoint.ok() ? "" : checkpoint.status().message()},
                                             {"code", static_cast<int>(checkpoint.status().code())}}
                                      : json();
    const json received = json::parse(group->from_leader(sent.dump()));
    std::string bytes = group->from_leader(checkpoint.ok() ? checkpoint->bytes : std::string());
    if (received.value("code", 0) == 0) {
      checkpoint = train::CheckpointBytes{received.value("name", std::string()), std::move(bytes)};
    } else {
      checkpoint = Status(static_cast<ErrorCode>(received.value("code", 0)), received.value("error", std::string()));
    }
  }
  if (!checkpoint.ok()) {
    if (checkpoint.status().code() != ErrorCode::kNotFound) throw Error(checkpoint.status());
    spdlog::info("no checkpoint yet: starting from the beginning");
    return;
  }
  auto state = train::restore_checkpoint(*checkpoint, trainer.model().module(), trainer.optimizer());
  if (!state.ok()) throw Error(state.status());
  trainer.state() = *state;
  const int world_size = group != nullptr ? group->world_size() : 1;
  if (previous_world_size != world_size && state->batch > 0) {
    // A batch index means other samples with another world size: redo the interrupted epoch whole.
    spdlog::warn("the checkpoint was taken mid-epoch with {} process(es): epoch {} restarts from its beginning",
                 previous_world_size, state->epoch);
    trainer.state().batch = 0;
  }
  spdlog::info("resuming from epoch {} batch {} (step {})", trainer.state().epoch, trainer.state().batch,
               trainer.state().step);
}

// A resume continues from the newest checkpoint; what a killed run recorded after it (steps,
// epochs, evaluations, debugger tensors, TensorBoard events) is recorded again by this run.
// So the histories go back to the checkpoint first, and each step and epoch appears once.
void discard_superseded_records(const store::JobPaths& paths, const train::MetricsLoggerOptions& metrics) {
  auto step = train::latest_checkpoint_step(paths.checkpoints());
  if (!step.ok() && step.status().code() != ErrorCode::kNotFound) throw Error(step.status());
  const int64_t steps_done = step.ok() ? *step : 0;  // no checkpoint: the job starts again from step 0
  if (Status status = train::discard_records_after(metrics, steps_done); !status.ok()) throw Error(status);
  if (Status status = debug::discard_records_after(paths.debug(), steps_done); !status.ok()) throw Error(status);
  spdlog::info("resuming: records after step {} (written by the interrupted run) were discarded", steps_done);
}

// Compute threads of this process: the spec's, else a rank's share of the host.
int compute_threads(const TrainSpec& spec, const JobGroup* group) {
  if (spec.threads > 0) return static_cast<int>(spec.threads);
  if (group == nullptr) return default_thread_count();
  const dist::RankEnvironment& rank = group->environment();
  if (rank.cpus_per_task > 0) return rank.cpus_per_task;
  // torchrun sets OMP_NUM_THREADS=1 for its workers unless the user chose a value.
  if (const char* omp = std::getenv("OMP_NUM_THREADS"); omp != nullptr && std::atoi(omp) > 0) return std::atoi(omp);
  return std::max(1, default_thread_count() / std::max(1, rank.local_world_size));
}

// ---- the run itself, once the job exists ------------------------------------
struct RunContext {
  const PreparedJob& prepared;
  store::HomeLayout home;
  store::JobPaths paths;
  store::JobRegistry* registry;  // rank 0's (or the only process's); null on other ranks
  JobGroup* group;               // null for one process
  bool quiet;
  bool resume;
  int previous_world_size;  // of the run a resume continues
  bool gradient_overlap;
  const S3JobOutput* output;  // --output s3://...; null without one
};

void record_artifacts(const RunContext& run, const json& artifacts) {
  if (run.registry != nullptr && !artifacts.empty()) {
    (void)run.registry->set_artifacts(run.prepared.spec.name, artifacts.dump());
  }
}

TrainJobResult run_job(const RunContext& run) {
  const PreparedJob& prepared = run.prepared;
  const TrainSpec& spec = prepared.spec;
  const bool leader = run.group == nullptr || run.group->leader();
  const int threads = compute_threads(spec, run.group);
  at::set_num_threads(threads);
  if (run.group != nullptr) {
    spdlog::info("{}: {} compute threads; effective batch size {} ({} per rank x {} ranks)",
                 run.group->environment().describe(), threads, spec.batch_size * run.group->world_size(),
                 spec.batch_size, run.group->world_size());
  }

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
  // Rank 0 alone watches and records the job.
  std::optional<JobHooks> hooks;
  std::shared_ptr<train::MetricsLogger> logger;
  if (leader) {
    const train::MetricsLoggerOptions metrics_options{.metrics_path = run.paths.metrics(),
                                                      .log_path = run.paths.log(),
                                                      .events_dir = run.paths.events(),
                                                      .log_every_steps = 10,
                                                      .print = !run.quiet};
    if (run.resume) discard_superseded_records(run.paths, metrics_options);
    hooks.emplace(prepared, run.paths, threads, std::move(loader_probe));
    logger = train::MetricsLogger::create(metrics_options).value();
    spdlog::info("precision {}: {}", spec.precision, spec.precision_reason);
    for (const auto& notice : prepared.notices) spdlog::info("{}", notice);
    for (const auto& warning : prepared.index.warnings) spdlog::warn("{}", warning);
  }

  inputs = build_job_inputs(prepared, {.home = run.home, .threads = threads, .quiet = run.quiet || !leader,
                                       .group = run.group});
  if (spec.batchnorm == "sync" && run.group != nullptr) {
    models::Classifier classifier = prepared.classifier;
    const int layers = models::set_batchnorm_sync(*classifier, dist::make_batchnorm_sync(run.group->group()));
    spdlog::info("SyncBatchNorm: {} BatchNorm layers take their statistics over all {} ranks", layers,
                 run.group->world_size());
  }
  auto optimizer = train::make_optimizer(inputs.model->trainable_parameters(),
                                         {.kind = spec.optimizer, .lr = spec.lr, .momentum = spec.momentum,
                                          .weight_decay = spec.weight_decay});
  train::TrainerOptions trainer_options = trainer_options_of(prepared, inputs);
  trainer_options.synchronize_phases = hooks && hooks->profiling();
  if (run.group != nullptr) {
    trainer_options.replicas = &run.group->data_parallel({.overlap = run.gradient_overlap});
  }
  train::Trainer trainer(*inputs.model, *optimizer, *inputs.train, inputs.valid.get(), trainer_options);
  if (run.resume) restore_checkpoint(trainer, run.paths.checkpoints(), run.group, run.previous_world_size);
  trainer.add_callback(std::make_shared<StopOnSignal>());
  if (leader) {
    trainer.add_callback(logger);
    trainer.add_callback(std::make_shared<train::Checkpointer>(run.paths.checkpoints()));
    if (run.output != nullptr) trainer.add_callback(run.output->checkpoint_uploader(run.paths));
    hooks->attach(trainer);
  }

  train::TrainOutcome outcome;
  try {
    outcome = trainer.fit();
  } catch (...) {
    // A job that fails still gets its debugger verdicts and its profile.
    if (hooks) record_artifacts(run, hooks->finish());
    throw;
  }
  if (hooks) hooks->end_loop();
  TrainJobResult result;
  result.name = spec.name;
  result.job_dir = run.paths.dir;
  if (!outcome.completed) {
    result.status = store::JobStatus::kStopped;
    result.reason = outcome.stop_reason;
    result.final_metrics = final_metrics_from(outcome, std::nullopt);
    if (hooks) record_artifacts(run, hooks->finish());
    return result;
  }

  const std::optional<train::EvalMetrics> test = evaluate_test_split(trainer, inputs, prepared);
  result.status = store::JobStatus::kCompleted;
  result.final_metrics = final_metrics_from(outcome, test);
  if (!leader) return result;
  if (test) write_test_evaluation(*test, trainer.state().step, prepared, run.paths, *logger);
  export_model(prepared, run.paths);
  json artifacts = {{"job_dir", run.paths.dir.string()},
                    {"metrics", run.paths.metrics().string()},
                    {"log", run.paths.log().string()},
                    {"events", run.paths.events().string()},
                    {"checkpoints", run.paths.checkpoints().string()},
                    {"model", run.paths.model().string()}};
  if (test) artifacts["evaluation"] = run.paths.evaluation().string();
  artifacts.update(hooks->finish());
  record_artifacts(run, artifacts);
  return result;
}

// spec.json: the resolved spec, how its precision was chosen, and for a data-parallel job how it ran.
json spec_record(const TrainSpec& spec, const JobGroup* group) {
  json record = to_json(spec);
  record[kPrecisionRecordKey] = {{"requested", spec.precision_auto ? "auto" : spec.precision},
                                 {"reason", spec.precision_reason},
                                 {"cpu", host_cpu_features().describe()},
                                 {"blas", describe_blas_kernels()}};
  if (group != nullptr) {
    const dist::RankEnvironment& rank = group->environment();
    record[kDistributedRecordKey] = {{"world_size", rank.world_size},
                                     {"effective_batch_size", spec.batch_size * rank.world_size},
                                     {"launcher", rank.launcher},
                                     {"backend", "gloo"}};
  }
  return record;
}

// Creates the job's registry row, directory and spec.json (or re-opens a resumed job's row).
Status create_job(const PreparedJob& prepared, const TrainJobOptions& options, store::JobRegistry& registry,
                  const JobGroup* group) {
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
  record.spec_json = spec_record(spec, group).dump();
  record.job_dir = paths.dir.string();
  KENNEL_RETURN_IF_ERROR(registry.create_job(record));
  Status created = kennel::create_directories(paths.dir);
  if (created.ok()) created = write_file_atomic(paths.spec(), spec_record(spec, group).dump(2) + "\n");
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

// Creates (or re-opens) the job, runs it and records the outcome. `registry`
// is null on ranks other than 0; with a group, every rank learns whether
// rank 0 could create the job before any of them runs it.
Result<TrainJobResult> execute(const PreparedJob& prepared, const TrainJobOptions& options,
                               store::JobRegistry* registry, JobGroup* group, bool resume,
                               int previous_world_size) {
  const TrainSpec& spec = prepared.spec;
  const store::HomeLayout home(options.home);
  Status created;
  if (registry != nullptr) {
    created = resume ? registry->reopen_job(spec.name) : create_job(prepared, options, *registry, group);
  }
  if (group != nullptr) created = group->agree("create the job", created);
  if (!created.ok()) return created;

  std::shared_ptr<S3JobOutput> output;
  if (!options.output.empty() && registry != nullptr) {
    auto opened = S3JobOutput::open(options.output, spec.name);
    Status stored = opened.ok() ? (*opened)->upload_spec(home.job(spec.name)) : opened.status();
    if (!stored.ok()) {
      (void)registry->set_status(spec.name, store::JobStatus::kFailed, stored.message());
      return stored;
    }
    output = std::move(*opened);
    spdlog::info("outputs also go to {}", output->job_uri());
  }

  StopSignalScope signals;
  std::optional<HeartbeatThread> heartbeat;
  if (registry != nullptr) heartbeat.emplace(registry_location(options), spec.name);
  const RunContext run{.prepared = prepared,
                       .home = home,
                       .paths = home.job(spec.name),
                       .registry = registry,
                       .group = group,
                       .quiet = options.quiet || (group != nullptr && !group->leader()),
                       .resume = resume,
                       .previous_world_size = previous_world_size,
                       .gradient_overlap = options.gradient_overlap,
                       .output = output.get()};
  TrainJobResult result;
  result.name = spec.name;
  result.job_dir = run.paths.dir;
  result.reports = group == nullptr || group->leader();
  try {
    result = run_job(run);
    result.reports = group == nullptr || group->leader();
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
  if (output) {
    Status uploaded = output->upload_final(run.paths);
    if (!uploaded.ok() && result.status == store::JobStatus::kCompleted) {
      result.status = store::JobStatus::kFailed;
      result.reason = fmt::format("the job completed, but its outputs did not reach {}: {}", output->job_uri(),
                                  uploaded.message());
    } else if (!uploaded.ok()) {
      spdlog::warn("the job's records did not reach {}: {}", output->job_uri(), uploaded.message());
    } else {
      spdlog::info("outputs committed to {}", output->job_uri());
    }
  }
  if (registry != nullptr) {
    (void)registry->set_final_metrics(spec.name, result.final_metrics.dump());
    KENNEL_RETURN_IF_ERROR(registry->set_status(spec.name, result.status, result.reason));
  }
  return result;
}

// A job this home has never seen, rebuilt from its --output in S3: its spec,
// a registry row (Stopped) and directory, and the last committed checkpoint.
Status restore_from_output(const std::string& name, const TrainJobOptions& options, store::JobRegistry& registry) {
  auto output = S3JobOutput::open(options.output, name);
  if (!output.ok()) return output.status();
  auto spec_text = (*output)->read_spec();
  if (!spec_text.ok()) return spec_text.status();
  json spec_json;
  try {
    spec_json = json::parse(*spec_text);
  } catch (const std::exception& error) {
    return Status(ErrorCode::kDataLoss,
                  fmt::format("{}spec.json is not JSON: {}", (*output)->job_uri(), error.what()));
  }
  TrainSpec spec;
  KENNEL_RETURN_IF_ERROR(apply_spec_json(spec, spec_json, (*output)->job_uri() + "spec.json"));
  if (spec.name != name) {
    return failed_precondition("{}spec.json is the spec of job '{}', not '{}'", (*output)->job_uri(), spec.name, name);
  }
  spdlog::info("job '{}' is not in this home: restoring it from {}", name, (*output)->job_uri());
  auto prepared = prepare_training_job(spec, options.home, options.quiet);
  if (!prepared.ok()) return prepared.status();
  KENNEL_RETURN_IF_ERROR(create_job(*prepared, options, registry, nullptr));
  const store::HomeLayout home(options.home);
  // The stored record, not a re-serialisation: it may say how a data-parallel run went.
  KENNEL_RETURN_IF_ERROR(write_file_atomic(home.job(name).spec(), spec_json.dump(2) + "\n"));
  Status restored = (*output)->restore_checkpoints(home.job(name), home.s3_cache());
  if (!restored.ok()) {
    if (restored.code() != ErrorCode::kNotFound) return restored;
    spdlog::info("no committed checkpoint in {}: the job starts from the beginning", (*output)->job_uri());
  }
  return registry.set_status(name, store::JobStatus::kStopped, "restored from " + (*output)->job_uri());
}

// The world size a job's spec.json says it ran with (1 when it ran alone).
int recorded_world_size(const json& spec_json) {
  if (!spec_json.contains(kDistributedRecordKey)) return 1;
  return spec_json[kDistributedRecordKey].value("world_size", 1);
}

// A resume's spec: the job's saved spec.json, after the registry says it may be resumed.
Result<TrainSpec> resumable_spec(const std::string& name, const store::HomeLayout& home, store::JobRegistry& registry,
                                 int world_size, int& previous_world_size) {
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
  previous_world_size = recorded_world_size(*spec_json);
  // The job's precision was resolved on the host that created it; this host may lack its bf16 units.
  const json choice = spec_json->value(kPrecisionRecordKey, json::object());
  const bool was_auto = choice.is_object() && choice.value("requested", std::string()) == "auto";
  const PrecisionCheck check = check_stored_precision(spec.precision, was_auto, host_cpu_features());
  if (!check.warning.empty()) spdlog::warn("job '{}': {}", name, check.warning);
  spec.precision = check.precision;
  spec.precision_auto = was_auto;
  spec.precision_reason = check.warning.empty() ? choice.value("reason", spec.precision + " as recorded") : check.warning;
  if (previous_world_size != world_size) {
    spdlog::warn("job '{}' ran with {} process(es) and resumes with {}: the effective batch size changes from {} to {}",
                 name, previous_world_size, world_size, spec.batch_size * previous_world_size,
                 spec.batch_size * world_size);
  }
  return spec;
}

Result<TrainJobResult> run_as_rank(const dist::RankEnvironment& rank, const TrainSpec* requested,
                                   const std::string& resume_name, const TrainJobOptions& options) {
  auto joined = JobGroup::join(rank, options);
  if (!joined.ok()) return joined.status();
  JobGroup& group = **joined;
  if (!group.leader()) {
    // Rank 0 tells the job's story; the others speak up for warnings and errors (or at debug level).
    spdlog::default_logger()->set_pattern(fmt::format("[rank {}] %^%l%$: %v", group.rank()));
    if (spdlog::get_level() == spdlog::level::info) spdlog::set_level(spdlog::level::warn);
  }
  const store::HomeLayout home(options.home);
  bool resume = requested == nullptr;
  std::string name = resume_name;

  // 1. Rank 0 says which spec runs: the requested one resolved, or the saved one on --resume.
  std::unique_ptr<store::JobRegistry> registry;
  Result<TrainSpec> spec = Status(ErrorCode::kInternal, "no spec");
  int previous_world_size = rank.world_size;
  if (group.leader()) {
    auto opened = open_registry(options);
    if (!opened.ok()) {
      spec = opened.status();
    } else {
      registry = std::move(*opened);
      // torchrun restarts a failed group with the same command: it continues the job from its checkpoint.
      if (!resume && rank.restart_count > 0 && !requested->name.empty()) {
        if (auto earlier = registry->get_job(requested->name);
            earlier.ok() && (earlier->status == store::JobStatus::kFailed || earlier->status == store::JobStatus::kStopped)) {
          spdlog::info("torchrun restart {}: continuing job '{}' from its last checkpoint", rank.restart_count,
                       requested->name);
          resume = true;
          name = requested->name;
        }
      }
      // A resume in a home that has never seen the job (another machine, managed spot training):
      // rank 0 restores it from --output; its checkpoint then reaches every rank through rank 0.
      Status restored;
      if (resume && !options.output.empty() && registry->get_job(name).status().code() == ErrorCode::kNotFound) {
        restored = restore_from_output(name, options, *registry);
      }
      if (!restored.ok()) {
        spec = restored;
      } else {
        spec = resume ? resumable_spec(name, home, *registry, rank.world_size, previous_world_size)
                      : resolve_train_spec(*requested);
      }
      if (spec.ok() && !resume) {
        if (auto existing = registry->get_job(spec->name); existing.ok()) {
          spec = Status(ErrorCode::kAlreadyExists,
                        fmt::format("a job named '{}' already exists ({}): choose another --name, or continue it "
                                    "with `kennel train --resume {}`",
                                    spec->name, store::job_status_name(existing->status), spec->name));
        }
      }
    }
  }
  const json sent = group.leader() ? json{{"code", static_cast<int>(spec.status().code())},
                                          {"error", spec.status().message()},
                                          {"spec", spec.ok() ? to_json(*spec) : json()},
                                          {"previous_world_size", previous_world_size},
                                          {"resume", resume}}
                                   : json();
  const json received = json::parse(group.from_leader(sent.dump()));
  if (received.value("code", 0) != 0) {
    if (group.leader()) return spec.status();
    return Status(static_cast<ErrorCode>(received.value("code", 0)),
                  fmt::format("rank 0 cannot start the job: {}", received.value("error", std::string())));
  }
  // 2. Every rank checks that it was started with that spec, then prepares it.
  Status mine;
  TrainSpec leaders;
  if (!group.leader()) {
    KENNEL_RETURN_IF_ERROR(apply_spec_json(leaders, received["spec"], "rank 0's spec"));
    previous_world_size = received.value("previous_world_size", rank.world_size);
    resume = received.value("resume", resume);
    if (!resume) {
      auto own = resolve_train_spec(*requested);
      if (!own.ok()) {
        mine = own.status();
      } else {
        json own_json = comparable_spec(*own), leader_json = comparable_spec(leaders);
        if (requested->name.empty()) own_json.erase("name"), leader_json.erase("name");
        if (const std::string diff = first_difference(own_json, leader_json); !diff.empty()) {
          mine = failed_precondition("rank {} was started with another spec than rank 0 ({}): start every rank "
                                     "with the same command",
                                     rank.rank, diff);
        }
        leaders.data = own->data;  // the dataset may live under another path on this host
        leaders.threads = own->threads;
      }
    }
  } else {
    leaders = *spec;
  }
  auto prepared = mine.ok() ? prepare_training_job(leaders, options.home, options.quiet) : Result<PreparedJob>(mine);
  if (prepared.ok()) {
    const std::string fingerprint = dataset_fingerprint(prepared->index, prepared->data_root.string());
    const std::string leader_fingerprint = group.from_leader(fingerprint);
    if (fingerprint != leader_fingerprint) {
      mine = failed_precondition("rank {} sees another dataset than rank 0 under '{}' (files, classes or sizes "
                                 "differ): every rank must train on the same images",
                                 rank.rank, prepared->spec.data);
    }
  } else {
    (void)group.from_leader("");  // keep the broadcasts matched: the fingerprint round
    mine = prepared.status();
  }
  KENNEL_RETURN_IF_ERROR(group.agree("prepare", mine));
  if (!group.leader()) {
    prepared->debugger.reset();  // rank 0 alone watches the job
    prepared->profiler.reset();
  }
  // 3. Rank 0 creates the job; everyone runs it.
  TrainJobOptions rank_options = options;
  if (resume && group.leader()) {
    auto job = registry->get_job(name);
    if (job.ok()) rank_options.parent = job->parent;
  }
  return execute(*prepared, rank_options, registry.get(), &group, resume, previous_world_size);
}

}  // namespace

Result<TrainJobResult> run_training_job(const TrainSpec& spec, const TrainJobOptions& options) {
  auto rank = dist::detect_rank_environment(dist::process_environment());
  if (!rank.ok()) return rank.status();
  if (rank->has_value()) return run_as_rank(**rank, &spec, "", options);
  auto prepared = prepare_training_job(spec, options.home, options.quiet);
  if (!prepared.ok()) return prepared.status();
  auto registry = open_registry(options);
  if (!registry.ok()) return registry.status();
  if (auto job = (*registry)->get_job(prepared->spec.name); job.ok()) {
    return Status(ErrorCode::kAlreadyExists,
                  fmt::format("a job named '{}' already exists ({}): choose another --name, or continue it with "
                              "`kennel train --resume {}`",
                              prepared->spec.name, store::job_status_name(job->status), prepared->spec.name));
  }
  return execute(*prepared, options, registry->get(), nullptr, /*resume=*/false, 1);
}

Result<TrainJobResult> resume_training_job(const std::string& name, const TrainJobOptions& options) {
  auto rank = dist::detect_rank_environment(dist::process_environment());
  if (!rank.ok()) return rank.status();
  if (rank->has_value()) return run_as_rank(**rank, nullptr, name, options);
  const store::HomeLayout home(options.home);
  auto registry = open_registry(options);
  if (!registry.ok()) return registry.status();
  if (!options.output.empty() && (*registry)->get_job(name).status().code() == ErrorCode::kNotFound) {
    KENNEL_RETURN_IF_ERROR(restore_from_output(name, options, **registry));
  }
  int previous_world_size = 1;
  auto spec = resumable_spec(name, home, **registry, 1, previous_world_size);
  if (!spec.ok()) return spec.status();
  auto prepared = prepare_training_job(*spec, options.home, options.quiet);
  if (!prepared.ok()) return prepared.status();
  TrainJobOptions resumed = options;
  if (auto job = (*registry)->get_job(name); job.ok()) resumed.parent = job->parent;
  return execute(*prepared, resumed, registry->get(), nullptr, /*resume=*/true, previous_world_size);
}

}  // namespace kennel::job

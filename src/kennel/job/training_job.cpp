#include "kennel/job/training_job.h"

#include <csignal>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <thread>

#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>
#include <torch/cuda.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/utils.h>

#include "kennel/data/image_folder.h"
#include "kennel/data/loader.h"
#include "kennel/debug/debugger.h"
#include "kennel/profile/profiler.h"
#include "kennel/models/classifier.h"
#include "kennel/models/model_dir.h"
#include "kennel/models/weight_file.h"
#include "kennel/train/batch_sources.h"
#include "kennel/train/checkpoint.h"
#include "kennel/train/evaluation_report.h"
#include "kennel/train/feature_cache.h"
#include "kennel/train/metrics_logger.h"
#include "kennel/train/schedule.h"
#include "kennel/train/trainer.h"
#include "kennel/util/fs.h"
#include "kennel/util/parallel.h"
#include "kennel/util/stop_signal.h"
#include "kennel/util/version.h"

namespace kennel::job {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// ---- signals: SIGINT/SIGTERM ask the running job to checkpoint and stop ----
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
  HeartbeatThread(fs::path db, std::string name) : db_(std::move(db)), name_(std::move(name)) {
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
    auto registry = store::JobRegistry::open(db_);
    if (!registry.ok()) return;
    std::unique_lock lock(mutex_);
    while (!wake_.wait_for(lock, std::chrono::seconds(5), [&] { return stopping_; })) {
      (void)(*registry)->heartbeat(name_);
    }
  }
  fs::path db_;
  std::string name_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

// ---- the trainable models: a whole classifier, or only its head ----------
class ClassifierModel : public train::TrainableModel {
 public:
  explicit ClassifierModel(models::Classifier classifier) : classifier_(std::move(classifier)) {}
  at::Tensor forward(const at::Tensor& inputs) override { return classifier_->forward(inputs); }
  void set_training(bool training) override { classifier_->set_training(training); }
  std::vector<at::Tensor> trainable_parameters() override { return classifier_->trainable_parameters(); }
  torch::nn::Module& module() override { return *classifier_; }

 private:
  models::Classifier classifier_;
};

class HeadModel : public train::TrainableModel {
 public:
  explicit HeadModel(models::Classifier classifier) : classifier_(std::move(classifier)) {}
  at::Tensor forward(const at::Tensor& features) override { return classifier_->head_forward(features); }
  void set_training(bool training) override { classifier_->set_training(training); }
  std::vector<at::Tensor> trainable_parameters() override { return classifier_->head_parameters(); }
  torch::nn::Module& module() override { return *classifier_; }

 private:
  models::Classifier classifier_;
};

// ---- everything checked before a job exists --------------------------------
struct Prepared {
  TrainSpec spec;
  data::DatasetIndex index;
  models::Classifier classifier{nullptr};
  std::string weights_id;           // content hash of the pretrained file, or random-init:<seed>
  std::vector<std::string> notices;  // what loading the weights dropped or changed
  c10::Device device{c10::kCPU};
  std::optional<debug::DebuggerSpec> debugger;  // --debugger default|SPEC
  std::optional<profile::ProfilerSpec> profiler;  // --profiler default|SPEC
  double started_at = 0;                          // Unix seconds: the job's initialisation starts here
  Normalization normalization;                    // `normalize`, with auto resolved
  std::string normalize_id;                       // ... as text, for the feature-cache key
  bool keras_compat = false;                      // the pretrained backbone came from Keras
};

c10::Device resolve_device(const std::string& device) {
  if (device == "cpu") return c10::Device(c10::kCPU);
  if (device == "auto") return torch::cuda::is_available() ? c10::Device(c10::kCUDA) : c10::Device(c10::kCPU);
  if (!torch::cuda::is_available()) {
    throw Error(failed_precondition("device '{}' was asked for, but this LibTorch build sees no CUDA GPU: "
                                    "use --device cpu or auto",
                                    device));
  }
  return c10::Device(device);
}

Result<Prepared> prepare(const TrainSpec& requested, const fs::path& home) {
  auto resolved = resolve_train_spec(requested);
  if (!resolved.ok()) return resolved.status();
  Prepared prepared;
  prepared.started_at =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  prepared.spec = std::move(resolved).value();
  const TrainSpec& spec = prepared.spec;
  if (spec.debugger == "default") {
    prepared.debugger = debug::default_debugger_spec();
  } else if (spec.debugger != "off") {
    auto object = read_spec_file(spec.debugger);
    if (!object.ok()) return object.status().with_context("spec key 'debugger'");
    auto debugger = debug::parse_debugger_spec(*object, spec.debugger);
    if (!debugger.ok()) return debugger.status();
    prepared.debugger = std::move(*debugger);
  }
  if (spec.profiler == "default") {
    prepared.profiler = profile::ProfilerSpec{};
  } else if (spec.profiler != "off") {
    auto object = read_spec_file(spec.profiler);
    if (!object.ok()) return object.status().with_context("spec key 'profiler'");
    auto profiler = profile::parse_profiler_spec(*object, spec.profiler);
    if (!profiler.ok()) return profiler.status();
    prepared.profiler = std::move(*profiler);
  }

  Status home_status = kennel::create_directories(home / "jobs");
  if (!home_status.ok()) {
    return Status(ErrorCode::kPermissionDenied,
                  fmt::format("the Kennel home '{}' is not writable ({}): pass --home DIR or set KENNEL_HOME",
                              home.string(), home_status.message()));
  }
  data::ScanOptions scan;
  scan.valid_fraction = spec.valid_ratio;
  scan.seed = spec.seed;
  auto index = data::scan_image_folder(spec.data, scan);
  if (!index.ok()) return index.status().with_context("spec key 'data'");
  prepared.index = std::move(index).value();
  const auto& classes = prepared.index.classes;
  if (classes.size() < 2) {
    return failed_precondition("dataset '{}' has {} class ('{}'): a classifier needs at least two class folders",
                               spec.data, classes.size(), classes.empty() ? "" : classes.front());
  }
  const data::Split* train = prepared.index.find_split("train");
  if (train == nullptr || train->samples.empty()) {
    return failed_precondition("dataset '{}' has no training images", spec.data);
  }
  if (spec.batch_size > static_cast<int64_t>(train->samples.size())) {
    return invalid_argument("spec key 'batch_size' ({}) is larger than the {} training images of '{}': "
                            "lower it",
                            spec.batch_size, train->samples.size(), spec.data);
  }
  try {
    prepared.device = resolve_device(spec.device);
  } catch (const Error& error) {
    return error.status();
  }

  std::string pretrained = spec.pretrained;
  if (pretrained.empty()) pretrained = models::default_pretrained_weights(spec.arch);
  // An imported backbone says how it was built (Keras padding) and fed (its preprocessing).
  std::optional<models::ModelInfo> backbone;
  if (!pretrained.empty() && pretrained != "none") backbone = models::pretrained_info(pretrained);
  if (backbone && backbone->arch != spec.arch) {
    return invalid_argument("spec key 'pretrained': '{}' holds a {} backbone, but arch is {}", pretrained,
                            backbone->arch, spec.arch);
  }
  if (spec.normalize == "auto" && backbone) {
    prepared.normalization = {backbone->mean, backbone->std};
    prepared.normalize_id = fmt::format("{},{},{}/{},{},{}", backbone->mean[0], backbone->mean[1], backbone->mean[2],
                                        backbone->std[0], backbone->std[1], backbone->std[2]);
  } else {
    const std::string normalize = spec.normalize == "auto" ? "imagenet" : spec.normalize;
    prepared.normalization = parse_normalization(normalize).value();  // validated by resolve_train_spec
    prepared.normalize_id = normalize;
  }

  models::ModelSpec model_spec;
  model_spec.arch = spec.arch;
  model_spec.head_hidden = spec.head;
  model_spec.dropout = spec.dropout;
  model_spec.num_classes = static_cast<int64_t>(classes.size());
  model_spec.freeze = spec.freeze;
  model_spec.keras_compat = backbone && backbone->keras_compat;
  torch::manual_seed(spec.seed);
  auto classifier = models::build_classifier(model_spec);
  if (!classifier.ok()) return classifier.status();
  prepared.classifier = std::move(classifier).value();
  prepared.keras_compat = model_spec.keras_compat;

  if (pretrained.empty() || pretrained == "none") {
    prepared.weights_id = fmt::format("random-init:{}", spec.seed);
    if (spec.freeze == "backbone" && spec.pretrained.empty()) {
      prepared.notices.push_back(fmt::format(
          "no pretrained weights for {} (pass --pretrained FILE.pth|.safetensors): the frozen backbone is "
          "randomly initialised",
          spec.arch));
    }
  } else {
    auto state = models::read_weight_file(pretrained);
    if (!state.ok()) return state.status().with_context("spec key 'pretrained'");
    models::LoadOptions load_options;
    load_options.drop_mismatched_head = true;
    auto report = models::apply_state_dict(prepared.classifier, *state, load_options);
    if (!report.ok()) {
      return report.status().with_context(fmt::format("loading '{}' into {}", pretrained, spec.arch));
    }
    prepared.notices = report->notices;
    auto hash = train::file_content_hash(pretrained);
    if (!hash.ok()) return hash.status();
    prepared.weights_id = *hash;
  }
  return prepared;
}

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

train::ConfusionMatrix to_matrix(const at::Tensor& confusion) {
  const at::Tensor cpu = confusion.to(at::kCPU).contiguous();
  const int64_t n = cpu.size(0);
  train::ConfusionMatrix matrix(static_cast<size_t>(n), std::vector<int64_t>(static_cast<size_t>(n)));
  const auto* data = cpu.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) matrix[static_cast<size_t>(i)][static_cast<size_t>(j)] = data[i * n + j];
  }
  return matrix;
}

// ---- the run itself, once the job exists ------------------------------------
struct RunContext {
  Prepared& prepared;
  fs::path home;
  fs::path job_dir;
  store::JobRegistry& registry;
  bool quiet;
  bool resume;
};

TrainJobResult run_job(RunContext& run) {
  const TrainSpec& spec = run.prepared.spec;
  const auto& index = run.prepared.index;
  const int64_t num_classes = static_cast<int64_t>(index.classes.size());
  const int threads = spec.threads > 0 ? static_cast<int>(spec.threads) : default_thread_count();
  at::set_num_threads(threads);
  const bool use_feature_cache = spec.feature_cache && spec.freeze == "backbone" && !spec.augment;
  std::vector<std::unique_ptr<data::ImageLoader>> loaders;  // [0] feeds training when images are loaded

  // The profiler starts first so that its monitor sees initialisation (weights, feature cache) too.
  std::unique_ptr<profile::ProfilerSession> profiler;
  if (run.prepared.profiler) {
    profile::ProfiledJob job{spec.name, run.prepared.device.str(),
                             static_cast<int64_t>(std::max(1u, std::thread::hardware_concurrency())), threads, threads,
                             run.prepared.started_at};
    profile::ProfilerHook::LoaderProbe probe;
    if (!use_feature_cache) {
      probe = [&loaders] {
        profile::LoaderSample sample;
        sample.time = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
        if (!loaders.empty()) {
          const data::LoaderStats stats = loaders.front()->stats();
          sample.queue_depth = stats.ready_batches;
          sample.decode_seconds = stats.decode_seconds;
        }
        return sample;
      };
    }
    auto session = profile::ProfilerSession::start(*run.prepared.profiler, run.job_dir / "profile", job, probe);
    if (!session.ok()) throw Error(session.status());
    profiler = std::move(*session);
  }

  auto logger = train::MetricsLogger::create({.metrics_path = run.job_dir / "metrics.jsonl",
                                              .log_path = run.job_dir / "log.txt",
                                              .events_dir = run.job_dir / "events",
                                              .log_every_steps = 10,
                                              .print = !run.quiet})
                    .value();
  for (const auto& notice : run.prepared.notices) spdlog::info("{}", notice);
  for (const auto& warning : index.warnings) spdlog::warn("{}", warning);

  models::Classifier classifier = run.prepared.classifier;
  classifier->to(run.prepared.device);
  const bool channels_last = !run.prepared.device.is_cuda() || spec.precision != "fp32";
  if (channels_last) classifier->to(at::MemoryFormat::ChannelsLast);

  const Normalization& normalization = run.prepared.normalization;
  data::TransformSpec eval_transform;
  eval_transform.resize = static_cast<int>(spec.resize);
  eval_transform.crop = static_cast<int>(spec.input_size);
  eval_transform.mean = normalization.mean;
  eval_transform.std = normalization.std;
  data::TransformSpec train_transform = eval_transform;
  train_transform.augment = spec.augment;

  auto make_loader = [&](const data::Split& split, const data::TransformSpec& transform, bool shuffle) {
    data::LoaderOptions options;
    options.batch_size = spec.batch_size;
    options.shuffle = shuffle;
    options.seed = spec.seed;
    options.threads = threads;
    options.layout = channels_last ? data::PixelLayout::kHwc : data::PixelLayout::kChw;
    return std::make_unique<data::ImageLoader>(split.samples, data::ImagePipeline(transform), options);
  };
  const data::Split* train_split = index.find_split("train");
  const data::Split* valid_split = index.find_split("valid");
  const data::Split* test_split = index.find_split("test");

  std::unique_ptr<train::TrainableModel> model;
  std::unique_ptr<train::BatchSource> train_source, valid_source, test_source;
  if (use_feature_cache) {
    // Features are computed once per (arch, weights, dataset content, transform) and shared by jobs.
    train::FeatureCache cache(run.home / "cache" / "features");
    // "imagenet" keeps the id caches written before `normalize` existed had.
    const std::string transform_id = fmt::format("resize={} crop={} mean/std={} layout=rgb", spec.resize,
                                                 spec.input_size, run.prepared.normalize_id);
    auto features_for = [&](const data::Split& split) {
      const std::string dataset_id = train::dataset_content_hash(split.samples, spec.data);
      const std::string key = train::feature_cache_key(spec.arch, run.prepared.weights_id, dataset_id, transform_id);
      if (auto cached = cache.load(key, split.name)) {
        spdlog::info("features of {} ({} images): reused from the feature cache ({})", split.name,
                     cached->labels.size(0), key);
        return *cached;
      }
      // Parallel trials of a tuning job want the same entry: one computes, the others wait and reuse it.
      (void)kennel::create_directories(run.home / "cache" / "features");
      const FileLock lock(run.home / "cache" / "features" / fmt::format("{}-{}.lock", key, split.name));
      if (auto cached = cache.load(key, split.name)) {
        spdlog::info("features of {} ({} images): computed by a concurrent job, reused ({})", split.name,
                     cached->labels.size(0), key);
        return *cached;
      }
      auto loader = make_loader(split, eval_transform, false);
      classifier->set_training(false);
      auto set = train::compute_features(
          *loader,
          [&](const at::Tensor& images) {
            at::Tensor input = images.to(run.prepared.device);
            return classifier->features(input);
          },
          fmt::format("computing {} features", split.name), run.quiet);
      for (const auto& skipped : loader->skipped_files()) {
        spdlog::warn("skipped '{}': {}", skipped.path, skipped.reason);
      }
      Status stored = cache.store(key, split.name, set);
      if (!stored.ok()) spdlog::warn("could not store features in the cache: {}", stored.message());
      return set;
    };
    auto to_source = [&](const train::FeatureSet& set, bool shuffle) {
      return std::make_unique<train::TensorBatchSource>(
          set.features, set.labels,
          train::TensorBatchOptions{.batch_size = spec.batch_size, .shuffle = shuffle, .seed = spec.seed});
    };
    train_source = to_source(features_for(*train_split), true);
    if (valid_split && !valid_split->samples.empty()) valid_source = to_source(features_for(*valid_split), false);
    if (test_split && !test_split->samples.empty()) test_source = to_source(features_for(*test_split), false);
    model = std::make_unique<HeadModel>(classifier);
  } else {
    loaders.push_back(make_loader(*train_split, train_transform, true));
    train_source = std::make_unique<train::ImageBatchSource>(*loaders.back());
    if (valid_split && !valid_split->samples.empty()) {
      loaders.push_back(make_loader(*valid_split, eval_transform, false));
      valid_source = std::make_unique<train::ImageBatchSource>(*loaders.back());
    }
    if (test_split && !test_split->samples.empty()) {
      loaders.push_back(make_loader(*test_split, eval_transform, false));
      test_source = std::make_unique<train::ImageBatchSource>(*loaders.back());
    }
    model = std::make_unique<ClassifierModel>(classifier);
  }

  const int64_t steps_per_epoch = train_source->batches_per_epoch();
  train::TrainerOptions trainer_options;
  trainer_options.epochs = spec.epochs;
  trainer_options.max_steps = spec.max_steps;
  trainer_options.num_classes = num_classes;
  trainer_options.label_smoothing = spec.label_smoothing;
  trainer_options.device = run.prepared.device;
  trainer_options.precision = spec.precision;
  trainer_options.channels_last = channels_last && !use_feature_cache;
  trainer_options.schedule = {.kind = spec.lr_schedule,
                              .base_lr = spec.lr,
                              .steps_per_epoch = steps_per_epoch,
                              .total_steps = steps_per_epoch * spec.epochs,
                              .step_epochs = spec.lr_step_epochs,
                              .gamma = spec.lr_gamma,
                              .warmup_steps = spec.warmup_epochs * static_cast<double>(steps_per_epoch)};

  auto optimizer = train::make_optimizer(model->trainable_parameters(),
                                         {.kind = spec.optimizer, .lr = spec.lr, .momentum = spec.momentum,
                                          .weight_decay = spec.weight_decay});
  trainer_options.synchronize_phases = profiler != nullptr;
  train::Trainer trainer(*model, *optimizer, *train_source, valid_source.get(), trainer_options);
  const fs::path checkpoint_dir = run.job_dir / "checkpoints";
  if (run.resume) {
    auto state = train::load_latest_checkpoint(checkpoint_dir, model->module(), *optimizer);
    if (state.ok()) {
      trainer.state() = *state;
      spdlog::info("resuming from epoch {} batch {} (step {})", state->epoch, state->batch, state->step);
    } else if (state.status().code() != ErrorCode::kNotFound) {
      throw Error(state.status());
    } else {
      spdlog::info("no checkpoint yet: starting from the beginning");
    }
  }
  trainer.add_callback(logger);
  trainer.add_callback(std::make_shared<StopOnSignal>());
  trainer.add_callback(std::make_shared<train::Checkpointer>(checkpoint_dir));
  // The debugger: hook on the trainer, rules on their own thread; a rule's stop_training ends this job only.
  std::unique_ptr<debug::DebuggerSession> debugger;
  if (run.prepared.debugger) {
    auto session = debug::DebuggerSession::start(*run.prepared.debugger, run.job_dir / "debug",
                                                 [&trainer](const std::string& reason) { trainer.request_stop(reason); });
    if (!session.ok()) throw Error(session.status());
    debugger = std::move(*session);
    trainer.add_callback(debugger->hook());
  }
  if (profiler) trainer.add_callback(profiler->hook());

  // Rules get the last word (and the registry their statuses) whether the run completes, stops or fails.
  auto finish_debugger = [&]() -> json {
    if (!debugger) return nullptr;
    const json rules = debugger->finish();
    json summary = json::object();
    for (const auto& rule : rules) summary[rule.value("rule", std::string())] = rule.value("status", std::string());
    return {{"dir", (run.job_dir / "debug").string()}, {"rules", summary}};
  };
  auto finish_profiler = [&]() -> json {
    if (!profiler) return nullptr;
    auto artifact = profiler->finish();
    if (artifact.ok()) return *artifact;
    spdlog::warn("profiler: could not write its report: {}", artifact.status().message());
    return nullptr;
  };
  // A job that fails or stops still gets its debugger verdicts and its profile.
  auto record_unfinished = [&](const json& debug_artifact) {
    json artifacts = json::object();
    if (!debug_artifact.is_null()) artifacts["debug"] = debug_artifact;
    if (profiler) profiler->mark_loop_end();
    if (json profile_artifact = finish_profiler(); !profile_artifact.is_null()) artifacts["profile"] = profile_artifact;
    if (!artifacts.empty()) (void)run.registry.set_artifacts(spec.name, artifacts.dump());
  };
  train::TrainOutcome outcome;
  try {
    outcome = trainer.fit();
  } catch (...) {
    record_unfinished(finish_debugger());
    throw;
  }
  if (profiler) profiler->mark_loop_end();
  const json debug_artifact = finish_debugger();
  TrainJobResult result;
  result.name = spec.name;
  result.job_dir = run.job_dir;
  if (!outcome.completed) {
    result.status = store::JobStatus::kStopped;
    result.reason = outcome.stop_reason;
    result.final_metrics = final_metrics_from(outcome, std::nullopt);
    record_unfinished(debug_artifact);
    return result;
  }

  std::optional<train::EvalMetrics> test;
  json artifacts = {{"job_dir", run.job_dir.string()},
                    {"metrics", (run.job_dir / "metrics.jsonl").string()},
                    {"log", (run.job_dir / "log.txt").string()},
                    {"events", (run.job_dir / "events").string()},
                    {"checkpoints", checkpoint_dir.string()}};
  if (!debug_artifact.is_null()) artifacts["debug"] = debug_artifact;
  if (test_source) {
    test = trainer.evaluate(*test_source);
    logger->log_evaluation("test", trainer.state().step, *test);
    auto report = train::make_classification_report(to_matrix(test->confusion), index.classes);
    report.loss = test->loss;
    report.top5_accuracy = test->top5_accuracy;
    const fs::path evaluation_dir = run.job_dir / "evaluation";
    Status written = train::write_classification_report(evaluation_dir, "test_", report);
    if (!written.ok()) throw Error(written);
    artifacts["evaluation"] = evaluation_dir.string();
  }

  models::ModelInfo info;
  info.arch = spec.arch;
  info.head_hidden = spec.head;
  info.dropout = spec.dropout;
  info.classes = index.classes;
  info.input_size = spec.input_size;
  info.resize = spec.resize;
  info.mean = normalization.mean;
  info.std = normalization.std;
  info.source_job = spec.name;
  info.pretrained = spec.pretrained;
  info.keras_compat = run.prepared.keras_compat;
  classifier->to(at::kCPU);
  classifier->to(at::MemoryFormat::Contiguous);
  const fs::path model_dir = run.job_dir / "model";
  Status saved = models::save_model_dir(model_dir, classifier, info, spec.export_pth);
  if (!saved.ok()) throw Error(saved);
  artifacts["model"] = model_dir.string();
  if (json profile_artifact = finish_profiler(); !profile_artifact.is_null()) artifacts["profile"] = profile_artifact;

  result.status = store::JobStatus::kCompleted;
  result.final_metrics = final_metrics_from(outcome, test);
  (void)run.registry.set_artifacts(spec.name, artifacts.dump());
  return result;
}

Result<TrainJobResult> execute(Prepared& prepared, const TrainJobOptions& options, bool resume) {
  const TrainSpec& spec = prepared.spec;
  const fs::path job_dir = job_directory(options.home, spec.name);
  const fs::path db = options.home / "kennel.db";
  auto registry = store::JobRegistry::open(db);
  if (!registry.ok()) return registry.status();
  if (!resume) {
    std::error_code error;
    if (fs::exists(job_dir, error)) {
      return Status(ErrorCode::kAlreadyExists,
                    fmt::format("job directory '{}' already exists: choose another --name, or continue that "
                                "job with `kennel train --resume {}`",
                                job_dir.string(), spec.name));
    }
    store::JobRecord record;
    record.name = spec.name;
    record.parent = options.parent;
    record.spec_json = to_json(spec).dump();
    record.job_dir = job_dir.string();
    KENNEL_RETURN_IF_ERROR((*registry)->create_job(record));
    Status created = kennel::create_directories(job_dir);
    if (created.ok()) created = write_file_atomic(job_dir / "spec.json", to_json(spec).dump(2) + "\n");
    if (!created.ok()) {
      (void)(*registry)->set_status(spec.name, store::JobStatus::kFailed, created.message());
      return created;
    }
  } else {
    KENNEL_RETURN_IF_ERROR((*registry)->reopen_job(spec.name));
  }

  StopSignalScope signals;
  HeartbeatThread heartbeat(db, spec.name);
  RunContext run{prepared, options.home, job_dir, **registry, options.quiet, resume};
  TrainJobResult result;
  try {
    result = run_job(run);
  } catch (const Error& error) {
    result.name = spec.name;
    result.job_dir = job_dir;
    result.status = store::JobStatus::kFailed;
    result.reason = error.status().message();
  } catch (const c10::Error& error) {
    result.name = spec.name;
    result.job_dir = job_dir;
    result.status = store::JobStatus::kFailed;
    result.reason = fmt::format("LibTorch error: {}", error.what_without_backtrace());
  } catch (const std::exception& error) {
    result.name = spec.name;
    result.job_dir = job_dir;
    result.status = store::JobStatus::kFailed;
    result.reason = error.what();
  }
  (void)(*registry)->set_final_metrics(spec.name, result.final_metrics.dump());
  KENNEL_RETURN_IF_ERROR((*registry)->set_status(spec.name, result.status, result.reason));
  return result;
}

}  // namespace

fs::path job_directory(const fs::path& home, const std::string& name) { return home / "jobs" / name; }

Result<TrainJobResult> run_training_job(const TrainSpec& spec, const TrainJobOptions& options) {
  auto prepared = prepare(spec, options.home);
  if (!prepared.ok()) return prepared.status();
  auto existing = store::JobRegistry::open(options.home / "kennel.db");
  if (!existing.ok()) return existing.status();
  if (auto job = (*existing)->get_job(prepared->spec.name); job.ok()) {
    return Status(ErrorCode::kAlreadyExists,
                  fmt::format("a job named '{}' already exists ({}): choose another --name, or continue it with "
                              "`kennel train --resume {}`",
                              prepared->spec.name, store::job_status_name(job->status), prepared->spec.name));
  }
  return execute(*prepared, options, /*resume=*/false);
}

Result<TrainJobResult> resume_training_job(const std::string& name, const TrainJobOptions& options) {
  auto registry = store::JobRegistry::open(options.home / "kennel.db");
  if (!registry.ok()) return registry.status();
  auto job = (*registry)->get_job(name);
  if (!job.ok()) return job.status();
  if (job->status == store::JobStatus::kInProgress) {
    return failed_precondition("job '{}' is still running (pid {} on {}): stop it first with `kennel jobs stop {}`",
                               name, job->pid, job->host, name);
  }
  if (job->status == store::JobStatus::kCompleted) {
    return failed_precondition("job '{}' already completed: nothing to resume", name);
  }
  auto spec_json = read_spec_file(job_directory(options.home, name) / "spec.json");
  if (!spec_json.ok()) return spec_json.status();
  TrainSpec spec;
  KENNEL_RETURN_IF_ERROR(apply_spec_json(spec, *spec_json, "spec.json of job " + name));
  auto prepared = prepare(spec, options.home);
  if (!prepared.ok()) return prepared.status();
  TrainJobOptions resumed = options;
  resumed.parent = job->parent;
  return execute(*prepared, resumed, /*resume=*/true);
}

}  // namespace kennel::job

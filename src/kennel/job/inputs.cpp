#include "kennel/job/inputs.h"

#include <c10/core/InferenceMode.h>
#include <spdlog/spdlog.h>

#include "kennel/job/distributed.h"
#include "kennel/models/inference_graph.h"
#include "kennel/train/autocast.h"
#include "kennel/train/batch_sources.h"
#include "kennel/train/feature_cache.h"
#include "kennel/util/fs.h"

namespace kennel::job {

namespace fs = std::filesystem;

namespace {

// This process's share of a split: padded for training (every rank takes the same steps), whole samples for evaluation.
data::Shard shard_of(const InputOptions& options, bool training) {
  if (options.group == nullptr) return {};
  return {options.group->rank(), options.group->world_size(), training};
}

std::unique_ptr<data::ImageLoader> make_loader(const PreparedJob& prepared, const InputOptions& options,
                                               const data::Split& split, const data::TransformSpec& transform,
                                               bool shuffle, bool channels_last, data::Shard shard) {
  data::LoaderOptions loader_options;
  loader_options.shard = shard;
  loader_options.batch_size = prepared.spec.batch_size;
  loader_options.shuffle = shuffle;
  loader_options.seed = prepared.spec.seed;
  loader_options.threads = options.threads;
  loader_options.layout = channels_last ? data::PixelLayout::kHwc : data::PixelLayout::kChw;
  return std::make_unique<data::ImageLoader>(split.samples, data::ImagePipeline(transform), loader_options);
}

// The frozen backbone's output for `shard` of a split (the whole split by default).
train::FeatureSet backbone_features(const PreparedJob& prepared, const InputOptions& options, const data::Split& split,
                                    bool channels_last, data::Shard shard) {
  auto loader = make_loader(prepared, options, split, eval_transform_of(prepared), false, channels_last, shard);
  models::Classifier classifier = prepared.classifier;
  classifier->set_training(false);
  std::function<at::Tensor(const at::Tensor&)> extract = [&](const at::Tensor& images) {
    at::Tensor input = images.to(prepared.device);
    const train::AutocastScope autocast(prepared.spec.precision, prepared.device);
    return classifier->features(input).to(at::kFloat);
  };
  // On the CPU the frozen backbone runs as `kennel serve` runs a model: BatchNorm folded into the
  // convolutions and the weights converted once (autocast would cast them again for every batch).
  models::Classifier graph{nullptr};
  if (!prepared.device.is_cuda()) {
    const at::ScalarType dtype = models::inference_dtype(prepared.spec.precision);
    auto copy = models::inference_copy(classifier, {.fold_batchnorm = true, .dtype = dtype,
                                                    .channels_last = channels_last});
    if (!copy.ok()) throw Error(copy.status());
    graph = *copy;
    extract = [&graph, dtype, channels_last](const at::Tensor& images) {
      c10::InferenceMode inference;
      at::Tensor input = images.to(dtype);
      if (channels_last) input = input.contiguous(at::MemoryFormat::ChannelsLast);
      return graph->features(input).to(at::kFloat);
    };
  }
  auto set = train::compute_features(*loader, extract, fmt::format("computing {} features", split.name),
                                     options.quiet);
  for (const auto& skipped : loader->skipped_files()) spdlog::warn("skipped '{}': {}", skipped.path, skipped.reason);
  return set;
}

// Each rank computes its share of the split; all of them are gathered, so N ranks fill the cache N times faster.
// One process per host stores the entry (the home may be shared between its ranks).
train::FeatureSet sharded_features(const PreparedJob& prepared, const InputOptions& options, const data::Split& split,
                                   bool channels_last, const train::FeatureCache& cache,
                                   const train::FeatureCacheIdentity& identity) {
  JobGroup& group = *options.group;
  const data::Shard shard{group.rank(), group.world_size(), /*pad=*/false};
  train::FeatureSet whole = group.gather_features(backbone_features(prepared, options, split, channels_last, shard));
  spdlog::info("features of {} ({} images): computed by {} ranks, {} each", split.name, whole.labels.size(0),
               group.world_size(), shard.size(static_cast<int64_t>(split.samples.size())));
  if (group.environment().local_rank == 0) {
    Status stored = cache.store(identity, split.name, whole);
    if (!stored.ok()) spdlog::warn("could not store features in the cache: {}", stored.message());
  }
  return whole;
}

// Features are computed once per FeatureCacheIdentity (arch, weights, dataset content, transform,
// device, precision, layout, code versions) and shared by jobs.
train::FeatureSet features_of(const PreparedJob& prepared, const InputOptions& options, const data::Split& split,
                              bool channels_last) {
  const TrainSpec& spec = prepared.spec;
  const fs::path cache_dir = options.home.feature_cache();
  const train::FeatureCache cache(cache_dir);
  train::FeatureCacheIdentity identity;
  identity.arch = spec.arch;
  identity.weights_id = prepared.weights_id;
  identity.dataset_id = train::dataset_content_hash(split.samples, prepared.data_root, prepared.data_identities);
  identity.transform_id = fmt::format("resize={} crop={} mean/std={} layout=rgb", spec.resize, spec.input_size,
                                      prepared.normalize_id);
  identity.device = prepared.device.str();
  // The pass runs under the spec's precision: bf16 features differ from fp32 ones in the third digit.
  identity.precision = spec.precision;
  identity.layout = channels_last ? "channels_last" : "contiguous";
  const std::string key = train::feature_cache_key(identity);
  std::optional<train::FeatureSet> cached = cache.load(key, split.name);
  if (options.group != nullptr) {
    // The pass is collective: it is skipped only when every rank has the entry.
    at::Tensor missing = at::tensor({cached ? 0.0 : 1.0}, at::kDouble);
    options.group->group().all_reduce_sum(missing);
    if (missing.item<double>() == 0) {
      spdlog::info("features of {} ({} images): reused from the feature cache ({})", split.name,
                   cached->labels.size(0), key);
      return *cached;
    }
    return sharded_features(prepared, options, split, channels_last, cache, identity);
  }
  if (cached) {
    spdlog::info("features of {} ({} images): reused from the feature cache ({})", split.name,
                 cached->labels.size(0), key);
    return *cached;
  }
  // Parallel trials of a tuning job want the same entry: one computes, the others wait and reuse it.
  (void)kennel::create_directories(cache_dir);
  const FileLock lock(cache_dir / fmt::format("{}-{}.lock", key, split.name));
  if (auto cached = cache.load(key, split.name)) {
    spdlog::info("features of {} ({} images): computed by a concurrent job, reused ({})", split.name,
                 cached->labels.size(0), key);
    return *cached;
  }
  auto set = backbone_features(prepared, options, split, channels_last, {});
  spdlog::info("features of {} ({} images): computed, stored in the feature cache ({})", split.name,
               set.labels.size(0), key);
  Status stored = cache.store(identity, split.name, set);
  if (!stored.ok()) spdlog::warn("could not store features in the cache: {}", stored.message());
  return set;
}

}  // namespace

namespace {

// A classifier as the trainer sees it: the whole network, only its head (over
// cached backbone features), or the whole network kept in eval mode.
class ClassifierModel : public train::TrainableModel {
 public:
  ClassifierModel(models::Classifier classifier, TrainedPart part) : classifier_(std::move(classifier)), part_(part) {}
  at::Tensor forward(const at::Tensor& inputs) override {
    return part_ == TrainedPart::kHead ? classifier_->head_forward(inputs) : classifier_->forward(inputs);
  }
  void set_training(bool training) override { classifier_->set_training(training && part_ != TrainedPart::kNone); }
  std::vector<at::Tensor> trainable_parameters() override {
    if (part_ == TrainedPart::kNone) return {};
    return part_ == TrainedPart::kHead ? classifier_->head_parameters() : classifier_->trainable_parameters();
  }
  torch::nn::Module& module() override { return *classifier_; }

 private:
  models::Classifier classifier_;
  TrainedPart part_;
};

}  // namespace

std::unique_ptr<train::TrainableModel> trainable_model(models::Classifier classifier, TrainedPart part) {
  return std::make_unique<ClassifierModel>(std::move(classifier), part);
}

std::optional<data::LoaderStats> JobInputs::train_loader_stats() const {
  if (loaders.empty()) return std::nullopt;
  return loaders.front()->stats();
}

bool uses_feature_cache(const TrainSpec& spec) {
  return spec.feature_cache && spec.freeze == "backbone" && !spec.augment;
}

data::TransformSpec eval_transform_of(const PreparedJob& prepared) {
  data::TransformSpec transform;
  transform.resize = static_cast<int>(prepared.spec.resize);
  transform.crop = static_cast<int>(prepared.spec.input_size);
  transform.mean = prepared.normalization.mean;
  transform.std = prepared.normalization.std;
  return transform;
}

JobInputs build_job_inputs(const PreparedJob& prepared, const InputOptions& options) {
  const TrainSpec& spec = prepared.spec;
  JobInputs inputs;
  inputs.on_cached_features = uses_feature_cache(spec);
  models::Classifier classifier = prepared.classifier;
  classifier->to(prepared.device);
  const bool channels_last = !prepared.device.is_cuda() || spec.precision != "fp32";
  if (channels_last) classifier->to(at::MemoryFormat::ChannelsLast);
  inputs.channels_last = channels_last && !inputs.on_cached_features;

  const data::Split* train_split = prepared.index.find_split("train");
  const data::Split* valid_split = prepared.index.find_split("valid");
  const data::Split* test_split = prepared.index.find_split("test");
  auto has_images = [](const data::Split* split) { return split != nullptr && !split->samples.empty(); };

  if (inputs.on_cached_features) {
    auto to_source = [&](const train::FeatureSet& set, bool shuffle) {
      return std::make_unique<train::TensorBatchSource>(set.features, set.labels,
                                                        train::TensorBatchOptions{.batch_size = spec.batch_size,
                                                                                  .shuffle = shuffle,
                                                                                  .seed = spec.seed,
                                                                                  .shard = shard_of(options, shuffle)});
    };
    inputs.train = to_source(features_of(prepared, options, *train_split, channels_last), true);
    if (has_images(valid_split)) inputs.valid = to_source(features_of(prepared, options, *valid_split, channels_last), false);
    if (has_images(test_split)) inputs.test = to_source(features_of(prepared, options, *test_split, channels_last), false);
    inputs.model = trainable_model(classifier, TrainedPart::kHead);
    return inputs;
  }

  const data::TransformSpec eval_transform = eval_transform_of(prepared);
  data::TransformSpec train_transform = eval_transform;
  train_transform.augment = spec.augment;
  train_transform.random_crop.scale = {spec.augment_scale, 1.0};
  auto image_source = [&](const data::Split& split, const data::TransformSpec& transform, bool shuffle) {
    inputs.loaders.push_back(
        make_loader(prepared, options, split, transform, shuffle, channels_last, shard_of(options, shuffle)));
    return std::make_unique<train::ImageBatchSource>(*inputs.loaders.back());
  };
  inputs.train = image_source(*train_split, train_transform, true);
  if (has_images(valid_split)) inputs.valid = image_source(*valid_split, eval_transform, false);
  if (has_images(test_split)) inputs.test = image_source(*test_split, eval_transform, false);
  inputs.model = trainable_model(classifier, TrainedPart::kWhole);
  return inputs;
}

}  // namespace kennel::job

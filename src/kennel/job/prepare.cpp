#include "kennel/job/prepare.h"

#include <chrono>

#include <torch/cuda.h>
#include <torch/utils.h>

#include <spdlog/spdlog.h>

#include "kennel/data/s3_sync.h"
#include "kennel/models/model_dir.h"
#include "kennel/models/weight_file.h"
#include "kennel/train/feature_cache.h"
#include "kennel/util/fs.h"

namespace kennel::job {

namespace {

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

Status resolve_hook_specs(PreparedJob& prepared) {
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
  return Status::ok_status();
}

// The local folder of the dataset: spec.data itself, or an s3:// prefix synced into the home's cache.
Status locate_dataset(PreparedJob& prepared, const std::filesystem::path& home, bool quiet) {
  if (!s3::is_s3_uri(prepared.spec.data)) {
    prepared.data_root = prepared.spec.data;
    return Status::ok_status();
  }
  data::S3TransferOptions transfer;
  transfer.quiet = quiet;
  auto synced = data::sync_s3_folder(prepared.spec.data, store::HomeLayout(home).s3_cache(),
                                     data::SyncedKind::kDataset, transfer);
  if (!synced.ok()) return synced.status().with_context("spec key 'data'");
  spdlog::info("dataset {}: {} objects, {} downloaded ({} bytes), local copy in {}", prepared.spec.data,
               synced->identities.size(), synced->downloaded, synced->bytes_downloaded,
               path_text(synced->root));
  prepared.data_root = synced->root;
  prepared.data_identities = std::move(synced->identities);
  return Status::ok_status();
}

Status scan_dataset(PreparedJob& prepared) {
  const TrainSpec& spec = prepared.spec;
  data::ScanOptions scan;
  scan.valid_fraction = spec.valid_ratio;
  scan.seed = spec.seed;
  auto index = data::scan_image_folder(prepared.data_root.string(), scan);
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
  return Status::ok_status();
}

// Builds the classifier and loads the pretrained backbone (the arch's default when the spec names none).
Status build_model(PreparedJob& prepared) {
  const TrainSpec& spec = prepared.spec;
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
  model_spec.num_classes = static_cast<int64_t>(prepared.index.classes.size());
  model_spec.freeze = spec.freeze;
  model_spec.frozen_batchnorm = spec.batchnorm == "frozen";
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
    if (spec.batchnorm == "frozen") {
      prepared.notices.push_back(
          "--batchnorm frozen with randomly initialised weights: every BatchNorm keeps the running statistics "
          "it starts with (mean 0, variance 1), so nothing is normalised; frozen statistics are for fine-tuning "
          "pretrained weights (--pretrained FILE); use --batchnorm train to train from scratch");
    }
    return Status::ok_status();
  }
  auto state = models::read_weight_file(pretrained);
  if (!state.ok()) return state.status().with_context("spec key 'pretrained'");
  models::LoadOptions load_options;
  load_options.drop_mismatched_head = true;
  auto report = models::apply_state_dict(prepared.classifier, *state, load_options);
  if (!report.ok()) return report.status().with_context(fmt::format("loading '{}' into {}", pretrained, spec.arch));
  prepared.notices = report->notices;
  auto hash = train::file_content_hash(pretrained);
  if (!hash.ok()) return hash.status();
  prepared.weights_id = *hash;
  return Status::ok_status();
}

}  // namespace

Result<PreparedJob> prepare_training_job(const TrainSpec& requested, const std::filesystem::path& home,
                                         bool quiet) {
  auto resolved = resolve_train_spec(requested);
  if (!resolved.ok()) return resolved.status();
  PreparedJob prepared;
  prepared.started_at =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  prepared.spec = std::move(resolved).value();
  KENNEL_RETURN_IF_ERROR(resolve_hook_specs(prepared));
  KENNEL_RETURN_IF_ERROR(locate_dataset(prepared, home, quiet));
  KENNEL_RETURN_IF_ERROR(scan_dataset(prepared));
  try {
    prepared.device = resolve_device(prepared.spec.device);
  } catch (const Error& error) {
    return error.status();
  }
  KENNEL_RETURN_IF_ERROR(build_model(prepared));
  return prepared;
}

}  // namespace kennel::job

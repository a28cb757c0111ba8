#include "kennel/job/quantize_job.h"

#include <algorithm>
#include <ctime>
#include <random>
#include <set>
#include <unistd.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <fmt/chrono.h>
#include <spdlog/spdlog.h>

#include "kennel/data/image_folder.h"
#include "kennel/data/loader.h"
#include "kennel/data/transforms.h"
#include "kennel/models/inference_graph.h"
#include "kennel/models/model_dir.h"
#include "kennel/models/quantized_graph.h"
#include "kennel/train/batch_sources.h"
#include "kennel/util/cpu_features.h"
#include "kennel/util/fs.h"
#include "kennel/util/parallel.h"

namespace kennel::job {

namespace fs = std::filesystem;

namespace {

std::vector<data::ImageSample> sample_of(std::vector<data::ImageSample> samples, int64_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::shuffle(samples.begin(), samples.end(), rng);
  if (count > 0 && static_cast<int64_t>(samples.size()) > count) samples.resize(static_cast<size_t>(count));
  return samples;
}

// Runs `on_batch(images, labels)` over `samples`, decoded by the model's eval transform.
template <typename OnBatch>
void for_each_batch(const std::vector<data::ImageSample>& samples, const models::ModelInfo& info,
                    const QuantizeOptions& options, int threads, OnBatch on_batch) {
  data::LoaderOptions loader_options;
  loader_options.batch_size = options.batch_size;
  loader_options.threads = threads;
  loader_options.layout = data::PixelLayout::kHwc;
  data::ImageLoader loader(samples, data::ImagePipeline(models::eval_transform_of(info)), loader_options);
  train::ImageBatchSource source(loader);
  source.start_epoch(0, 0);
  while (auto batch = source.next()) on_batch(batch->inputs, batch->labels);
}

// Copies the model's files (not an older quantization.json) into a fresh `out`, then swaps it in.
Status write_quantized_dir(const fs::path& model_dir, const fs::path& out, const models::QuantizationRecord& record) {
  std::error_code error;
  if (fs::equivalent(model_dir, out, error)) return models::write_quantization_record(out, record);
  if (fs::exists(out, error) && !fs::is_empty(out, error) && !fs::exists(out / "model.json", error)) {
    return failed_precondition("--out '{}' exists and is not a model directory: choose another folder", out.string());
  }
  const fs::path staging = out.parent_path() / fmt::format(".{}.tmp-{}", out.filename().string(), getpid());
  fs::remove_all(staging, error);
  KENNEL_RETURN_IF_ERROR(kennel::create_directories(staging));
  Status status;
  for (const auto& entry : fs::directory_iterator(model_dir, error)) {
    if (!entry.is_regular_file() || entry.path().filename() == models::kQuantizationFile) continue;
    if (!fs::copy_file(entry.path(), staging / entry.path().filename(), error)) {
      status = internal_error("copying '{}' to '{}': {}", entry.path().string(), staging.string(), error.message());
      break;
    }
  }
  if (status.ok()) status = models::write_quantization_record(staging, record);
  if (status.ok()) {
    fs::remove_all(out, error);
    fs::rename(staging, out, error);
    if (error) status = internal_error("moving '{}' to '{}': {}", staging.string(), out.string(), error.message());
  }
  if (!status.ok()) fs::remove_all(staging, error);
  return status;
}

}  // namespace

Result<QuantizeResult> quantize_model(const std::string& model, const fs::path& home, const QuantizeOptions& options) {
  if (options.batch_size < 1) return invalid_argument("--batch-size must be >= 1, got {}", options.batch_size);
  if (options.calibration_images < 1) {
    return invalid_argument("--calibration-images must be >= 1, got {}", options.calibration_images);
  }
  if (options.check_images < 0) return invalid_argument("--check-images must be >= 0, got {}", options.check_images);
  auto model_dir = models::resolve_model_dir(model, home);
  if (!model_dir.ok()) return model_dir.status();
  auto loaded = models::load_model_dir(*model_dir);
  if (!loaded.ok()) return loaded.status();
  KENNEL_RETURN_IF_ERROR(models::check_quantizable(loaded->classifier->spec()));

  data::ScanOptions scan;
  scan.seed = options.seed;
  scan.known_classes = loaded->info.classes;
  auto index = data::scan_image_folder(options.calibration, scan);
  if (!index.ok()) return index.status();
  if (index->classes != loaded->info.classes) {
    return failed_precondition("the classes of '{}' ({}) differ from the model's ({}): calibrate on the dataset "
                               "the model was trained on",
                               options.calibration.string(), index->classes.size(), loaded->info.classes.size());
  }
  const data::Split* calibration_split = index->find_split(options.calibration_split);
  if (calibration_split == nullptr || calibration_split->samples.empty()) {
    return not_found("--calibration-split: dataset '{}' has no '{}' split with images", options.calibration.string(),
                     options.calibration_split);
  }
  std::string check_name = options.check_split;
  if (check_name.empty()) {
    const data::Split* valid = index->find_split("valid");
    check_name = valid != nullptr && !valid->samples.empty() ? "valid" : "test";
  }
  const data::Split* check_split = index->find_split(check_name);
  if (check_split == nullptr || check_split->samples.empty()) {
    return not_found("--check-split: dataset '{}' has no '{}' split with images to measure int8 against fp32 on",
                     options.calibration.string(), check_name);
  }
  std::vector<data::ImageSample> calibration_samples =
      sample_of(calibration_split->samples, options.calibration_images, options.seed);
  std::vector<data::ImageSample> check_samples = check_split->samples;
  if (check_name == options.calibration_split) {
    // The same split: measure on the images calibration did not see.
    std::set<std::string> seen;
    for (const auto& sample : calibration_samples) seen.insert(sample.path);
    std::erase_if(check_samples, [&](const data::ImageSample& sample) { return seen.count(sample.path) > 0; });
    if (check_samples.empty()) {
      return failed_precondition("--check-split '{}' has no image left that calibration did not use: lower "
                                 "--calibration-images or choose another split",
                                 check_name);
    }
  }
  check_samples = sample_of(std::move(check_samples), options.check_images, options.seed + 1);

  const int threads = options.threads > 0 ? options.threads : default_thread_count();
  at::set_num_threads(threads);
  const CpuFeatures& cpu = host_cpu_features();
  models::Classifier classifier = loaded->classifier;
  QuantizeResult result;
  models::QuantizationRecord& record = result.record;
  try {
    models::prepare_inference_graph(classifier, {.fold_batchnorm = true, .dtype = at::kFloat, .channels_last = true});
    auto graph = models::QuantizedGraph::build(classifier);
    if (!graph.ok()) return graph.status();
    for_each_batch(calibration_samples, loaded->info, options, threads,
                   [&](const at::Tensor& images, const at::Tensor&) { (*graph)->calibrate(images); });
    KENNEL_RETURN_IF_ERROR((*graph)->quantize((*graph)->calibration(), !cpu.native_int8()));

    int64_t agree = 0, right_int8 = 0, right_fp32 = 0, seen = 0;
    double max_difference = 0;
    for_each_batch(check_samples, loaded->info, options, threads, [&](const at::Tensor& images, const at::Tensor& labels) {
      c10::InferenceMode inference;
      const at::Tensor reference = classifier->forward(images.contiguous(at::MemoryFormat::ChannelsLast));
      const at::Tensor int8 = (*graph)->forward(images);
      const at::Tensor top_fp32 = reference.argmax(1), top_int8 = int8.argmax(1);
      agree += top_fp32.eq(top_int8).sum().item<int64_t>();
      right_fp32 += top_fp32.eq(labels).sum().item<int64_t>();
      right_int8 += top_int8.eq(labels).sum().item<int64_t>();
      max_difference = std::max(max_difference, (reference - int8).abs().max().item<double>());
      seen += labels.size(0);
    });
    if (seen == 0) {
      return failed_precondition("no image of the '{}' split of '{}' could be read to check int8 against fp32",
                                 check_name, options.calibration.string());
    }
    record.ranges = (*graph)->calibration();
    record.check = {.data = options.calibration.string(),
                    .split = check_name,
                    .images = seen,
                    .agreement = static_cast<double>(agree) / static_cast<double>(seen),
                    .accuracy_int8 = static_cast<double>(right_int8) / static_cast<double>(seen),
                    .accuracy_fp32 = static_cast<double>(right_fp32) / static_cast<double>(seen),
                    .max_logit_difference = max_difference};
  } catch (const c10::Error& error) {
    return internal_error("quantizing '{}': {}", model_dir->string(), error.what_without_backtrace());
  } catch (const std::exception& error) {  // oneDNN's own errors
    return internal_error("quantizing '{}': {}", model_dir->string(), error.what());
  }
  record.calibration_data = options.calibration.string();
  record.calibration_split = options.calibration_split;
  record.calibration_images = static_cast<int64_t>(calibration_samples.size());
  record.seed = options.seed;
  record.cpu = cpu.describe();
  record.created_at = fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(std::time(nullptr)));
  if (!cpu.native_int8()) {
    record.activations += " (7-bit: measured on a CPU without VNNI or AMX)";
  }

  fs::path dir = *model_dir;
  while (dir.filename().empty() && dir.has_parent_path() && dir != dir.parent_path()) dir = dir.parent_path();
  result.out = options.out.empty() ? dir.parent_path() / (dir.filename().string() + "-int8") : options.out;
  KENNEL_RETURN_IF_ERROR(write_quantized_dir(*model_dir, result.out, record));
  return result;
}

}  // namespace kennel::job

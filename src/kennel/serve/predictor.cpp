#include "kennel/serve/predictor.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>

#include "kennel/data/decode.h"
#include "kennel/data/transforms.h"
#include "kennel/util/parallel.h"

namespace kennel::serve {

Result<std::unique_ptr<Predictor>> Predictor::load(const std::filesystem::path& model_dir,
                                                   const PredictorOptions& options) {
  KENNEL_RETURN_IF_ERROR(models::check_inference_precision(options.precision));
  const auto start = std::chrono::steady_clock::now();
  auto loaded = models::load_model_dir(model_dir);
  if (!loaded.ok()) return loaded.status();
  std::unique_ptr<Predictor> predictor(new Predictor());
  predictor->model_dir_ = model_dir;
  predictor->info_ = loaded->info;
  predictor->options_ = options;
  auto model = models::InferenceModel::prepare(model_dir, *loaded,
                                               {.precision = options.precision,
                                                .fold_batchnorm = options.fold_batchnorm,
                                                .channels_last = options.channels_last,
                                                .int8_min_agreement = options.int8_min_agreement});
  if (!model.ok()) return model.status();
  predictor->model_ = std::move(*model);
  if (!predictor->model_->precision_warning().empty()) {
    spdlog::warn("model '{}': {}", model_dir.string(), predictor->model_->precision_warning());
  }
  predictor->precision_ = predictor->model_->precision();
  predictor->precision_reason_ = predictor->model_->precision_reason();
  at::set_num_threads(options.threads > 0 ? options.threads : default_thread_count());
  predictor->load_seconds_ =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return predictor;
}

Result<at::Tensor> Predictor::preprocess(std::span<const uint8_t> bytes) const {
  const data::ImagePipeline pipeline(models::eval_transform_of(info_));
  data::DecodeOptions decode;
  decode.max_pixels = options_.max_pixels;
  decode.min_short_side = pipeline.min_decode_short_side();
  auto decoded = data::decode_image(bytes, decode);
  if (!decoded.ok()) return Status(ErrorCode::kInvalidArgument, decoded.status().message());
  const int64_t size = pipeline.output_size();
  at::Tensor image = at::empty({3, size, size}, at::kFloat);
  data::Rng unused_rng(0);  // the eval transform draws nothing
  pipeline.apply(decoded->rgb, unused_rng, data::PixelLayout::kChw, image.data_ptr<float>());
  return image;
}

at::Tensor Predictor::predict(const at::Tensor& images) { return model_->forward(images); }

std::vector<std::vector<Prediction>> top_k(const at::Tensor& logits, int64_t k,
                                           const std::vector<std::string>& classes) {
  const at::Tensor rows = logits.to(at::kFloat).contiguous();
  std::vector<std::vector<Prediction>> out;
  for (int64_t i = 0; i < rows.size(0); ++i) {
    const float* row = rows.data_ptr<float>() + i * rows.size(1);
    out.push_back(top_k_of_row(std::span(row, static_cast<size_t>(rows.size(1))), k, classes));
  }
  return out;
}

std::vector<Prediction> top_k_of_row(std::span<const float> logits, int64_t k,
                                     const std::vector<std::string>& classes) {
  if (logits.empty()) return {};
  const float largest = *std::max_element(logits.begin(), logits.end());
  std::vector<double> probabilities(logits.size());
  double total = 0;
  for (size_t i = 0; i < logits.size(); ++i) total += probabilities[i] = std::exp(double(logits[i]) - largest);
  std::vector<size_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  const size_t count = static_cast<size_t>(std::clamp<int64_t>(k, 1, static_cast<int64_t>(logits.size())));
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(count), order.end(),
                    [&](size_t a, size_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  std::vector<Prediction> out;
  for (size_t j = 0; j < count; ++j) {
    Prediction prediction;
    prediction.index = static_cast<int64_t>(order[j]);
    prediction.probability = probabilities[order[j]] / total;
    if (order[j] < classes.size()) prediction.label = classes[order[j]];
    out.push_back(prediction);
  }
  return out;
}

}  // namespace kennel::serve

// Predictor: a saved model ready for inference — the model directory's
// models::InferenceModel at the chosen precision (fp32, bf16 or int8), and
// the exact eval transform recorded in its model.json (resize, centre crop,
// mean/std). One place turns image bytes
// into logits for the endpoint, `kennel predict --model` and `kennel
// transform`, so all three give the same numbers for the same image.
//
// Thread-safety: preprocess() is pure and safe from any thread; predict()
// runs the module under inference mode and is safe from several threads at
// once (eval-mode modules are read-only), which is what --workers relies on.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "kennel/models/inference_model.h"
#include "kennel/models/model_dir.h"
#include "kennel/util/status.h"

namespace kennel::serve {

struct PredictorOptions {
  int threads = 0;                 // intra-op threads for the model (0 = all cores)
  // auto (int8 for a model calibrated by `kennel quantize` on a CPU with VNNI/AMX; else bf16 where the
  // CPU has native bf16, else fp32) | fp32 | bf16 | int8; see models/inference_model.h. The weights are
  // converted once at load.
  std::string precision = "auto";
  // int8 runs only if `kennel quantize` measured at least this top-1 agreement with fp32.
  double int8_min_agreement = 0.98;
  // Fold each BatchNorm into the convolution before it (one pass less per layer; fp32 logits equal
  // the unfolded model's to 1e-4). Off only to compare.
  bool fold_batchnorm = true;
  int64_t max_pixels = 89'478'485;  // decompression-bomb guard for inputs
  bool channels_last = true;       // the faster layout for convolutions on CPU
};

struct Prediction {
  int64_t index = 0;
  std::string label;
  double probability = 0;
};

class Predictor {
 public:
  // Loads `model_dir` (see models::load_model_dir); errors name the folder and file.
  static Result<std::unique_ptr<Predictor>> load(const std::filesystem::path& model_dir,
                                                 const PredictorOptions& options);

  const models::ModelInfo& info() const { return info_; }
  const std::filesystem::path& model_dir() const { return model_dir_; }
  int64_t num_classes() const { return static_cast<int64_t>(info_.classes.size()); }
  double load_seconds() const { return load_seconds_; }
  // What runs (fp32 | bf16 | int8) and why, resolved once at load.
  const std::string& precision() const { return precision_; }
  const std::string& precision_reason() const { return precision_reason_; }

  // Image bytes -> normalised [3, S, S] float tensor (S = input size). Errors
  // are kInvalidArgument naming the problem: not an image, truncated, over
  // the pixel limit.
  Result<at::Tensor> preprocess(std::span<const uint8_t> bytes) const;
  // [N, 3, S, S] -> logits [N, C] (float32, CPU).
  at::Tensor predict(const at::Tensor& images);

 private:
  Predictor() = default;

  std::filesystem::path model_dir_;
  models::ModelInfo info_;
  std::unique_ptr<models::InferenceModel> model_;
  PredictorOptions options_;
  std::string precision_, precision_reason_;
  double load_seconds_ = 0;
};

// The k most probable classes of each row of `logits` (softmax), best first.
std::vector<std::vector<Prediction>> top_k(const at::Tensor& logits, int64_t k,
                                           const std::vector<std::string>& classes);
// The same for one row of logits (clients holding an endpoint's JSON answer).
std::vector<Prediction> top_k_of_row(std::span<const float> logits, int64_t k,
                                     const std::vector<std::string>& classes);

}  // namespace kennel::serve

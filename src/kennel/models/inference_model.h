// A saved model made ready for inference at one precision — the one object
// `kennel serve`, `predict`, `transform` and `evaluate` run, so that all four
// give the same numbers at the same precision.
//
// fp32 / bf16: the inference graph (models/inference_graph.h: BatchNorm
// folded, weights converted once, channels-last). int8: the quantized graph
// (models/quantized_graph.h) from the ranges in the directory's
// quantization.json (written by `kennel quantize`).
//
// The precision rule (choose_model_precision): an explicit fp32/bf16 is
// taken; an explicit int8 needs a calibrated model whose recorded top-1
// agreement with fp32 reaches `int8_min_agreement`, else it is refused with
// the figures; `auto` runs int8 on a calibrated model when the agreement
// reaches the threshold and the CPU has VNNI or AMX, and otherwise follows
// choose_inference_precision (bf16 where the CPU has native bf16).
// Thread-safety: forward() is safe from several threads at once.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <ATen/core/Tensor.h>

#include "kennel/models/model_dir.h"
#include "kennel/models/quantization_record.h"
#include "kennel/util/cpu_features.h"
#include "kennel/util/status.h"

namespace kennel::models {

class QuantizedGraph;

inline constexpr const char* kInferencePrecisions = "auto, fp32, bf16 or int8";

struct InferenceOptions {
  std::string precision = "auto";  // auto | fp32 | bf16 | int8
  // Off only to compare with the unfolded model.
  bool fold_batchnorm = true;
  bool channels_last = true;
  // int8 only runs when `kennel quantize` measured at least this top-1 agreement with fp32.
  double int8_min_agreement = 0.98;
};

// kInvalidArgument naming the value unless it is one of kInferencePrecisions.
Status check_inference_precision(const std::string& precision);

// What runs and why. Errors: kFailedPrecondition for int8 on a model without a calibration or
// below the agreement threshold, each saying what to do.
Result<PrecisionChoice> choose_model_precision(const std::string& requested, const ModelInfo& info,
                                               const std::optional<QuantizationRecord>& int8,
                                               double int8_min_agreement, const CpuFeatures& cpu);

class InferenceModel {
 public:
  // `loaded` comes from load_model_dir(dir). Errors name the directory.
  static Result<std::unique_ptr<InferenceModel>> prepare(const std::filesystem::path& dir, LoadedModel loaded,
                                                         const InferenceOptions& options);
  ~InferenceModel();

  // Images [N,3,S,S] float32 -> logits [N,C] float32, under inference mode.
  at::Tensor forward(const at::Tensor& images);

  const std::string& precision() const { return choice_.precision; }  // fp32 | bf16 | int8
  const std::string& precision_reason() const { return choice_.reason; }
  const std::string& precision_warning() const { return choice_.warning; }
  Classifier classifier() const { return classifier_; }

 private:
  InferenceModel() = default;

  Classifier classifier_{nullptr};
  std::unique_ptr<QuantizedGraph> int8_;
  PrecisionChoice choice_;
  at::ScalarType input_dtype_ = at::kFloat;
  bool channels_last_ = true;
};

}  // namespace kennel::models

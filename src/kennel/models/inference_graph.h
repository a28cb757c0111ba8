// Turns a trained classifier into the graph inference runs: every BatchNorm
// folded into the convolution before it, weights converted once to the
// inference dtype and laid out channels-last, eval mode. Owns nothing else:
// callers keep the module and call it under inference mode with input of
// `dtype`. The module is changed in place and is then fit only for
// inference (folded layers no longer train; its state dict is not the
// saved one). Not thread-safe while converting; read-only afterwards.
#pragma once

#include <string>

#include <c10/core/ScalarType.h>

#include "kennel/models/classifier.h"

namespace kennel::models {

// Folds each models::BatchNorm2d into the torch::nn::Conv2d registered just
// before it in the same module (the order every backbone here builds
// conv -> bn in): w' = w * g / sqrt(var + eps), b' = beta + (b - mean) * g /
// sqrt(var + eps), and marks the layer `folded`. A BatchNorm with no such
// convolution is left as it is. Computed in float64, stored in the weight's
// dtype. Returns how many layers were folded. Puts `model` in eval mode.
int fold_batchnorm(torch::nn::Module& model);

// The dtype the inference graph of `precision` holds its weights in: bf16 for "bf16", fp32 for
// the rest (int8 derives its weights from the fp32 ones).
inline at::ScalarType inference_dtype(const std::string& precision) {
  return precision == "bf16" ? at::kBFloat16 : at::kFloat;
}

struct InferenceGraphOptions {
  // false: every BatchNorm runs after its convolution as declared (not even folded per call), to compare.
  bool fold_batchnorm = true;
  at::ScalarType dtype = at::kFloat;  // kFloat or kBFloat16
  bool channels_last = true;
};

// Eval mode, folding, then dtype and memory format, in that order (folding
// in fp32 before rounding to bf16 loses nothing more than bf16 does).
// Returns how many BatchNorm layers were folded.
int prepare_inference_graph(Classifier& classifier, const InferenceGraphOptions& options);

// A copy of `classifier` (same spec, its weights and statistics copied, on the CPU) turned into
// the inference graph, for a pass that must leave the model being trained as it is: the frozen
// backbone's feature pass. Errors: kInternal when the copy does not load (a bug).
Result<Classifier> inference_copy(const Classifier& classifier, const InferenceGraphOptions& options);

}  // namespace kennel::models

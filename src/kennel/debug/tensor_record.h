// The debugger's data model: what the training hook records about tensors at a
// step, already reduced to summaries, and what the rules consume.
//
// This header owns only plain values (no torch, no I/O). The hook that fills
// them and the event-file storage live elsewhere; the rules (rules.h) read them.
// Thread-safety: values, no shared state.
//
// Conventions the hook follows, which the built-in rules rely on (a rule that
// finds none of what it needs ends as NoData and says which collection to enable):
//
//   * One StepRecord per train step (Mode::kTrain, step = global train step,
//     0-based) holding every tensor recorded at that step. Evaluation batches
//     are recorded with Mode::kEval and step = the train step at which that
//     validation ran, so every record of one validation pass has the same step.
//   * wall_time: seconds since the Unix epoch (system_clock), the clock the
//     rule runner ticks with (StalledTraining compares the two).
//   * Tensor names are "<collection>/<what>", e.g.
//     "gradients/backbone.layer1.0.conv1.weight", "relu_output/layer2".
//   * losses:      "losses/train_loss" in every train record, values[0] = the
//                  batch loss; "losses/valid_loss" once per validation
//                  (Mode::kEval), values[0] = the mean validation loss.
//   * metrics:     "metrics/train_accuracy", "metrics/valid_accuracy", values[0].
//   * optimizer:   "optimizer/update_ratio/<param>" values[0] = ||update|| / ||weight||
//                  for that step's optimizer update; values[1], when present,
//                  = ||weight|| (the rule skips weights below its epsilon).
//                  Only trainable (not frozen) parameters are recorded.
//   * weights, biases, gradients: "<collection>/<param>", full reductions and
//                  ideally a histogram; only trainable parameters (a frozen
//                  backbone is unchanged by design and would trip UnchangedTensor).
//   * relu_input/<layer>, tanh_input/<layer>, sigmoid_input/<layer>: reductions
//                  (+ histogram) of the activation's input. For tanh/sigmoid
//                  inputs, values = per-unit (per-channel) mean |x| over the batch.
//   * relu_output/<layer>: fraction_positive for the layer, values = per-unit
//                  (per-channel) share of the batch where the unit was > 0.
//   * inputs/images: reductions of the normalised batch; shape = {N, C, H, W};
//                  values = per-channel means (optional).
//   * labels/counts: values = per-class count of labels in the batch (one per class).
//   * predictions/confusion: values = flattened CxC confusion counts for the
//                  batch, row = true class, column = predicted class; count = C*C.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kennel::debug {

enum class Mode { kTrain, kEval };

// Bin b holds values in [edges[b], edges[b+1]); edges.size() == counts.size() + 1.
struct Histogram {
  std::vector<double> edges;
  std::vector<int64_t> counts;
};

// One tensor at one step, reduced.
struct TensorSummary {
  std::string name;        // "<collection>/<what>", e.g. "losses/train_loss"
  std::string collection;  // one of known_collections()
  int64_t step = 0;
  Mode mode = Mode::kTrain;
  int64_t count = 0;                 // number of elements
  std::vector<int64_t> shape;        // the tensor's shape when known (inputs/images: N,C,H,W)
  double min = 0, max = 0, mean = 0, std = 0, variance = 0, l1 = 0, l2 = 0;
  double fraction_zero = 0;          // share of elements == 0
  double fraction_nan = 0, fraction_inf = 0;
  double fraction_positive = 0;      // share > 0 (relu activity)
  std::optional<Histogram> histogram;
  std::vector<double> values;        // raw values when small (scalars: one value; per-unit activity; class counts)
};

struct StepRecord {
  int64_t step = 0;
  Mode mode = Mode::kTrain;
  double wall_time = 0;  // seconds since the Unix epoch
  std::vector<TensorSummary> tensors;
};

// The collections the hook knows, in the order the docs list them.
inline const std::vector<std::string>& known_collections() {
  static const std::vector<std::string> kCollections = {
      "losses",      "metrics",    "weights",       "biases",  "gradients", "relu_input", "relu_output",
      "tanh_input",  "sigmoid_input", "inputs",     "labels",  "predictions", "optimizer"};
  return kCollections;
}

inline const char* mode_name(Mode mode) { return mode == Mode::kTrain ? "train" : "eval"; }

}  // namespace kennel::debug

// int8 inference of a trained classifier: post-training static quantization
// run on LibTorch's oneDNN quantized engine (Debian's LibTorch has no FBGEMM;
// oneDNN uses VNNI or AMX where the CPU has them).
//
// The graph is the folded fp32 backbone (models::fold_batchnorm) rewritten as
// a list of steps — convolutions with their ReLU/ReLU6, max-pool, residual
// additions — over which two interpreters run:
//   - calibrate(): fp32, recording the range of every step's output
//     (a "point", named after the layer: "conv1", "layer1.0.add",
//     "features.3.conv.1.0"); min/max over every image seen;
//   - forward(): int8. Weights per output channel, symmetric (qint8, zero
//     point 0); activations per tensor, asymmetric quint8 from the recorded
//     ranges (0..127 where the CPU lacks VNNI/AMX, as oneDNN needs without
//     them). A ReLU6 is the clamp of its quint8 range (recorded after the
//     ReLU6, so at most 6). The global average pool and the head run in fp32
//     on the dequantized features: they are a sliver of the work.
//     A 1x1 convolution with stride 1 (most of a bottleneck's work) runs as
//     an int8 matrix product over the channels-last map's pixels
//     (quantized::linear): LibTorch 1.13's oneDNN (2.6) corrupts memory in
//     its AMX kernel for 1x1 int8 convolutions on maps of 36 or 42 pixels
//     (6x6, 6x7: MobileNetV2 or ResNet-50 at 48 px), not in its int8 matrix
//     product, so int8 keeps AMX on CPUs that have it (docs/decisions.md).
//
// ResNets (Basic and Bottleneck blocks) and torchvision's MobileNetV2 are
// supported; build() checks the rewritten graph against the classifier's own
// forward at fp32, so a backbone this file does not understand fails there,
// never silently. Keras-compatible MobileNetV2 (asymmetric TF padding) is
// refused. Thread-safety: forward() is safe from several threads at once
// once quantize() has run (a batch size seen for the first time finds its
// packed weights under a per-layer mutex); build, calibrate and quantize
// are not.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "kennel/models/classifier.h"
#include "kennel/models/quantization_record.h"
#include "kennel/util/cpu_features.h"
#include "kennel/util/status.h"

namespace kennel::models {

// kInvalidArgument naming the reason when `spec`'s architecture cannot be quantized here.
Status check_quantizable(const ModelSpec& spec);

// at::quantize_per_tensor(values, scale, zero_point, kQUInt8) and Tensor::dequantize() of a
// per-tensor quint8 tensor, computed with vectorized float operations: without FBGEMM, this
// LibTorch runs both as scalar loops (16 images at 224 px: 8.7 ms against 3.2 to quantize,
// 3.7 against 1.0 to dequantize ResNet-50's last map, 2-core Xeon). Same levels, same values;
// the memory format is kept.
at::Tensor quantize_activation(const at::Tensor& values, double scale, int64_t zero_point);
at::Tensor dequantize_activation(const at::Tensor& quantized);

// Which kernels int8 runs on `cpu`, in one line (`kennel system`).
std::string describe_int8_kernels(const CpuFeatures& cpu);

class QuantizedGraph {
 public:
  // `classifier` must already be folded at fp32 (prepare_inference_graph with dtype kFloat);
  // the graph shares its weights. Errors: check_quantizable's, or kInternal when the rewritten
  // graph does not reproduce the classifier's logits at fp32 (names the largest difference).
  static Result<std::unique_ptr<QuantizedGraph>> build(Classifier classifier);

  // fp32 pass over `images` ([N,3,S,S] float), widening each point's range; returns the logits.
  at::Tensor calibrate(const at::Tensor& images);
  const CalibrationTable& calibration() const { return ranges_; }
  // Every point's name, input first.
  std::vector<std::string> points() const;
  // The points of the convolutions that run as matrix products (1x1, stride 1), input first.
  std::vector<std::string> matrix_product_points() const;

  // Converts the weights to int8 and fixes every activation's scale from `table` (which must
  // name every point: kInvalidArgument lists the missing ones). `reduce_range`: quint8 0..127,
  // for CPUs without VNNI/AMX.
  Status quantize(const CalibrationTable& table, bool reduce_range);
  bool quantized() const { return quantized_; }

  // int8 inference: images [N,3,S,S] float (any memory format) -> logits [N,C] float.
  at::Tensor forward(const at::Tensor& images);

  ~QuantizedGraph();

 private:
  struct Step;
  explicit QuantizedGraph(Classifier classifier);
  at::Tensor run_fp32(const at::Tensor& images, bool record);

  Classifier classifier_;
  std::vector<std::unique_ptr<Step>> steps_;
  std::vector<std::vector<int>> dead_after_;  // per step: the slots no later step reads
  int output_slot_ = 0;
  int slot_count_ = 1;         // slot 0 = the input
  CalibrationTable ranges_;
  double input_scale_ = 1;
  int64_t input_zero_point_ = 0;
  bool quantized_ = false;

  friend class QuantizedGraphBuilder;
};

}  // namespace kennel::models

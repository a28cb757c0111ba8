// Convolutions over maps smaller than their kernel's reach, computed without
// the work that only ever meets zero padding. At 28-64 px a ResNet's last
// stages run 3x3 convolutions on 1x1 and 2x2 maps; oneDNN computes all nine
// taps there, and its AMX backward kernels are slowest on exactly these
// shapes (ResNet-18 at 28 px, batch 256, bf16 on a 2-core Xeon with AMX:
// 67 % of a training step in convolution backward, 9.6 GFLOP/s for a 1x1
// convolution on a 1x1 map). The backbones call convolve() instead of the
// layer's forward; the layer, its parameters and its state dict stay as
// torchvision's.
//
// The rule, for each axis of a convolution with kernel k, stride s, padding p
// and dilation d over a map of H pixels, giving O outputs:
//  1. Tap i is live when some output reads the map, not padding, through it:
//     0 <= o*s - p + i*d < H for some o in [0, O).
//  2. The kernel is cut to its live taps' span [first, last], with padding
//     p - first*d, when that padding is not negative and the cut kernel gives
//     the same O (a symmetric padding can express the cut); otherwise the
//     convolution runs as declared.
//  3. When the (cut) kernel covers the whole unpadded map on both axes with
//     padding 0, dilation 1, one group and a 1x1 output, the convolution is a
//     matrix product: the map flattened in its memory order times the weight
//     flattened in the same order (a batched GEMM, which oneDNN and BLAS run
//     at full speed).
//  4. A convolution followed by a BatchNorm that normalises with its running
//     statistics (eval mode: --batchnorm frozen, a frozen stage, validation)
//     runs with that layer folded in: weight w*g/sqrt(var+eps) per output
//     channel and bias beta + (b - mean)*g/sqrt(var+eps), recomputed each call
//     so that w, b, g and beta keep training. A BatchNorm in training mode,
//     already folded for inference, marked !fold_in_eval, or without running
//     statistics runs after the convolution as declared. This saves the
//     BatchNorm's pass over the map forward and backward (ResNet-50 at 224 px,
//     batch 32, bf16 on a 2-core Xeon with AMX: PyTorch's step 1.25x faster).
//  5. What follows the BatchNorm (a residual add, a ReLU) is applied after the
//     folded convolution of clause 4; after a BatchNorm in training mode it
//     runs with the BatchNorm as one operation (models/normalize_activate.h).
//  6. A 1x1 convolution with no padding and one group over a channels-last
//     map, run for a gradient in bf16 (autocast to bf16 or a bf16 input, grad
//     mode on, a weight or input that requires grad) on a CPU with AMX, is a
//     matrix product of its pixels: [N*H*W, C] times the weight as [C_out, C];
//     with a stride s, of every s-th pixel, copied out first (its gradient is
//     written into a map of zeros). oneDNN 2.6's AMX kernels run it 1.25-2.8x
//     faster forward and backward than its 1x1 convolution at stride 1, 2-6x
//     at stride 2 (ResNet-50's 1x1 shapes at 224 px, batch 32); in fp32, for
//     inference, and on CPUs without AMX (not measured) the convolution runs
//     as declared.
//  7. A convolution with a larger kernel (dilation 1, one group) over a
//     channels-last map of at least 256 channels, run for a gradient in bf16
//     on a CPU with AMX, runs forward as declared but computes its weight
//     gradient as one matrix product: the output gradient's pixels [C_out,
//     N*OH*OW] times the columns of input pixels each output reads [N*OH*OW,
//     KH*KW*C] (copied out once); from 512 channels also its input gradient,
//     [N*OH*OW, C_out] times the weight, each column summed back into the
//     pixel it came from. ResNet-50's 3x3 convolutions at 224 px, batch 32:
//     oneDNN 2.6's AMX weight gradient 1.4-3.7x slower than the product from
//     256 channels (layer3, layer4), faster below; its input gradient
//     1.3-1.9x slower from 512 channels, 1.3-3.7x faster below.
// Only zero padding is cut; any other padding mode runs as declared. Results
// equal the declared convolution's up to the order of summation; the
// gradient of a cut tap is zero, as it is in the declared convolution.
// Thread-safety: as the layer's own forward.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

#include "kennel/models/activation_probe.h"
#include "kennel/models/normalize_activate.h"

namespace torch::nn {
class Conv2dImpl;
}

namespace kennel {
struct CpuFeatures;
}  // namespace kennel

namespace kennel::models {

struct ConvolutionGeometry {
  std::array<int64_t, 2> kernel{1, 1}, stride{1, 1}, padding{0, 0}, dilation{1, 1};
  int64_t groups = 1;
};

struct ConvolutionPlan {
  enum class Route { kDeclared, kCutKernel, kMatrixProduct };
  Route route = Route::kDeclared;
  // Per axis (height, width): the span of taps kept and the padding the kept kernel runs with.
  // For kDeclared: the whole kernel and the declared padding.
  std::array<int64_t, 2> first_tap{0, 0}, last_tap{0, 0}, padding{0, 0};
};

// The rule above for a map of `height` x `width` pixels (both at least 1).
ConvolutionPlan plan_convolution(const ConvolutionGeometry& geometry, int64_t height, int64_t width);

// Clause 6's test: whether a convolution of `geometry` over a map in channels-last (or not) pays as a
// matrix product of its pixels when it computes a gradient in bf16 (or not) on `cpu`.
bool pixel_product_pays(const ConvolutionGeometry& geometry, bool channels_last, bool bf16_gradient,
                        const CpuFeatures& cpu);

// Clause 6's product: the unpadded 1x1 convolution of `input` (channels-last, [N, C, H, W]) by `weight`
// ([C_out, C, 1, 1]) plus `bias` (undefined: none) with `stride` (rows, columns), channels-last;
// differentiable.
at::Tensor pixel_product(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                         const std::array<int64_t, 2>& stride = {1, 1});

// Clause 7's test: whether a convolution of `geometry` over a map of `in_channels` channels, channels-last
// (or not), computing a gradient in bf16 (or not) on `cpu`, takes its weight gradient, and its input
// gradient, from the columns of its input.
struct ColumnGradients {
  bool weight = false, input = false;
};
ColumnGradients column_gradients_pay(const ConvolutionGeometry& geometry, int64_t in_channels, bool channels_last,
                                     bool bf16_gradient, const CpuFeatures& cpu);

// Clause 7's route: conv2d(input, weight, bias) with `geometry` (one group, dilation 1), differentiable,
// whose weight and bias gradients, and input gradient when `input_from_columns`, are matrix products
// (input: channels-last [N, C, H, W]; under autocast the operands run in its dtype).
at::Tensor convolution_with_column_gradients(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                                             const ConvolutionGeometry& geometry, bool input_from_columns);

// `conv`'s output for `input` ([N, C, H, W], either memory format) by the plan for its shape;
// the layer's own forward when its padding is not numeric zeros or `input` is not 4-d.
at::Tensor convolve(torch::nn::Conv2dImpl& conv, const at::Tensor& input);

// Clause 4's test: `norm` normalises with running statistics and may be folded per call.
bool normalizes_with_running_statistics(const BatchNorm2dImpl& norm);

// norm(convolve(conv, input)), then `after` (+ residual, ReLU), with `norm` folded into the
// convolution when clause 4 allows and fused with `after` when clause 5 does; otherwise exactly
// that (a layer whose padding convolve() does not cut is never folded).
at::Tensor convolve_normalized(torch::nn::Conv2dImpl& conv, BatchNorm2dImpl& norm, const at::Tensor& input,
                               const AfterNormalization& after = {});

// The same, where the rectifier is an activation tap (models/activation_probe.h): when an observer
// watches `tap` (not empty), it sees the value before the rectifier, computed apart; otherwise one
// operation as above.
at::Tensor convolve_normalized_tapped(const std::string& tap, ActivationKind kind, torch::nn::Conv2dImpl& conv,
                                      BatchNorm2dImpl& norm, const at::Tensor& input, AfterNormalization after);

}  // namespace kennel::models

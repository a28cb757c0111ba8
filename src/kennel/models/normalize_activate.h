// A training-mode BatchNorm with what follows it in a ResNet or a MobileNetV2
// (a residual add, a ReLU or ReLU6) as one differentiable operation in two
// passes over the map forward and two backward. LibTorch 1.13 runs
// BatchNorm, add and ReLU as separate
// kernels whose bf16 channels-last paths are far from the memory's speed:
// on a 2-core Xeon with AMX, BatchNorm + ReLU forward and backward over a
// [32, 256, 56, 56] bf16 map took the time of 17 copies of it, about a
// third of a ResNet-50 fine-tuning step in all.
//
// The rule:
//  1. It runs fused when `norm` normalises with the batch's statistics
//     (training mode, no BatchNormSync set) and `input` is a 4-D CPU tensor,
//     float or bfloat16, channels-last and dense, with more than one value
//     per channel, and the residual, when given, has input's shape, dtype and
//     layout. Otherwise it runs as declared: rectify(norm(input) + residual).
//  2. Forward: per channel, the batch's mean and biased variance (summed in
//     float over blocks of 16 pixels, shifted by the first pixel's value, and
//     in double across blocks); the running statistics move as BatchNorm's
//     do (unbiased variance, the layer's momentum); the output is
//     rectify(x * scale + shift + residual), rounded once to input's dtype.
//  3. Backward: the rectifier passes the gradient where its input was above
//     0 (threshold_backward's test), and below 6 for ReLU6 (hardtanh's): the
//     pre-activation x * scale + shift recomputed in float from the saved
//     input, or after a residual add the saved output (for ReLU the same
//     test; for ReLU6 after an add, on the rounded output as the declared
//     bf16 layers do); BatchNorm's gradient for the input,
//     gamma and beta in float, with its per-channel sums as in 2; the
//     residual's gradient is the gradient the rectifier passed.
//  4. The row loops are compiled for AVX-512, AVX2 and the baseline, and the
//     CPU's flags pick one at run time (fused_batchnorm_kernels() names it).
// Results equal the declared operations' up to the order of summation and
// rounding (in bf16 the declared path also rounds after the BatchNorm and
// after the add). Not twice differentiable.
// Thread-safety: as the layer's own forward.
#pragma once

#include <string>

#include <ATen/core/Tensor.h>

namespace kennel::models {

class BatchNorm2dImpl;

// max(x, 0), or min(max(x, 0), 6); numbered as the row loops number them.
enum class Rectifier { kNone = 0, kRelu = 1, kRelu6 = 2 };

struct AfterNormalization {
  at::Tensor residual = {};  // added after the BatchNorm when defined
  Rectifier rectifier = Rectifier::kNone;
};

// `x` rectified in place where autograd allows, as the declared layers do. LibTorch 1.13 has no
// bf16 CPU kernel for ReLU6's backward (hardtanh_backward fails with '"hardshrink_backward_cpu" not
// implemented for BFloat16'): where autograd records a bf16 ReLU6, it runs in fp32 and hands bf16 back.
at::Tensor rectify(at::Tensor x, Rectifier rectifier);

// Clause 1's test for `norm` and `input` (with `after.residual`).
bool can_normalize_fused(const BatchNorm2dImpl& norm, const at::Tensor& input, const AfterNormalization& after);

// rectify(norm(input) + residual) as `after` asks, by the rule above.
at::Tensor normalize_activate(BatchNorm2dImpl& norm, const at::Tensor& input, const AfterNormalization& after);

// "AVX-512" | "AVX2" | "baseline x86-64": the row loops clause 4 picked on this CPU (tests choose
// another with choose_loop_instruction_set, util/loop_instruction_set.h).
std::string fused_batchnorm_kernels();

}  // namespace kennel::models

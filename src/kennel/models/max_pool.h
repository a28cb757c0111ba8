// Max pooling over channels-last maps (the ResNet stem's 3x3, stride 2) as one
// differentiable operation that remembers each output's winning tap in a byte.
// LibTorch 1.13's bf16 channels-last max_pool2d writes and reads an int64 index
// per output value: for ResNet-50's [32, 64, 112, 112] map at 224 px on a
// 2-core Xeon with AMX its forward took 8-10 ms, these loops' 3.5-4.2 ms
// (the backward is level, about 8 ms: it writes the whole map's gradient);
// fine-tuning ResNet-18 and ResNet-50 steps ran about 2 % faster.
//
// The rule:
//  1. It runs by these loops for a 4-D CPU map, float or bfloat16, dense in
//     channels-last, with no dilation, no ceil mode, padding at most half the
//     kernel (LibTorch's own limit) and at most 255 taps per window; otherwise
//     at::max_pool2d runs.
//  2. Each output is the largest value of its window among the taps on the
//     map, scanned row by row: a value replaces the kept one when it is
//     larger or NaN (LibTorch's test: ties keep the first, a NaN wins).
//  3. Backward: each output's gradient goes to the input pixel whose value
//     it kept, summed in float where windows overlap and rounded once.
//  4. The loops run on the instruction set util/loop_instruction_set.h
//     picks.
// Outputs equal at::max_pool2d's; gradients equal its up to bf16 rounding
// where windows overlap. Not twice differentiable.
// Thread-safety: reentrant.
#pragma once

#include <array>
#include <cstdint>

#include <ATen/core/Tensor.h>

namespace kennel::models {

using PoolSize = std::array<int64_t, 2>;  // rows, columns

// Clause 1's test.
bool max_pool_runs_fused(const at::Tensor& input, const PoolSize& kernel, const PoolSize& stride,
                         const PoolSize& padding);

// at::max_pool2d(input, kernel, stride, padding) by the rule above.
at::Tensor max_pool(const at::Tensor& input, const PoolSize& kernel, const PoolSize& stride,
                    const PoolSize& padding);

}  // namespace kennel::models

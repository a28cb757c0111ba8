// Each clause of models/max_pool.h's rule: which maps run by its loops (1), outputs equal to
// at::max_pool2d's, ties and NaNs included (2), gradients routed to the same pixels and summed
// where windows overlap (3), on every instruction set this CPU runs (4).
#include "kennel/models/max_pool.h"

#include <gtest/gtest.h>

#include <cctype>
#include <limits>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "kennel/util/loop_instruction_set.h"

namespace kennel::models {
namespace {

struct Geometry {
  PoolSize kernel, stride, padding;
};

const std::vector<Geometry> kGeometries = {
    {{3, 3}, {2, 2}, {1, 1}},  // the ResNet stem's
    {{2, 2}, {2, 2}, {0, 0}},
    {{3, 3}, {1, 1}, {1, 1}},
    {{3, 2}, {2, 1}, {1, 0}},
};

struct Map {
  int64_t batch, channels, height, width;
};

const std::vector<Map> kMaps = {{2, 5, 7, 6}, {1, 64, 8, 9}, {3, 17, 5, 5}, {2, 1, 4, 4}};

std::string describe(const Geometry& g, const Map& m, at::ScalarType dtype) {
  return "kernel " + std::to_string(g.kernel[0]) + "x" + std::to_string(g.kernel[1]) + " stride " +
         std::to_string(g.stride[0]) + "x" + std::to_string(g.stride[1]) + " padding " +
         std::to_string(g.padding[0]) + "x" + std::to_string(g.padding[1]) + " map [" +
         std::to_string(m.batch) + "," + std::to_string(m.channels) + "," +
         std::to_string(m.height) + "," + std::to_string(m.width) + "] " + c10::toString(dtype);
}

// Small integers: most windows hold ties, so the kept tap (and where the gradient goes) is tested.
at::Tensor tied_map(const Map& m, at::ScalarType dtype) {
  return torch::randint(0, 4, {m.batch, m.channels, m.height, m.width})
      .to(dtype)
      .contiguous(at::MemoryFormat::ChannelsLast);
}

struct Pooled {
  at::Tensor output, gradient;
};

Pooled pool(const at::Tensor& map, const Geometry& g, bool fused, at::ScalarType gradient_dtype) {
  const at::Tensor x = map.clone().requires_grad_(true);
  const at::Tensor out = fused ? max_pool(x, g.kernel, g.stride, g.padding)
                               : at::max_pool2d(x, g.kernel, g.stride, g.padding);
  // Values bf16 holds exactly, so that fp32 and bf16 runs sum the same gradients.
  const at::Tensor weights =
      torch::linspace(-1, 1, out.numel()).view(out.sizes()).to(at::kBFloat16).to(out.scalar_type());
  (out * weights).sum().backward();
  return {out.detach(), x.grad().to(gradient_dtype)};
}

class MaxPoolKernelsTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    original_ = instruction_set_name(loop_instruction_set());
    if (!choose_loop_instruction_set(GetParam()))
      GTEST_SKIP() << GetParam() << " does not run on this CPU";
  }
  void TearDown() override { choose_loop_instruction_set(original_); }
  std::string original_;
};

// Clauses 2 and 3 in fp32: the same outputs and gradients as LibTorch's, ties included.
TEST_P(MaxPoolKernelsTest, Fp32EqualsLibTorch) {
  torch::manual_seed(1);
  for (const Geometry& g : kGeometries) {
    for (const Map& m : kMaps) {
      const at::Tensor map = tied_map(m, at::kFloat);
      ASSERT_TRUE(max_pool_runs_fused(map, g.kernel, g.stride, g.padding))
          << describe(g, m, at::kFloat);
      const Pooled fused = pool(map, g, true, at::kFloat);
      const Pooled declared = pool(map, g, false, at::kFloat);
      EXPECT_TRUE(fused.output.is_contiguous(at::MemoryFormat::ChannelsLast));
      EXPECT_TRUE(torch::equal(fused.output, declared.output)) << describe(g, m, at::kFloat);
      EXPECT_TRUE(torch::allclose(fused.gradient, declared.gradient, 1e-6, 1e-6))
          << describe(g, m, at::kFloat);
    }
  }
}

// In bf16: the same outputs; gradients summed in float and rounded once, LibTorch's fp32 gradient
// for the same values rounded to bf16.
TEST_P(MaxPoolKernelsTest, Bfloat16OutputsEqualAndGradientsAreTheFp32OnesRounded) {
  torch::manual_seed(2);
  for (const Geometry& g : kGeometries) {
    for (const Map& m : kMaps) {
      const at::Tensor map = tied_map(m, at::kBFloat16);
      const Pooled fused = pool(map, g, true, at::kFloat);
      const Pooled declared = pool(map.to(at::kFloat), g, false, at::kFloat);
      EXPECT_EQ(fused.output.scalar_type(), at::kBFloat16);
      EXPECT_TRUE(torch::equal(fused.output.to(at::kFloat), declared.output))
          << describe(g, m, at::kBFloat16);
      EXPECT_TRUE(torch::equal(fused.gradient, declared.gradient.to(at::kBFloat16).to(at::kFloat)))
          << describe(g, m, at::kBFloat16);
    }
  }
}

// Clause 2's NaN and infinity: a NaN is kept over any number (the last NaN of a window, as LibTorch
// keeps it), a window of -inf keeps its first tap.
TEST_P(MaxPoolKernelsTest, NaNsAndInfinitiesAsLibTorch) {
  torch::manual_seed(3);
  const Map m{2, 9, 7, 7};
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    at::Tensor map = torch::randn({m.batch, m.channels, m.height, m.width});
    map.masked_fill_(torch::rand(map.sizes()) < 0.1, std::numeric_limits<float>::quiet_NaN());
    map.masked_fill_(torch::rand(map.sizes()) < 0.3, -std::numeric_limits<float>::infinity());
    map = map.to(dtype).contiguous(at::MemoryFormat::ChannelsLast);
    const Geometry g = kGeometries[0];
    const Pooled fused = pool(map, g, true, at::kFloat);
    const Pooled declared = pool(map.to(at::kFloat), g, false, at::kFloat);
    EXPECT_TRUE(
        torch::allclose(fused.output.to(at::kFloat), declared.output, 0, 0, /*equal_nan=*/true))
        << c10::toString(dtype);
    EXPECT_TRUE(torch::equal(fused.gradient, declared.gradient.to(dtype).to(at::kFloat)))
        << c10::toString(dtype);
  }
}

// Without a gradient to compute (inference), the same outputs and nothing recorded.
TEST_P(MaxPoolKernelsTest, InferenceGivesTheSameOutputs) {
  torch::manual_seed(4);
  torch::NoGradGuard no_grad;
  const Geometry g = kGeometries[0];
  for (const Map& m : kMaps) {
    const at::Tensor map = torch::randn({m.batch, m.channels, m.height, m.width})
                               .contiguous(at::MemoryFormat::ChannelsLast);
    const at::Tensor out = max_pool(map, g.kernel, g.stride, g.padding);
    EXPECT_FALSE(out.requires_grad());
    EXPECT_TRUE(torch::equal(out, at::max_pool2d(map, g.kernel, g.stride, g.padding)));
  }
}

INSTANTIATE_TEST_SUITE_P(EveryInstructionSet, MaxPoolKernelsTest,
                         ::testing::Values("AVX-512", "AVX2", "baseline x86-64"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& ch : name)
                             ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           return name;
                         });

// Clause 1: only dense channels-last float or bf16 maps with a kernel LibTorch accepts and at most
// 255 taps; anything else runs as at::max_pool2d, with its results.
TEST(MaxPool, RunsByItsLoopsOnlyWhereTheRuleSays) {
  const at::Tensor map = torch::randn({2, 4, 6, 6}).contiguous(at::MemoryFormat::ChannelsLast);
  const PoolSize k3{3, 3}, s2{2, 2}, p1{1, 1};
  EXPECT_TRUE(max_pool_runs_fused(map, k3, s2, p1));
  EXPECT_TRUE(max_pool_runs_fused(map.to(at::kBFloat16), k3, s2, p1));
  EXPECT_FALSE(max_pool_runs_fused(map.contiguous(), k3, s2, p1)) << "NCHW";
  EXPECT_FALSE(max_pool_runs_fused(map.to(at::kDouble), k3, s2, p1)) << "double";
  EXPECT_FALSE(max_pool_runs_fused(map[0], k3, s2, p1)) << "3-d";
  EXPECT_FALSE(max_pool_runs_fused(map, k3, s2, {2, 2})) << "padding over half the kernel";
  EXPECT_FALSE(max_pool_runs_fused(map, {16, 16}, s2, p1)) << "256 taps; also larger than the map";
  EXPECT_FALSE(max_pool_runs_fused(map, {7, 7}, s2, {0, 0})) << "kernel larger than the map";
  EXPECT_FALSE(max_pool_runs_fused(map.slice(3, 0, 5), k3, s2, p1)) << "not dense";
  const at::Tensor nchw = map.contiguous();
  EXPECT_TRUE(torch::equal(max_pool(nchw, k3, s2, p1), at::max_pool2d(nchw, k3, s2, p1)));
}

}  // namespace
}  // namespace kennel::models

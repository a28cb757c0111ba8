// Each clause of models/convolution.h's rule, then the promise that matters:
// over every small geometry, convolve() gives the declared convolution's
// output and gradients; with an eval-mode BatchNorm folded in per call (clause 4),
// the declared pair's output and every gradient.
#include "kennel/models/convolution.h"

#include <gtest/gtest.h>

#include <torch/torch.h>

#include "kennel/models/batch_norm.h"
#include "kennel/train/autocast.h"
#include "kennel/util/cpu_features.h"

namespace kennel::models {
namespace {

using Route = ConvolutionPlan::Route;

ConvolutionGeometry square(int64_t kernel, int64_t stride, int64_t padding, int64_t dilation = 1,
                           int64_t groups = 1) {
  return {{kernel, kernel}, {stride, stride}, {padding, padding}, {dilation, dilation}, groups};
}

using Axes = std::array<int64_t, 2>;

void expect_plan(const ConvolutionPlan& plan, Route route, Axes first_tap, Axes last_tap, Axes padding) {
  EXPECT_EQ(plan.route, route);
  EXPECT_EQ(plan.first_tap, first_tap);
  EXPECT_EQ(plan.last_tap, last_tap);
  EXPECT_EQ(plan.padding, padding);
}

TEST(ConvolutionPlan, MapsAtLeastTheKernelRunAsDeclared) {
  expect_plan(plan_convolution(square(3, 1, 1), 7, 7), Route::kDeclared, {0, 0}, {2, 2}, {1, 1});
}

// Clause 1: on a 1x1 map a padded 3x3 kernel reads the map through its centre only.
TEST(ConvolutionPlan, OnlyTapsThatReachTheMapAreLive) {
  expect_plan(plan_convolution(square(3, 1, 1, 1, /*groups=*/4), 1, 1), Route::kCutKernel, {1, 1}, {1, 1}, {0, 0});
}

// Clause 1 with a stride: a tap is live when some output lands it on the map.
TEST(ConvolutionPlan, AStridedAxisKeepsTheTapsItsOutputsLandOnTheMap) {
  // 2 -> 1 pixel, stride 2, padding 1: output 0 reads positions -1, 0, 1 through taps 0, 1, 2.
  expect_plan(plan_convolution(square(3, 2, 1, 1, /*groups=*/2), 2, 2), Route::kCutKernel, {1, 1}, {2, 2}, {0, 0});
}

TEST(ConvolutionPlan, OneAxisMayBeCutAndTheOtherNot) {
  expect_plan(plan_convolution(square(3, 1, 1), 1, 6), Route::kCutKernel, {1, 0}, {1, 2}, {0, 1});
}

// Clause 2: a cut that would need negative padding runs as declared.
TEST(ConvolutionPlan, ACutNeedingNegativePaddingRunsAsDeclared) {
  // Map 2, kernel 2, stride 2, padding 1, dilation 2: tap 0 reads -1 only; tap 1 (first live) would
  // need padding 1 - 2 = -1.
  EXPECT_EQ(plan_convolution(square(2, 2, 1, 2), 2, 2).route, Route::kDeclared);
}

// Clause 2: a cut whose symmetric padding would change the output size runs as declared.
TEST(ConvolutionPlan, ACutThatChangesTheOutputSizeRunsAsDeclared) {
  // Map 1, kernel 2, stride 2, padding 2: two outputs, only tap 0 live (output 1 reads position 0);
  // kernel 1 with padding 2 would give three.
  EXPECT_EQ(plan_convolution(square(2, 2, 2), 1, 1).route, Route::kDeclared);
}

// Clause 3: a kernel covering the whole map with a 1x1 output is a matrix product, cut or not.
TEST(ConvolutionPlan, AKernelCoveringTheWholeMapIsAMatrixProduct) {
  EXPECT_EQ(plan_convolution(square(3, 1, 1), 1, 1).route, Route::kMatrixProduct);
  EXPECT_EQ(plan_convolution(square(3, 2, 1), 2, 2).route, Route::kMatrixProduct);
  EXPECT_EQ(plan_convolution(square(1, 1, 0), 1, 1).route, Route::kMatrixProduct);
  EXPECT_EQ(plan_convolution(square(2, 1, 0), 2, 2).route, Route::kMatrixProduct);
}

// Clause 3's conditions, one at a time.
TEST(ConvolutionPlan, GroupsPaddingOrALargerOutputKeepAConvolution) {
  EXPECT_EQ(plan_convolution(square(3, 1, 1, 1, /*groups=*/2), 1, 1).route, Route::kCutKernel);
  EXPECT_EQ(plan_convolution(square(1, 1, 0), 2, 2).route, Route::kDeclared);  // 2x2 output
  EXPECT_EQ(plan_convolution(square(1, 2, 0), 2, 2).route, Route::kDeclared);  // 1x1 output, kernel < map
  EXPECT_EQ(plan_convolution(square(3, 1, 1), 2, 2).route, Route::kDeclared);  // every tap live
}

struct Case {
  int64_t height, width, kernel, stride, padding, dilation, groups;
};

std::string describe(const Case& c) {
  return "map " + std::to_string(c.height) + "x" + std::to_string(c.width) + " kernel " + std::to_string(c.kernel) +
         " stride " + std::to_string(c.stride) + " padding " + std::to_string(c.padding) + " dilation " +
         std::to_string(c.dilation) + " groups " + std::to_string(c.groups);
}

// Output, input gradient and weight gradient of convolve() against the layer's own forward.
void expect_same_as_declared(const Case& c, bool bias, at::MemoryFormat format) {
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(2 * c.groups, 3 * c.groups, c.kernel)
                             .stride(c.stride)
                             .padding(c.padding)
                             .dilation(c.dilation)
                             .groups(c.groups)
                             .bias(bias));
  const at::Tensor input = torch::randn({3, 2 * c.groups, c.height, c.width}).contiguous(format);
  std::vector<at::Tensor> results[2];
  for (int run = 0; run < 2; ++run) {
    conv->zero_grad();
    const at::Tensor x = input.clone().requires_grad_(true);
    const at::Tensor out = run == 0 ? conv->forward(x) : convolve(*conv, x);
    const at::Tensor probe = torch::linspace(-1, 1, out.numel()).view(out.sizes());
    (out * probe).sum().backward();
    results[run] = {out.contiguous(), x.grad().contiguous(), conv->weight.grad().clone()};
    if (bias) results[run].push_back(conv->bias.grad().clone());
  }
  const char* names[] = {"output", "input gradient", "weight gradient", "bias gradient"};
  for (size_t i = 0; i < results[0].size(); ++i) {
    ASSERT_EQ(results[0][i].sizes(), results[1][i].sizes()) << names[i] << ", " << describe(c);
    EXPECT_TRUE(torch::allclose(results[0][i], results[1][i], 1e-5, 1e-5))
        << names[i] << ", " << describe(c) << ": max difference "
        << (results[0][i] - results[1][i]).abs().max().item<double>();
  }
}

TEST(Convolve, EverySmallGeometryMatchesTheDeclaredConvolution) {
  torch::manual_seed(0);
  int checked = 0;
  for (const auto& [height, width] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {2, 2}, {3, 3}, {1, 4}, {5, 2}}) {
    for (int64_t kernel : {1, 2, 3, 5}) {
      for (int64_t stride : {1, 2}) {
        for (int64_t padding : {0, 1, 2}) {
          for (int64_t dilation : {1, 2}) {
            for (int64_t groups : {1, 2}) {
              const Case c{height, width, kernel, stride, padding, dilation, groups};
              const auto fits = [&](int64_t map) { return map + 2 * padding >= dilation * (kernel - 1) + 1; };
              if (!fits(height) || !fits(width)) continue;
              expect_same_as_declared(c, /*bias=*/(checked % 2) == 0,
                                      (checked % 3) == 0 ? at::MemoryFormat::Contiguous : at::MemoryFormat::ChannelsLast);
              ++checked;
            }
          }
        }
      }
    }
  }
  EXPECT_GT(checked, 300);
}

// The routes that matter in practice (ResNet's last stages at 28-32 px), in both memory formats and with a bias
// (a folded BatchNorm), and under bf16 autocast as training runs them.
TEST(Convolve, ResNetsSmallMapShapesMatchInBothFormatsAndUnderBf16) {
  torch::manual_seed(1);
  for (const Case& c : {Case{1, 1, 3, 1, 1, 1, 1}, Case{2, 2, 3, 2, 1, 1, 1}, Case{1, 1, 1, 1, 0, 1, 1}}) {
    for (bool bias : {false, true}) {
      for (auto format : {at::MemoryFormat::Contiguous, at::MemoryFormat::ChannelsLast}) {
        expect_same_as_declared(c, bias, format);
      }
    }
    torch::nn::Conv2d conv(torch::nn::Conv2dOptions(64, 32, c.kernel).stride(c.stride).padding(c.padding).bias(false));
    const at::Tensor x = torch::randn({8, 64, c.height, c.width}).contiguous(at::MemoryFormat::ChannelsLast);
    const train::AutocastScope autocast("bf16", c10::Device(c10::kCPU));
    const at::Tensor declared = conv->forward(x).to(at::kFloat);
    const at::Tensor ours = convolve(*conv, x);
    EXPECT_EQ(ours.scalar_type(), at::kBFloat16) << describe(c);
    EXPECT_TRUE(torch::allclose(declared, ours.to(at::kFloat), 2e-2, 5e-2)) << describe(c);
  }
}

TEST(Convolve, NonZeroPaddingModesRunTheLayersOwnForward) {
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(2, 3, 3).padding(1).padding_mode(torch::kReflect));
  const at::Tensor x = torch::randn({2, 2, 2, 2});
  EXPECT_TRUE(torch::equal(conv->forward(x), convolve(*conv, x)));
}


// ---- clause 4: an eval-mode BatchNorm folded into the convolution per call ----------------------

struct ConvAndNorm {
  torch::nn::Conv2d conv{nullptr};
  BatchNorm2d norm{nullptr};
};

// Statistics and affine parameters far from (0, 1): folding an identity BatchNorm would prove nothing.
ConvAndNorm make_conv_and_norm(const Case& c, bool bias) {
  ConvAndNorm pair;
  pair.conv = torch::nn::Conv2d(torch::nn::Conv2dOptions(2 * c.groups, 4, c.kernel)
                                    .stride(c.stride)
                                    .padding(c.padding)
                                    .dilation(c.dilation)
                                    .groups(c.groups)
                                    .bias(bias));
  pair.norm = BatchNorm2d(4);
  torch::NoGradGuard no_grad;
  pair.norm->running_mean.copy_(torch::randn({4}));
  pair.norm->running_var.copy_(torch::rand({4}) * 3 + 0.2);
  pair.norm->weight.copy_(torch::randn({4}));
  pair.norm->bias.copy_(torch::randn({4}));
  return pair;
}

// Output and the gradients of input, convolution weight (and bias), gamma and beta.
std::vector<at::Tensor> run_pair(ConvAndNorm& pair, const at::Tensor& input, bool folded_route) {
  pair.conv->zero_grad();
  pair.norm->zero_grad();
  const at::Tensor x = input.clone().requires_grad_(true);
  const at::Tensor out = folded_route ? convolve_normalized(*pair.conv, *pair.norm, x)
                                      : pair.norm->forward(pair.conv->forward(x));
  const at::Tensor probe = torch::linspace(-1, 1, out.numel()).view(out.sizes());
  (out * probe).sum().backward();
  std::vector<at::Tensor> result{out.contiguous(), x.grad().contiguous(), pair.conv->weight.grad().clone(),
                                 pair.norm->weight.grad().clone(), pair.norm->bias.grad().clone()};
  if (pair.conv->bias.defined()) result.push_back(pair.conv->bias.grad().clone());
  return result;
}

// Clause 6: only an unpadded pointwise convolution over a channels-last map, computing a bf16 gradient, on AMX.
TEST(PixelProduct, PaysOnlyForAPointwiseBf16GradientOnAmx) {
  CpuFeatures amx;
  amx.amx_bf16 = amx.avx512_bf16 = amx.avx512_core = true;
  CpuFeatures no_amx = amx;
  no_amx.amx_bf16 = false;
  EXPECT_TRUE(pixel_product_pays(square(1, 1, 0), true, true, amx));
  EXPECT_FALSE(pixel_product_pays(square(1, 1, 0), true, true, no_amx)) << "not measured without AMX";
  EXPECT_FALSE(pixel_product_pays(square(1, 1, 0), false, true, amx)) << "NCHW";
  EXPECT_FALSE(pixel_product_pays(square(1, 1, 0), true, false, amx)) << "fp32 or no gradient";
  EXPECT_TRUE(pixel_product_pays(square(1, 2, 0), true, true, amx)) << "strided: sampled first";
  EXPECT_FALSE(pixel_product_pays(square(1, 2, 0), true, false, amx)) << "strided, no bf16 gradient";
  EXPECT_FALSE(pixel_product_pays(square(1, 1, 1), true, true, amx)) << "padded";
  EXPECT_FALSE(pixel_product_pays(square(3, 1, 1), true, true, amx)) << "3x3";
  EXPECT_FALSE(pixel_product_pays(square(1, 1, 0, 1, /*groups=*/2), true, true, amx)) << "grouped";
}

// The product is the convolution: output and every gradient, with and without a bias, at stride 1 and
// strided (a map whose size the stride does not divide: the last row and column are sampled too).
TEST(PixelProduct, EqualsTheConvolutionAndItsGradients) {
  torch::manual_seed(4);
  for (const std::array<int64_t, 2> stride : {std::array<int64_t, 2>{1, 1}, {2, 2}, {3, 2}}) {
    for (bool bias : {false, true}) {
      torch::nn::Conv2d conv(torch::nn::Conv2dOptions(6, 5, 1).bias(bias).stride(stride));
      const at::Tensor input = torch::randn({3, 6, 4, 7}).contiguous(at::MemoryFormat::ChannelsLast);
      std::vector<at::Tensor> results[2];
      for (int run = 0; run < 2; ++run) {
        conv->zero_grad();
        const at::Tensor x = input.clone().requires_grad_(true);
        const at::Tensor out = run == 0 ? conv->forward(x) : pixel_product(x, conv->weight, conv->bias, stride);
        EXPECT_TRUE(out.is_contiguous(at::MemoryFormat::ChannelsLast));
        const at::Tensor loss = (out * torch::linspace(-1, 1, out.numel()).view(out.sizes())).sum();
        // The input's gradient as it flows back (autograd::grad keeps its layout; a leaf's .grad() would be
        // copied into the leaf's): channels-last, as the gradient it is summed with in a ResNet block.
        const at::Tensor input_gradient = torch::autograd::grad({loss}, {x}, {}, /*retain_graph=*/true)[0];
        if (run == 1) {
          EXPECT_TRUE(input_gradient.is_contiguous(at::MemoryFormat::ChannelsLast));
        }
        loss.backward();
        results[run] = {out.contiguous(), input_gradient.contiguous(), conv->weight.grad().clone()};
        if (bias) results[run].push_back(conv->bias.grad().clone());
      }
      for (size_t i = 0; i < results[0].size(); ++i) {
        EXPECT_TRUE(torch::allclose(results[0][i], results[1][i], 1e-5, 1e-5))
            << "result " << i << ", bias " << bias << ", stride " << stride[0] << "x" << stride[1];
      }
    }
  }
}

// A convolution run as training runs it (bf16 autocast, a weight and an input that train), by the
// declared layer ([0]) and by convolve() ([1]): outputs and gradients in float, and the name of the
// autograd node convolve()'s output came from (the route it took).
struct Bf16TrainingRuns {
  at::Tensor outputs[2], weight_gradients[2], input_gradients[2];
  std::string convolve_node;
};

Bf16TrainingRuns run_bf16_training(torch::nn::Conv2d& conv, const at::Tensor& input) {
  Bf16TrainingRuns runs;
  for (int run = 0; run < 2; ++run) {
    conv->zero_grad();
    const at::Tensor x = input.clone().requires_grad_(true);
    const train::AutocastScope autocast("bf16", c10::Device(c10::kCPU));
    const at::Tensor out = run == 0 ? conv->forward(x) : convolve(*conv, x);
    if (run == 1) runs.convolve_node = out.grad_fn()->name();
    out.to(at::kFloat).square().sum().backward();
    runs.outputs[run] = out.to(at::kFloat);
    runs.weight_gradients[run] = conv->weight.grad().clone();
    runs.input_gradients[run] = x.grad().clone();
  }
  return runs;
}

// As training runs it: convolve() gives the declared output and gradients within bf16's precision, by
// the route this CPU takes, at stride 1 and 2.
TEST(PixelProduct, ConvolveUnderBf16TrainingMatchesTheDeclaredConvolution) {
  torch::manual_seed(5);
  for (int64_t stride : {1, 2}) {
    torch::nn::Conv2d conv(torch::nn::Conv2dOptions(64, 128, 1).stride(stride).bias(false));
    const at::Tensor input = torch::randn({4, 64, 7, 7}).contiguous(at::MemoryFormat::ChannelsLast);
    const Bf16TrainingRuns runs = run_bf16_training(conv, input);
    // The route taken: clause 6's product ends in the permutation back to [N, C, H, W].
    const bool product = host_cpu_features().amx_bf16;
    EXPECT_EQ(runs.convolve_node, product ? "PermuteBackward0" : "ConvolutionBackward0");
    EXPECT_TRUE(torch::allclose(runs.outputs[0], runs.outputs[1], 2e-2, 5e-2)) << "stride " << stride;
    for (const at::Tensor* gradients : {runs.weight_gradients, runs.input_gradients}) {
      EXPECT_TRUE(torch::allclose(gradients[0], gradients[1], 2e-2, 1e-1))
          << "stride " << stride << ": " << (gradients[0] - gradients[1]).abs().max().item<double>() << " of "
          << gradients[0].abs().max().item<double>();
    }
  }
}

// Clause 7: a larger kernel over a channels-last map computing a bf16 gradient on AMX, from 256 channels
// (weight gradient) and 512 (input gradient too).
TEST(ColumnGradients, PayForLargerKernelsOverWideMapsInBf16TrainingOnAmx) {
  CpuFeatures amx;
  amx.amx_bf16 = amx.avx512_bf16 = amx.avx512_core = true;
  CpuFeatures no_amx = amx;
  no_amx.amx_bf16 = false;
  const auto pays = [](ColumnGradients columns, bool weight, bool input) {
    return columns.weight == weight && columns.input == input;
  };
  EXPECT_TRUE(pays(column_gradients_pay(square(3, 1, 1), 128, true, true, amx), false, false)) << "128 channels";
  EXPECT_TRUE(pays(column_gradients_pay(square(3, 2, 1), 256, true, true, amx), true, false)) << "256 channels";
  EXPECT_TRUE(pays(column_gradients_pay(square(3, 1, 1), 512, true, true, amx), true, true)) << "512 channels";
  EXPECT_TRUE(pays(column_gradients_pay(square(3, 1, 1), 512, true, true, no_amx), false, false)) << "no AMX";
  EXPECT_TRUE(pays(column_gradients_pay(square(3, 1, 1), 512, false, true, amx), false, false)) << "NCHW";
  EXPECT_TRUE(pays(column_gradients_pay(square(3, 1, 1), 512, true, false, amx), false, false)) << "no bf16 gradient";
  EXPECT_TRUE(pays(column_gradients_pay(square(1, 1, 0), 512, true, true, amx), false, false)) << "1x1: clause 6";
  EXPECT_TRUE(pays(column_gradients_pay(square(3, 1, 2, 2), 512, true, true, amx), false, false)) << "dilated";
  EXPECT_TRUE(pays(column_gradients_pay(square(3, 1, 1, 1, 2), 512, true, true, amx), false, false)) << "grouped";
}

// The route is the convolution: output and every gradient, in fp32, for strides, paddings, kernels that
// are not square, maps the stride does not divide, with and without a bias, the input's gradient from
// columns or from the convolution's own backward.
TEST(ColumnGradients, EqualTheConvolutionAndItsGradients) {
  torch::manual_seed(6);
  const ConvolutionGeometry geometries[] = {square(3, 1, 1), square(3, 2, 1), square(3, 2, 0),
                                            {{3, 2}, {1, 2}, {1, 0}, {1, 1}, 1}};
  int checked = 0;
  for (const ConvolutionGeometry& geometry : geometries) {
    for (bool bias : {false, true}) {
      for (bool input_from_columns : {false, true}) {
        const at::Tensor input = torch::randn({2, 5, 7, 6}).contiguous(at::MemoryFormat::ChannelsLast);
        const at::Tensor weight_values =
            torch::randn({4, 5, geometry.kernel[0], geometry.kernel[1]}).contiguous(at::MemoryFormat::ChannelsLast);
        const at::Tensor bias_values = bias ? torch::randn({4}) : at::Tensor();
        std::vector<at::Tensor> results[2];
        for (int run = 0; run < 2; ++run) {
          const at::Tensor x = input.clone().requires_grad_(true);
          const at::Tensor w = weight_values.clone().requires_grad_(true);
          const at::Tensor b = bias ? bias_values.clone().requires_grad_(true) : at::Tensor();
          const at::Tensor out =
              run == 0 ? at::conv2d(x, w, b, geometry.stride, geometry.padding)
                       : convolution_with_column_gradients(x, w, b, geometry, input_from_columns);
          (out * torch::linspace(-1, 1, out.numel()).view(out.sizes())).sum().backward();
          results[run] = {out.contiguous(), x.grad().contiguous(), w.grad().contiguous()};
          if (bias) results[run].push_back(b.grad());
        }
        for (size_t i = 0; i < results[0].size(); ++i) {
          ++checked;
          EXPECT_TRUE(torch::allclose(results[0][i], results[1][i], 1e-5, 1e-5))
              << "result " << i << ", kernel " << geometry.kernel[0] << "x" << geometry.kernel[1] << ", stride "
              << geometry.stride[0] << "x" << geometry.stride[1] << ", bias " << bias << ", input from columns "
              << input_from_columns << ": " << (results[0][i] - results[1][i]).abs().max().item<double>();
        }
      }
    }
  }
  EXPECT_EQ(checked, 4 * 2 * 2 * 3 + 4 * 2 * 1);
}

// As training runs it, over 512 channels: convolve() gives the declared output and gradients within
// bf16's precision, by the route this CPU takes.
TEST(ColumnGradients, ConvolveUnderBf16TrainingMatchesTheDeclaredConvolution) {
  torch::manual_seed(7);
  for (int64_t stride : {1, 2}) {
    torch::nn::Conv2d conv(torch::nn::Conv2dOptions(512, 32, 3).stride(stride).padding(1).bias(false));
    conv->weight.data() = conv->weight.data().contiguous(at::MemoryFormat::ChannelsLast);
    const at::Tensor input = torch::randn({2, 512, 7, 7}).contiguous(at::MemoryFormat::ChannelsLast);
    const Bf16TrainingRuns runs = run_bf16_training(conv, input);
    const bool columns = host_cpu_features().amx_bf16;
    EXPECT_EQ(runs.convolve_node.find("ColumnGradientsFunction") != std::string::npos, columns) << runs.convolve_node;
    EXPECT_TRUE(torch::allclose(runs.outputs[0], runs.outputs[1], 2e-2, 5e-2)) << "stride " << stride;
    for (const at::Tensor* gradients : {runs.weight_gradients, runs.input_gradients}) {
      const double error = (gradients[0] - gradients[1]).abs().max().item<double>();
      EXPECT_LT(error, 2e-2 * gradients[0].abs().max().item<double>()) << "stride " << stride;
    }
  }
}

TEST(ConvolveNormalized, AnEvalModeBatchNormIsFoldedWithTheSameOutputAndGradients) {
  torch::manual_seed(2);
  const char* names[] = {"output", "input gradient", "weight gradient", "gamma gradient", "beta gradient",
                         "bias gradient"};
  int checked = 0;
  // Declared, cut-kernel and matrix-product routes; groups; a convolution bias.
  for (const Case& c : {Case{5, 5, 3, 1, 1, 1, 1}, Case{6, 6, 3, 2, 1, 1, 2}, Case{1, 1, 3, 1, 1, 1, 1},
                        Case{2, 2, 3, 2, 1, 1, 1}, Case{4, 4, 1, 1, 0, 1, 1}, Case{1, 1, 1, 1, 0, 1, 1}}) {
    for (bool bias : {false, true}) {
      for (auto format : {at::MemoryFormat::Contiguous, at::MemoryFormat::ChannelsLast}) {
        ConvAndNorm pair = make_conv_and_norm(c, bias);
        pair.norm->eval();
        ASSERT_TRUE(normalizes_with_running_statistics(*pair.norm));
        const at::Tensor input = torch::randn({3, 2 * c.groups, c.height, c.width}).contiguous(format);
        const auto declared = run_pair(pair, input, false);
        const auto folded = run_pair(pair, input, true);
        ASSERT_EQ(declared.size(), folded.size());
        for (size_t i = 0; i < declared.size(); ++i) {
          EXPECT_TRUE(torch::allclose(declared[i], folded[i], 1e-4, 1e-4))
              << names[i] << ", " << describe(c) << ", bias " << bias << ": max difference "
              << (declared[i] - folded[i]).abs().max().item<double>();
        }
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, 24);
}

TEST(ConvolveNormalized, ATrainingModeBatchNormRunsAfterTheConvolutionAndUpdatesItsStatistics) {
  torch::manual_seed(3);
  ConvAndNorm pair = make_conv_and_norm(Case{5, 5, 3, 1, 1, 1, 1}, false);
  pair.norm->train();
  EXPECT_FALSE(normalizes_with_running_statistics(*pair.norm));
  const at::Tensor x = torch::randn({3, 2, 5, 5});
  const at::Tensor mean_before = pair.norm->running_mean.clone();
  const at::Tensor ours = convolve_normalized(*pair.conv, *pair.norm, x);
  EXPECT_FALSE(torch::equal(mean_before, pair.norm->running_mean));
  EXPECT_EQ(pair.norm->num_batches_tracked.item<int64_t>(), 1);
  // Batch statistics: the output is normalised per channel, which a fold of the running ones would not give.
  const at::Tensor centred = (ours - pair.norm->bias.view({1, -1, 1, 1})) / pair.norm->weight.view({1, -1, 1, 1});
  EXPECT_LT(centred.mean({0, 2, 3}).abs().max().item<double>(), 1e-4);
}

TEST(ConvolveNormalized, ALayerMarkedNotToFoldOrAlreadyFoldedRunsAsDeclared) {
  torch::manual_seed(4);
  ConvAndNorm pair = make_conv_and_norm(Case{5, 5, 3, 1, 1, 1, 1}, false);
  pair.norm->eval();
  pair.norm->fold_in_eval = false;
  EXPECT_FALSE(normalizes_with_running_statistics(*pair.norm));
  const at::Tensor x = torch::randn({3, 2, 5, 5});
  EXPECT_TRUE(torch::equal(convolve_normalized(*pair.conv, *pair.norm, x), pair.norm->forward(pair.conv->forward(x))));
  pair.norm->fold_in_eval = true;
  pair.norm->folded = true;  // the inference graph already carries it in the convolution
  EXPECT_FALSE(normalizes_with_running_statistics(*pair.norm));
  EXPECT_TRUE(torch::equal(convolve_normalized(*pair.conv, *pair.norm, x), pair.conv->forward(x)));
}

TEST(ConvolveNormalized, FoldsUnderBf16AutocastAsTrainingRunsIt) {
  torch::manual_seed(5);
  ConvAndNorm pair = make_conv_and_norm(Case{6, 6, 3, 1, 1, 1, 1}, false);
  pair.norm->eval();
  const at::Tensor x = torch::randn({8, 2, 6, 6}).contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor declared = pair.norm->forward(pair.conv->forward(x));
  const train::AutocastScope autocast("bf16", c10::Device(c10::kCPU));
  const at::Tensor ours = convolve_normalized(*pair.conv, *pair.norm, x);
  EXPECT_EQ(ours.scalar_type(), at::kBFloat16);
  const double scale = declared.abs().max().item<double>();
  EXPECT_LT((declared - ours.to(at::kFloat)).abs().max().item<double>(), 2e-2 * scale);
}

}  // namespace
}  // namespace kennel::models

// Each clause of models/normalize_activate.h: when it fuses (1), that its output and running
// statistics are BatchNorm's (2) and its gradients BatchNorm's, the add's and the ReLU's (3), on
// every instruction set this CPU runs (4); and that a ResNet built on it trains as the declared
// layers do.
#include "kennel/models/normalize_activate.h"

#include <gtest/gtest.h>

#include <torch/torch.h>

#include "kennel/models/batch_norm.h"
#include "kennel/util/loop_instruction_set.h"
#include "kennel/models/mobilenet_v2.h"
#include "kennel/models/resnet.h"

namespace kennel::models {
// Named: the unity build puts this file in one translation unit with other tests of models/.
namespace normalize_activate_test {
namespace {

// A BatchNormSync that computes what the layer declares: models use it to run unfused.
class DeclaredBatchNorm : public BatchNormSync {
 public:
  at::Tensor forward(BatchNorm2dImpl& layer, const at::Tensor& input) override {
    return at::batch_norm(input, layer.weight, layer.bias, layer.running_mean, layer.running_var, true,
                          layer.next_average_factor(), layer.options.eps(), false);
  }
};

struct Case {
  int64_t batch, channels, height, width;
  bool residual;
  Rectifier rectifier;
};

constexpr Rectifier kNone = Rectifier::kNone, kRelu = Rectifier::kRelu, kRelu6 = Rectifier::kRelu6;

at::Tensor channels_last(at::Tensor tensor) { return tensor.contiguous(at::MemoryFormat::ChannelsLast); }

BatchNorm2d make_norm(int64_t channels, uint64_t seed, bool affine = true) {
  torch::manual_seed(seed);
  BatchNorm2d norm(torch::nn::BatchNorm2dOptions(channels).affine(affine));
  torch::NoGradGuard no_grad;
  if (affine) {
    norm->weight.uniform_(0.5, 1.5);
    norm->bias.uniform_(-0.5, 0.5);
  }
  norm->running_mean.uniform_(-1, 1);
  norm->running_var.uniform_(0.5, 2);
  return norm;
}

struct Outcome {
  at::Tensor output, grad_input, grad_residual, grad_weight, grad_bias, running_mean, running_var;
};

// One forward and backward of rectify(norm(input) + residual) in `dtype`, fused or as declared, on
// random values first rounded to `values`.
Outcome run(const Case& c, at::ScalarType dtype, bool fused, double offset = 0.0,
            at::ScalarType values = at::kFloat) {
  torch::manual_seed(7);
  const auto random = [&](double scale, double shift) {
    return channels_last((at::randn({c.batch, c.channels, c.height, c.width}) * scale + shift).to(values));
  };
  const at::Tensor input_values = random(2, offset), residual_values = random(1, 0), grad_values = random(1, 0);
  BatchNorm2d norm = make_norm(c.channels, 3);
  if (c.rectifier == kRelu6) {
    torch::NoGradGuard no_grad;
    norm->weight.uniform_(2, 4);  // outputs reach past 6, so ReLU6 clamps at both ends
  }
  at::Tensor input = input_values.to(dtype).requires_grad_();
  at::Tensor residual = c.residual ? residual_values.to(dtype).requires_grad_() : at::Tensor();
  if (!fused) norm->set_sync(std::make_shared<DeclaredBatchNorm>());
  const AfterNormalization after{residual, c.rectifier};
  EXPECT_EQ(can_normalize_fused(*norm, input, after), fused);
  at::Tensor output = normalize_activate(*norm, input, after);
  output.backward(grad_values.to(dtype));
  return {output.detach().to(at::kFloat),
          input.grad().to(at::kFloat),
          c.residual ? residual.grad().to(at::kFloat) : at::Tensor(),
          norm->weight.grad(),
          norm->bias.grad(),
          norm->running_mean.clone(),
          norm->running_var.clone()};
}

void expect_close(const at::Tensor& actual, const at::Tensor& expected, double tolerance, const std::string& what) {
  ASSERT_EQ(actual.defined(), expected.defined()) << what;
  if (!actual.defined()) return;
  const double scale = std::max(1.0, expected.abs().max().item<double>());
  EXPECT_LE((actual - expected).abs().max().item<double>(), tolerance * scale) << what;
}

void expect_same(const Outcome& fused, const Outcome& declared, double tolerance, const std::string& what) {
  expect_close(fused.output, declared.output, tolerance, what + " output");
  expect_close(fused.grad_input, declared.grad_input, tolerance, what + " input gradient");
  expect_close(fused.grad_residual, declared.grad_residual, tolerance, what + " residual gradient");
  expect_close(fused.grad_weight, declared.grad_weight, tolerance, what + " gamma gradient");
  expect_close(fused.grad_bias, declared.grad_bias, tolerance, what + " beta gradient");
  expect_close(fused.running_mean, declared.running_mean, 1e-6, what + " running mean");
  expect_close(fused.running_var, declared.running_var, 1e-5, what + " running variance");
}

const std::vector<Case> kCases = {
    {2, 3, 5, 7, false, kNone},    {2, 3, 5, 7, false, kRelu},     {2, 3, 5, 7, true, kNone},
    {2, 3, 5, 7, true, kRelu},     {4, 17, 9, 9, true, kRelu},     {3, 64, 8, 8, false, kRelu},
    {8, 100, 11, 13, true, kRelu}, {1, 256, 2, 1, true, kRelu},    {32, 40, 1, 1, false, kRelu},
    {4, 24, 6, 6, false, kRelu6},  {4, 24, 6, 6, true, kRelu6},    {8, 33, 5, 5, false, kRelu6},
};

std::string name_of(const Case& c) {
  return "[" + std::to_string(c.batch) + "," + std::to_string(c.channels) + "," + std::to_string(c.height) + "," +
         std::to_string(c.width) + "]" + (c.residual ? " +residual" : "") +
         (c.rectifier == kRelu ? " relu" : c.rectifier == kRelu6 ? " relu6" : "");
}

class KernelsTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    original_ = fused_batchnorm_kernels();
    if (!choose_loop_instruction_set(GetParam())) GTEST_SKIP() << GetParam() << " does not run on this CPU";
  }
  void TearDown() override { choose_loop_instruction_set(original_); }
  std::string original_;
};

// Clauses 2 and 3 in fp32: the declared operations' results up to the order of summation.
TEST_P(KernelsTest, Fp32EqualsTheDeclaredOperations) {
  for (const Case& c : kCases) expect_same(run(c, at::kFloat, true), run(c, at::kFloat, false), 2e-5, name_of(c));
}

// In bf16 it computes in float and rounds once: the declared operations in fp32 on the same
// bf16 values, within one bf16 rounding. (The declared bf16 path also rounds between the
// BatchNorm and the add, which moves the ReLU's mask wherever that rounding crosses zero.)
TEST_P(KernelsTest, Bfloat16IsTheFp32ResultRoundedOnce) {
  for (const Case& c : kCases) {
    expect_same(run(c, at::kBFloat16, true, 0.0, at::kBFloat16), run(c, at::kFloat, false, 0.0, at::kBFloat16),
                1e-2, name_of(c));
  }
}

// Clause 2's shift: a mean far from zero against a small spread keeps the variance.
TEST_P(KernelsTest, VarianceHoldsWhenTheMeanDwarfsTheSpread) {
  const Case c{8, 19, 7, 7, false, kRelu};
  const Outcome fused = run(c, at::kFloat, true, 1000.0);
  const Outcome declared = run(c, at::kFloat, false, 1000.0);
  expect_close(fused.output, declared.output, 1e-3, "output");
  expect_close(fused.running_var, declared.running_var, 1e-4, "running variance");
}

INSTANTIATE_TEST_SUITE_P(EveryInstructionSet, KernelsTest, ::testing::Values("AVX-512", "AVX2", "baseline x86-64"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& ch : name) ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           return name;
                         });

// Clause 4: the chosen set is one this CPU runs, and naming an unknown set chooses nothing.
TEST(NormalizeActivate, NamesTheKernelsItChose) {
  const std::string chosen = fused_batchnorm_kernels();
  EXPECT_TRUE(chosen == "AVX-512" || chosen == "AVX2" || chosen == "baseline x86-64") << chosen;
  EXPECT_FALSE(choose_loop_instruction_set("SSE9"));
  EXPECT_EQ(fused_batchnorm_kernels(), chosen);
}

// Clause 1: everything else runs as declared, and gives the declared result.
TEST(NormalizeActivate, RunsAsDeclaredOutsideItsCase) {
  BatchNorm2d norm = make_norm(6, 1);
  const at::Tensor map = channels_last(at::randn({2, 6, 4, 4}));
  EXPECT_TRUE(can_normalize_fused(*norm, map, {}));
  EXPECT_FALSE(can_normalize_fused(*norm, map.contiguous(), {})) << "NCHW";
  EXPECT_FALSE(can_normalize_fused(*norm, map.to(at::kDouble), {})) << "double";
  EXPECT_FALSE(can_normalize_fused(*norm, map.slice(0, 0, 1).slice(2, 0, 1).slice(3, 0, 1), {})) << "one value";
  EXPECT_FALSE(can_normalize_fused(*norm, map, {map.contiguous(), kRelu})) << "residual in another layout";
  EXPECT_FALSE(can_normalize_fused(*norm, map, {map.to(at::kBFloat16), kRelu})) << "residual in another dtype";
  norm->eval();
  EXPECT_FALSE(can_normalize_fused(*norm, map, {})) << "running statistics";
  const at::Tensor declared = at::batch_norm(map, norm->weight, norm->bias, norm->running_mean, norm->running_var,
                                             false, 0.1, 1e-5, false).relu();
  EXPECT_TRUE(at::allclose(normalize_activate(*norm, map, {.rectifier = kRelu}), declared));
  norm->train();
  norm->set_sync(std::make_shared<DeclaredBatchNorm>());
  EXPECT_FALSE(can_normalize_fused(*norm, map, {})) << "synchronized";
}

// A BatchNorm without affine parameters normalises only, and gives no parameter gradients.
TEST(NormalizeActivate, WithoutAffineParameters) {
  BatchNorm2d fused = make_norm(5, 2, /*affine=*/false), declared = make_norm(5, 2, /*affine=*/false);
  declared->set_sync(std::make_shared<DeclaredBatchNorm>());
  const at::Tensor values = channels_last(at::randn({3, 5, 6, 6}));
  at::Tensor a = values.clone().requires_grad_(), b = values.clone().requires_grad_();
  normalize_activate(*fused, a, {.rectifier = kRelu}).sum().backward();
  normalize_activate(*declared, b, {.rectifier = kRelu}).sum().backward();
  EXPECT_TRUE(at::allclose(a.grad(), b.grad(), 1e-5, 1e-5));
  EXPECT_TRUE(at::allclose(fused->running_var, declared->running_var, 1e-6, 1e-6));
}

// The promise that matters: a backbone in training mode, channels-last, computes the declared
// network's outputs, gradients and running statistics (ResNet: ReLU and residual adds; MobileNetV2:
// ReLU6 and shortcuts without a rectifier).
template <typename Model>
void expect_trains_as_the_declared_layers(Model fused, Model declared, double tolerance) {
  {
    torch::NoGradGuard no_grad;
    auto target = declared->named_parameters();
    for (const auto& item : fused->named_parameters()) target[item.key()].copy_(item.value());
    fused->eval();  // dropout off on both sides; BatchNorm back in training mode below
    declared->eval();
    for (auto& module : fused->modules()) {
      if (module->template as<BatchNorm2dImpl>()) module->train();
    }
    for (auto& module : declared->modules()) {
      if (module->template as<BatchNorm2dImpl>()) module->train();
    }
  }
  set_batchnorm_sync(*declared, std::make_shared<DeclaredBatchNorm>());
  const at::Tensor images = channels_last(at::randn({4, 3, 40, 40}));
  const at::Tensor fused_logits = fused->forward(images);
  const at::Tensor declared_logits = declared->forward(images);
  expect_close(fused_logits, declared_logits, tolerance, "logits");
  fused_logits.square().sum().backward();
  declared_logits.square().sum().backward();
  auto declared_parameters = declared->named_parameters();
  for (const auto& item : fused->named_parameters()) {
    expect_close(item.value().grad(), declared_parameters[item.key()].grad(), 10 * tolerance, item.key());
  }
  auto declared_buffers = declared->named_buffers();
  for (const auto& item : fused->named_buffers()) {
    if (item.value().is_floating_point()) {
      expect_close(item.value(), declared_buffers[item.key()], tolerance, item.key());
    }
  }
}

TEST(NormalizeActivate, ResNetTrainsAsTheDeclaredLayers) {
  torch::manual_seed(11);
  expect_trains_as_the_declared_layers(ResNet(ResNetOptions{.depth = 18, .num_classes = 4}),
                                       ResNet(ResNetOptions{.depth = 18, .num_classes = 4}), 1e-4);
}

TEST(NormalizeActivate, MobileNetV2TrainsAsTheDeclaredLayers) {
  torch::manual_seed(12);
  expect_trains_as_the_declared_layers(MobileNetV2(MobileNetV2Options{.num_classes = 4}),
                                       MobileNetV2(MobileNetV2Options{.num_classes = 4}), 1e-4);
}

}  // namespace
}  // namespace normalize_activate_test
}  // namespace kennel::models

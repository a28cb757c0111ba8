// Each clause of train/fused_adam.h's rule: LibTorch's Adam and AdamW results (3) on every
// instruction set (4), its own operations where the one pass does not apply (2), and state that
// moves between the fused and LibTorch's optimizers through a saved archive (1).
#include "kennel/train/fused_adam.h"

#include <gtest/gtest.h>

#include <cctype>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "kennel/train/schedule.h"
#include "kennel/util/loop_instruction_set.h"

namespace kennel::train {
namespace {

// A conv weight in channels-last, a bias, a matrix whose size no vector width divides.
std::vector<at::Tensor> make_parameters(at::ScalarType dtype = at::kFloat) {
  torch::manual_seed(11);
  return {torch::randn({8, 3, 3, 3}, dtype).contiguous(at::MemoryFormat::ChannelsLast).requires_grad_(true),
          torch::randn({5}, dtype).requires_grad_(true), torch::randn({37, 11}, dtype).requires_grad_(true)};
}

std::vector<at::Tensor> clones(const std::vector<at::Tensor>& parameters) {
  std::vector<at::Tensor> copies;
  for (const at::Tensor& p : parameters) copies.push_back(p.detach().clone().requires_grad_(true));
  return copies;
}

// `steps` steps with the same gradients (seeded by step) on both parameter lists.
void run_steps(torch::optim::Optimizer& optimizer, std::vector<at::Tensor>& parameters, int first_step, int steps) {
  for (int step = first_step; step < first_step + steps; ++step) {
    torch::manual_seed(100 + step);
    for (at::Tensor& p : parameters) p.mutable_grad() = torch::randn_like(p);
    optimizer.step();
  }
}

void expect_same(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b, double tolerance,
                 const std::string& what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::allclose(a[i], b[i], tolerance, tolerance))
        << what << ", parameter " << i << ": max difference " << (a[i] - b[i]).abs().max().item<double>();
  }
}

class FusedAdamKernelsTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    original_ = instruction_set_name(loop_instruction_set());
    if (!choose_loop_instruction_set(GetParam())) GTEST_SKIP() << GetParam() << " does not run on this CPU";
  }
  void TearDown() override { choose_loop_instruction_set(original_); }
  std::string original_;
};

// Five steps of `Fused` and of LibTorch's `Declared` from the same parameters and gradients, with and
// without weight decay: the same parameters.
template <typename Fused, typename Declared, typename Options>
void expect_five_steps_like_libtorch(const std::string& name) {
  for (double weight_decay : {0.0, 0.1}) {
    std::vector<at::Tensor> fused_parameters = make_parameters(), declared_parameters = clones(fused_parameters);
    const auto options = Options(1e-2).weight_decay(weight_decay);
    Fused fused(fused_parameters, options);
    Declared declared(declared_parameters, options);
    run_steps(fused, fused_parameters, 0, 5);
    run_steps(declared, declared_parameters, 0, 5);
    expect_same(fused_parameters, declared_parameters, 1e-6, name + ", weight decay " + std::to_string(weight_decay));
  }
}

// Clause 3 for Adam's coupled decay.
TEST_P(FusedAdamKernelsTest, AdamEqualsLibTorch) {
  expect_five_steps_like_libtorch<FusedAdam, torch::optim::Adam, torch::optim::AdamOptions>("Adam");
}

// Clause 3 for AdamW's decoupled decay.
TEST_P(FusedAdamKernelsTest, AdamWEqualsLibTorch) {
  expect_five_steps_like_libtorch<FusedAdamW, torch::optim::AdamW, torch::optim::AdamWOptions>("AdamW");
}

INSTANTIATE_TEST_SUITE_P(EveryInstructionSet, FusedAdamKernelsTest,
                         ::testing::Values("AVX-512", "AVX2", "baseline x86-64"), [](const auto& info) {
                           std::string name = info.param;
                           for (char& ch : name) ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           return name;
                         });

// Clause 2: double parameters and amsgrad take LibTorch's own operations, with its results.
TEST(FusedAdam, ParametersThePassDoesNotTakeRunAsLibTorchRunsThem) {
  {
    std::vector<at::Tensor> fused_parameters = make_parameters(at::kDouble),
                            declared_parameters = clones(fused_parameters);
    FusedAdam fused(fused_parameters, torch::optim::AdamOptions(1e-2).weight_decay(0.1));
    torch::optim::Adam declared(declared_parameters, torch::optim::AdamOptions(1e-2).weight_decay(0.1));
    run_steps(fused, fused_parameters, 0, 3);
    run_steps(declared, declared_parameters, 0, 3);
    expect_same(fused_parameters, declared_parameters, 0, "double");
  }
  {
    std::vector<at::Tensor> fused_parameters = make_parameters(), declared_parameters = clones(fused_parameters);
    FusedAdamW fused(fused_parameters, torch::optim::AdamWOptions(1e-2).amsgrad(true));
    torch::optim::AdamW declared(declared_parameters, torch::optim::AdamWOptions(1e-2).amsgrad(true));
    run_steps(fused, fused_parameters, 0, 3);
    run_steps(declared, declared_parameters, 0, 3);
    expect_same(fused_parameters, declared_parameters, 0, "amsgrad");
  }
}

// Clause 1: the state saved by either optimizer loads into the other and the steps go on the same.
TEST(FusedAdam, StateMovesToAndFromLibTorchsAdam) {
  for (bool fused_first : {true, false}) {
    std::vector<at::Tensor> first_parameters = make_parameters();
    std::unique_ptr<torch::optim::Optimizer> first =
        fused_first ? std::unique_ptr<torch::optim::Optimizer>(std::make_unique<FusedAdam>(first_parameters))
                    : std::make_unique<torch::optim::Adam>(first_parameters);
    run_steps(*first, first_parameters, 0, 2);
    std::stringstream archive;
    torch::save(*first, archive);

    std::vector<at::Tensor> second_parameters = clones(first_parameters);
    std::unique_ptr<torch::optim::Optimizer> second =
        fused_first ? std::unique_ptr<torch::optim::Optimizer>(std::make_unique<torch::optim::Adam>(second_parameters))
                    : std::make_unique<FusedAdam>(second_parameters);
    torch::load(*second, archive);
    run_steps(*first, first_parameters, 2, 3);
    run_steps(*second, second_parameters, 2, 3);
    expect_same(first_parameters, second_parameters, 1e-6,
                fused_first ? "fused, then LibTorch" : "LibTorch, then fused");
  }
}

// What the trainer builds: the fused optimizers for adam and adamw.
TEST(FusedAdam, MakeOptimizerBuildsTheFusedOnes) {
  std::vector<at::Tensor> parameters = make_parameters();
  OptimizerSpec spec;
  spec.kind = "adam";
  EXPECT_NE(dynamic_cast<FusedAdam*>(make_optimizer(parameters, spec).get()), nullptr);
  spec.kind = "adamw";
  EXPECT_NE(dynamic_cast<FusedAdamW*>(make_optimizer(parameters, spec).get()), nullptr);
}

}  // namespace
}  // namespace kennel::train

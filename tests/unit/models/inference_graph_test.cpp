// Every architecture trains a few steps at every CPU precision (frozen and
// unfrozen) and then runs inference at it; BatchNorm folding keeps fp32
// logits to 1e-4 of the unfolded model's.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "kennel/models/batch_norm.h"
#include "kennel/models/classifier.h"
#include "kennel/models/convolution.h"
#include "kennel/models/inference_graph.h"
#include "kennel/train/autocast.h"

namespace kennel::models {
namespace {

Classifier build(const std::string& arch, const std::string& freeze, uint64_t seed = 0) {
  torch::manual_seed(seed);
  ModelSpec spec;
  spec.arch = arch;
  spec.num_classes = 3;
  spec.freeze = freeze;
  auto classifier = build_classifier(spec);
  EXPECT_TRUE(classifier.ok()) << classifier.status().to_string();
  return classifier.value();
}

// Running statistics and affine parameters far from (0, 1): folding an identity BatchNorm would prove nothing.
void randomise_batchnorm(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (const auto& module : model.modules()) {
    if (auto* bn = module->as<BatchNorm2dImpl>()) {
      bn->running_mean.uniform_(-0.5, 0.5);
      bn->running_var.uniform_(0.5, 2.0);
      bn->weight.uniform_(0.5, 1.5);
      bn->bias.uniform_(-0.2, 0.2);
    }
  }
}

// Two steps of SGD at `precision` under autocast (fp32 master weights), as the trainer runs them.
void train_steps(Classifier& classifier, const std::string& precision) {
  classifier->train();
  classifier->to(at::MemoryFormat::ChannelsLast);
  torch::optim::SGD optimizer(classifier->trainable_parameters(), torch::optim::SGDOptions(0.01));
  const at::Tensor images = torch::randn({4, 3, 32, 32}).contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor labels = torch::tensor({0, 1, 2, 0}, torch::kLong);
  for (int step = 0; step < 2; ++step) {
    optimizer.zero_grad();
    at::Tensor logits;
    {
      const train::AutocastScope autocast(precision, c10::Device(c10::kCPU));
      logits = classifier->forward(images);
    }
    const at::Tensor loss = torch::nn::functional::cross_entropy(logits.to(at::kFloat), labels);
    loss.backward();
    optimizer.step();
    ASSERT_TRUE(std::isfinite(loss.item<double>()));
  }
  for (const auto& parameter : classifier->parameters()) EXPECT_EQ(parameter.scalar_type(), at::kFloat);
}

TEST(InferenceGraphTest, EveryArchTrainsAndInfersAtEveryPrecisionFrozenAndNot) {
  for (const std::string& arch : known_architectures()) {
    for (const std::string precision : {"fp32", "bf16"}) {
      for (const std::string freeze : {"backbone", "none"}) {
        SCOPED_TRACE(arch + " " + precision + " freeze=" + freeze);
        Classifier classifier = build(arch, freeze);
        train_steps(classifier, precision);
        const at::ScalarType dtype = precision == "bf16" ? at::kBFloat16 : at::kFloat;
        prepare_inference_graph(classifier, {.fold_batchnorm = true, .dtype = dtype, .channels_last = true});
        const c10::InferenceMode inference;
        const at::Tensor logits =
            classifier->forward(torch::randn({2, 3, 32, 32}).to(dtype).contiguous(at::MemoryFormat::ChannelsLast));
        EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, 3}));
        EXPECT_EQ(logits.scalar_type(), dtype);
        EXPECT_TRUE(logits.to(at::kFloat).isfinite().all().item<bool>());
      }
    }
  }
}

TEST(InferenceGraphTest, FoldedFp32LogitsEqualTheUnfoldedModelsTo1e4) {
  for (const std::string arch : {"resnet18", "resnet50", "mobilenet_v2"}) {
    SCOPED_TRACE(arch);
    Classifier reference = build(arch, "backbone", 7);
    Classifier folded = build(arch, "backbone", 7);
    torch::manual_seed(11);
    randomise_batchnorm(*reference);
    torch::manual_seed(11);
    randomise_batchnorm(*folded);
    prepare_inference_graph(reference, {.fold_batchnorm = false});
    const int layers = prepare_inference_graph(folded, {.fold_batchnorm = true});
    int batchnorms = 0;
    for (const auto& module : folded->modules()) batchnorms += module->as<BatchNorm2dImpl>() != nullptr;
    EXPECT_EQ(layers, batchnorms) << "every BatchNorm follows its convolution";
    // The reference runs each BatchNorm after its convolution, not folded per call either
    // (models/convolution.h, clause 4): otherwise this would compare a fold with a fold.
    for (const auto& module : reference->modules()) {
      if (const auto* bn = module->as<BatchNorm2dImpl>()) {
        ASSERT_FALSE(normalizes_with_running_statistics(*bn));
      }
    }
    const c10::InferenceMode inference;
    const at::Tensor images = torch::randn({3, 3, 64, 64}).contiguous(at::MemoryFormat::ChannelsLast);
    const at::Tensor expected = reference->forward(images);
    const at::Tensor actual = folded->forward(images);
    EXPECT_LT((actual - expected).abs().max().item<double>(), 1e-4);
  }
}

TEST(InferenceGraphTest, Bf16LogitsAgreeWithFp32OnTheArgmax) {
  Classifier reference = build("resnet18", "backbone", 3);
  Classifier low = build("resnet18", "backbone", 3);
  prepare_inference_graph(reference, {});
  prepare_inference_graph(low, {.dtype = at::kBFloat16});
  const c10::InferenceMode inference;
  torch::manual_seed(5);
  const at::Tensor images = torch::randn({16, 3, 32, 32}).contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor expected = reference->forward(images);
  const at::Tensor actual = low->forward(images.to(at::kBFloat16)).to(at::kFloat);
  // bf16 keeps 8 bits of mantissa: logits move by a few percent of their spread, never wildly.
  EXPECT_LT((actual - expected).abs().max().item<double>(), 0.1 * expected.abs().max().item<double>() + 0.05);
}

}  // namespace
}  // namespace kennel::models

// Classifier = backbone + head: names as torchvision's, freezing, frozen
// BatchNorm staying in eval mode, and loading state dicts with a new head.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "kennel/models/activation_probe.h"
#include "kennel/models/classifier.h"

namespace kennel::models {
namespace {

Classifier build(const std::string& arch, int64_t classes, const std::string& freeze = "backbone",
                 std::vector<int64_t> head = {}) {
  ModelSpec spec;
  spec.arch = arch;
  spec.num_classes = classes;
  spec.freeze = freeze;
  spec.head_hidden = std::move(head);
  auto classifier = build_classifier(spec);
  EXPECT_TRUE(classifier.ok()) << classifier.status().to_string();
  return classifier.value();
}

std::vector<std::string> names_of(const StateDict& state) {
  std::vector<std::string> names;
  for (const auto& named : state) names.push_back(named.name);
  return names;
}

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

struct RecordingObserver : ActivationObserver {
  void observe(const std::string& layer, ActivationKind kind, const at::Tensor& pre) override {
    layers.push_back(layer);
    kinds.push_back(kind);
    negatives += pre.lt(0).sum().item<int64_t>();
  }
  std::vector<std::string> layers;
  std::vector<ActivationKind> kinds;
  int64_t negatives = 0;
};

TEST(ClassifierTest, BackbonesShowOneActivationPerStageToAnInstalledObserver) {
  const torch::NoGradGuard no_grad;
  const at::Tensor images = torch::randn({2, 3, 32, 32});
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"resnet18", {"stem", "layer1", "layer2", "layer3", "layer4"}},
      {"resnet50", {"stem", "layer1", "layer2", "layer3", "layer4"}},
      {"mobilenet_v2",
       {"stem", "features.1", "features.2-3", "features.4-6", "features.7-13", "features.14-18"}}};
  for (const auto& [arch, expected] : cases) {
    Classifier classifier = build(arch, 3);
    classifier->eval();
    RecordingObserver observer;
    {
      const ScopedActivationObserver scope(&observer);
      classifier->forward(images);
    }
    EXPECT_EQ(observer.layers, expected) << arch;
    EXPECT_GT(observer.negatives, 0) << arch << ": the observer must see the input before the activation";
    EXPECT_EQ(observer.kinds.front(), arch == "mobilenet_v2" ? ActivationKind::kRelu6 : ActivationKind::kRelu);
    // Uninstalled: nothing more is seen.
    classifier->forward(images);
    EXPECT_EQ(observer.layers.size(), expected.size());
  }
}

TEST(ClassifierTest, StateDictUsesTorchvisionNames) {
  const auto resnet = names_of(state_dict_of(*build("resnet18", 3)));
  EXPECT_EQ(resnet.front(), "conv1.weight");
  EXPECT_TRUE(contains(resnet, "layer4.1.bn2.num_batches_tracked"));
  EXPECT_TRUE(contains(resnet, "fc.weight"));
  const auto hidden = names_of(state_dict_of(*build("resnet18", 3, "backbone", {16})));
  EXPECT_TRUE(contains(hidden, "fc.0.weight"));
  EXPECT_TRUE(contains(hidden, "fc.3.bias"));
  const auto mobilenet = names_of(state_dict_of(*build("mobilenet_v2", 3)));
  EXPECT_TRUE(contains(mobilenet, "features.18.1.running_var"));
  EXPECT_TRUE(contains(mobilenet, "classifier.1.weight"));
}

TEST(ClassifierTest, ShapesOfFeaturesAndLogits) {
  Classifier model = build("resnet18", 5);
  model->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor images = torch::randn({2, 3, 32, 32});
  EXPECT_EQ(model->features(images).sizes(), (std::vector<int64_t>{2, 512}));
  EXPECT_EQ(model->forward(images).sizes(), (std::vector<int64_t>{2, 5}));
  EXPECT_TRUE(torch::allclose(model->head_forward(model->features(images)), model->forward(images)));
  // Channels-last gives the same answer.
  model->to(at::MemoryFormat::ChannelsLast);
  EXPECT_TRUE(torch::allclose(model->forward(images.contiguous(at::MemoryFormat::ChannelsLast)),
                              model->forward(images), 1e-4, 1e-5));
}

TEST(ClassifierTest, FreezingChoosesTrainableParametersAndKeepsFrozenBatchNormInEval) {
  Classifier frozen = build("resnet18", 4, "backbone");
  EXPECT_EQ(frozen->trainable_parameters().size(), 2u);  // fc.weight, fc.bias
  Classifier all = build("resnet18", 4, "none");
  EXPECT_EQ(all->trainable_parameters().size(), all->parameters().size());
  Classifier last = build("resnet18", 4, "last:1");
  const size_t last_count = last->trainable_parameters().size();
  EXPECT_GT(last_count, 2u);
  EXPECT_LT(last_count, all->parameters().size());

  // A frozen backbone's BatchNorm running statistics do not move in train mode.
  frozen->train();
  auto bn_mean = [](Classifier& model) {
    for (const auto& named : state_dict_of(*model)) {
      if (named.name == "bn1.running_mean") return named.tensor.clone();
    }
    return at::Tensor();
  };
  const at::Tensor before = bn_mean(frozen);
  frozen->forward(torch::randn({4, 3, 32, 32}) * 3 + 1);
  EXPECT_TRUE(torch::equal(before, bn_mean(frozen)));
  // Unfrozen BatchNorm does learn statistics.
  all->train();
  const at::Tensor all_before = bn_mean(all);
  all->forward(torch::randn({4, 3, 32, 32}) * 3 + 1);
  EXPECT_FALSE(torch::equal(all_before, bn_mean(all)));
}

TEST(ClassifierTest, BadSpecsNameTheField) {
  ModelSpec spec;
  spec.num_classes = 3;
  spec.arch = "resnet51";
  EXPECT_NE(spec.validate().message().find("resnet51"), std::string::npos);
  spec.arch = "resnet18";
  spec.freeze = "last:9";
  EXPECT_NE(spec.validate().message().find("9"), std::string::npos) << spec.validate().message();
  spec.freeze = "backbone";
  spec.num_classes = 0;
  EXPECT_FALSE(spec.validate().ok());
  spec.num_classes = 3;
  spec.keras_compat = true;
  EXPECT_NE(spec.validate().message().find("mobilenet_v2"), std::string::npos);
}

TEST(ClassifierTest, ANewHeadDropsTheFilesHeadWithANotice) {
  Classifier source = build("resnet18", 10);
  StateDict state;
  for (const auto& named : state_dict_of(*source)) state.push_back({named.name, named.tensor.clone()});

  Classifier target = build("resnet18", 3);
  // Strict loading refuses the 10-class head, naming it.
  auto strict = apply_state_dict(target, state);
  ASSERT_FALSE(strict.ok());
  EXPECT_NE(strict.status().message().find("fc.weight"), std::string::npos);

  LoadOptions options;
  options.drop_mismatched_head = true;
  auto report = apply_state_dict(target, state, options);
  ASSERT_TRUE(report.ok()) << report.status().to_string();
  EXPECT_FALSE(report->dropped.empty());
  EXPECT_FALSE(report->notices.empty());
  for (const auto& named : state_dict_of(*target)) {
    if (named.name == "layer1.0.conv1.weight") {
      for (const auto& original : state) {
        if (original.name == named.name) {
          EXPECT_TRUE(torch::equal(original.tensor, named.tensor));
        }
      }
    }
  }
}

}  // namespace
}  // namespace kennel::models

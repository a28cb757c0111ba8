#include "kennel/models/resnet.h"

#include <array>

#include <torch/nn/init.h>

#include "kennel/models/activation_probe.h"
#include "kennel/models/convolution.h"
#include "kennel/models/max_pool.h"

namespace kennel::models {

namespace {

namespace nn = torch::nn;

nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
}

// torchvision's `downsample`: Sequential(conv1x1(stride), BatchNorm2d), or none
// when the block keeps both the resolution and the channel count.
nn::Sequential make_downsample(int64_t in, int64_t out, int64_t stride) {
  if (stride == 1 && in == out) return nullptr;
  return nn::Sequential(conv(in, out, 1, stride), BatchNorm2d(out));
}

at::Tensor shortcut(nn::Sequential& downsample, const at::Tensor& x) {
  if (!downsample) return x;
  return convolve_normalized(*downsample->ptr<nn::Conv2dImpl>(0), *downsample->ptr<BatchNorm2dImpl>(1), x);
}

// A block's end: relu(norm(conv(x)) + shortcut); the block's tap sees the sum before the ReLU.
at::Tensor add_shortcut_activated(const std::string& tap, nn::Conv2dImpl& conv, BatchNorm2dImpl& norm,
                                  const at::Tensor& x, const at::Tensor& shortcut) {
  return convolve_normalized_tapped(tap, ActivationKind::kRelu, conv, norm, x,
                                    {.residual = shortcut, .rectifier = Rectifier::kRelu});
}

class BasicBlockImpl : public nn::Module {
 public:
  static constexpr int64_t kExpansion = 1;

  BasicBlockImpl(int64_t in, int64_t planes, int64_t stride) : nn::Module("BasicBlock") {
    conv1_ = register_module("conv1", conv(in, planes, 3, stride));
    bn1_ = register_module("bn1", BatchNorm2d(planes));
    conv2_ = register_module("conv2", conv(planes, planes, 3, 1));
    bn2_ = register_module("bn2", BatchNorm2d(planes));
    if (auto downsample = make_downsample(in, planes, stride)) {
      downsample_ = register_module("downsample", downsample);
    }
  }

  at::Tensor forward(const at::Tensor& x) {
    at::Tensor out = convolve_normalized(*conv1_, *bn1_, x, {.rectifier = Rectifier::kRelu});
    return add_shortcut_activated(tap_, *conv2_, *bn2_, out, shortcut(downsample_, x));
  }

  // The stage's name when this block's output ReLU is the stage's activation tap.
  void set_activation_tap(std::string layer) { tap_ = std::move(layer); }

 private:
  std::string tap_;
  nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  BatchNorm2d bn1_{nullptr}, bn2_{nullptr};
  nn::Sequential downsample_{nullptr};
};

class BottleneckImpl : public nn::Module {
 public:
  static constexpr int64_t kExpansion = 4;

  // torchvision v1.5: the stride sits on the 3x3 conv2, which keeps more
  // information than striding the first 1x1 (v1) and is what its weights expect.
  BottleneckImpl(int64_t in, int64_t planes, int64_t stride) : nn::Module("Bottleneck") {
    const int64_t out = planes * kExpansion;
    conv1_ = register_module("conv1", conv(in, planes, 1, 1));
    bn1_ = register_module("bn1", BatchNorm2d(planes));
    conv2_ = register_module("conv2", conv(planes, planes, 3, stride));
    bn2_ = register_module("bn2", BatchNorm2d(planes));
    conv3_ = register_module("conv3", conv(planes, out, 1, 1));
    bn3_ = register_module("bn3", BatchNorm2d(out));
    if (auto downsample = make_downsample(in, out, stride)) {
      downsample_ = register_module("downsample", downsample);
    }
  }

  at::Tensor forward(const at::Tensor& x) {
    at::Tensor out = convolve_normalized(*conv1_, *bn1_, x, {.rectifier = Rectifier::kRelu});
    out = convolve_normalized(*conv2_, *bn2_, out, {.rectifier = Rectifier::kRelu});
    return add_shortcut_activated(tap_, *conv3_, *bn3_, out, shortcut(downsample_, x));
  }

  void set_activation_tap(std::string layer) { tap_ = std::move(layer); }

 private:
  std::string tap_;
  nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr};
  BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, bn3_{nullptr};
  nn::Sequential downsample_{nullptr};
};

struct DepthConfig {
  int64_t depth;
  bool bottleneck;
  std::array<int64_t, 4> blocks;
};
constexpr std::array<DepthConfig, 5> kDepths = {{
    {18, false, {2, 2, 2, 2}},
    {34, false, {3, 4, 6, 3}},
    {50, true, {3, 4, 6, 3}},
    {101, true, {3, 4, 23, 3}},
    {152, true, {3, 8, 36, 3}},
}};

const DepthConfig* find_depth(int64_t depth) {
  for (const auto& config : kDepths) {
    if (config.depth == depth) return &config;
  }
  return nullptr;
}

template <typename Block>
nn::Sequential make_layer(const std::string& name, int64_t& in, int64_t planes, int64_t blocks, int64_t stride) {
  nn::Sequential layer;
  for (int64_t i = 0; i < blocks; ++i) {
    auto block = std::make_shared<Block>(in, planes, i == 0 ? stride : 1);
    if (i == blocks - 1) block->set_activation_tap(name);
    layer->push_back(block);
    in = planes * Block::kExpansion;
  }
  return layer;
}

}  // namespace

Status ResNetOptions::validate() const {
  if (find_depth(depth) == nullptr) {
    return invalid_argument("ResNet depth {} is not supported: use 18, 34, 50, 101 or 152", depth);
  }
  if (num_classes < 0) {
    return invalid_argument("ResNet num_classes is {}: use 0 (no fc) or a positive class count", num_classes);
  }
  return {};
}

ResNetImpl::ResNetImpl(const ResNetOptions& options) : BackboneImpl("ResNet"), options_(options) {
  if (Status status = options_.validate(); !status.ok()) throw Error(status);
  const DepthConfig& config = *find_depth(options_.depth);

  conv1_ = register_module(
      "conv1", nn::Conv2d(nn::Conv2dOptions(3, 64, 7).stride(2).padding(3).bias(false)));
  bn1_ = register_module("bn1", BatchNorm2d(64));
  int64_t channels = 64;
  auto layer = [&](const std::string& name, int64_t planes, int64_t blocks, int64_t stride) {
    return config.bottleneck ? make_layer<BottleneckImpl>(name, channels, planes, blocks, stride)
                             : make_layer<BasicBlockImpl>(name, channels, planes, blocks, stride);
  };
  layer1_ = register_module("layer1", layer("layer1", 64, config.blocks[0], 1));
  layer2_ = register_module("layer2", layer("layer2", 128, config.blocks[1], 2));
  layer3_ = register_module("layer3", layer("layer3", 256, config.blocks[2], 2));
  layer4_ = register_module("layer4", layer("layer4", 512, config.blocks[3], 2));
  feature_dim_ = channels;
  if (options_.num_classes > 0) {
    fc_ = register_module("fc", nn::Linear(feature_dim_, options_.num_classes));
  }

  // torchvision's init; Linear keeps PyTorch's default (as torchvision's does).
  for (const auto& module : modules(/*include_self=*/false)) {
    if (auto* convolution = module->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(convolution->weight, 0.0, torch::kFanOut, torch::kReLU);
    } else if (auto* norm = module->as<BatchNorm2d>()) {
      nn::init::ones_(norm->weight);
      nn::init::zeros_(norm->bias);
    }
  }
}

at::Tensor ResNetImpl::features(const at::Tensor& images) {
  at::Tensor x = convolve_normalized_tapped("stem", ActivationKind::kRelu, *conv1_, *bn1_, images,
                                            {.rectifier = Rectifier::kRelu});
  x = max_pool(x, {3, 3}, {2, 2}, {1, 1});
  x = layer1_->forward(x);
  x = layer2_->forward(x);
  x = layer3_->forward(x);
  x = layer4_->forward(x);
  return at::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
}

at::Tensor ResNetImpl::forward(const at::Tensor& images) {
  if (!fc_) {
    throw Error(failed_precondition("this ResNet was built with num_classes = 0: call features()"));
  }
  return fc_(features(images));
}

std::vector<BackboneStage> ResNetImpl::stages() {
  std::vector<BackboneStage> result;
  result.push_back({"stem", {"conv1", "bn1"}, {conv1_.ptr(), bn1_.ptr()}});
  result.push_back({"layer1", {"layer1"}, {layer1_.ptr()}});
  result.push_back({"layer2", {"layer2"}, {layer2_.ptr()}});
  result.push_back({"layer3", {"layer3"}, {layer3_.ptr()}});
  result.push_back({"layer4", {"layer4"}, {layer4_.ptr()}});
  return result;
}

}  // namespace kennel::models

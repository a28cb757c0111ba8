#include "kennel/models/mobilenet_v2.h"

#include <algorithm>
#include <array>
#include <utility>

#include <fmt/format.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>

#include "kennel/models/activation_probe.h"
#include "kennel/models/batch_norm.h"
#include "kennel/models/convolution.h"

namespace kennel::models {

namespace {

namespace nn = torch::nn;

constexpr int64_t kStemChannels = 32;
constexpr int64_t kLastChannels = 1280;

// TensorFlow's "same" padding for one spatial dimension: the output has
// ceil(size / stride) positions, and an odd total pad puts the extra pixel
// after (bottom/right), never before.
std::pair<int64_t, int64_t> same_padding(int64_t size, int64_t kernel, int64_t stride) {
  const int64_t out = (size + stride - 1) / stride;
  const int64_t total = std::max<int64_t>((out - 1) * stride + kernel - size, 0);
  return {total / 2, total - total / 2};
}

// torchvision's Conv2dNormActivation: children "0" (conv, no bias) and "1"
// (BatchNorm); its ReLU6 "2" has no state, so it is applied functionally.
class ConvBnActImpl : public nn::Module {
 public:
  struct Config {
    int64_t in, out, kernel, stride = 1, groups = 1;
    bool activation = true;
    bool tf_same_padding = false;
    double eps = 1e-5;
  };

  explicit ConvBnActImpl(const Config& config) : nn::Module("Conv2dNormActivation"), config_(config) {
    // TF padding is only asymmetric for stride 2; at stride 1 "same" is the symmetric (k-1)/2.
    pad_in_forward_ = config.tf_same_padding && config.stride > 1;
    const int64_t padding = pad_in_forward_ ? 0 : (config.kernel - 1) / 2;
    conv_ = register_module("0", nn::Conv2d(nn::Conv2dOptions(config.in, config.out, config.kernel)
                                                 .stride(config.stride)
                                                 .padding(padding)
                                                 .groups(config.groups)
                                                 .bias(false)));
    bn_ = register_module("1", BatchNorm2d(nn::BatchNorm2dOptions(config.out).eps(config.eps)));
  }

  at::Tensor forward(const at::Tensor& input) {
    at::Tensor x = input;
    if (pad_in_forward_) {
      const auto [top, bottom] = same_padding(x.size(2), config_.kernel, config_.stride);
      const auto [left, right] = same_padding(x.size(3), config_.kernel, config_.stride);
      x = at::constant_pad_nd(x, {left, right, top, bottom}, 0);
    }
    if (!config_.activation) return convolve_normalized(*conv_, *bn_, x);
    return convolve_normalized_tapped(tap_, ActivationKind::kRelu6, *conv_, *bn_, x, {.rectifier = Rectifier::kRelu6});
  }

  // The stage's name when this ReLU6 is the stage's activation tap.
  void set_activation_tap(std::string layer) { tap_ = std::move(layer); }

 private:
  Config config_;
  std::string tap_;
  bool pad_in_forward_ = false;
  nn::Conv2d conv_{nullptr};
  BatchNorm2d bn_{nullptr};
};
TORCH_MODULE(ConvBnAct);

// torchvision's InvertedResidual: `conv` = [expand 1x1 (unless t = 1),
// depthwise 3x3, project 1x1 conv, BatchNorm], plus the identity shortcut when
// the block keeps resolution and width.
class InvertedResidualImpl : public nn::Module {
 public:
  InvertedResidualImpl(int64_t in, int64_t out, int64_t stride, int64_t expand_ratio, bool tf_same_padding,
                       double eps)
      : nn::Module("InvertedResidual"), residual_(stride == 1 && in == out) {
    const int64_t hidden = in * expand_ratio;
    nn::Sequential conv;
    if (expand_ratio != 1) {
      conv->push_back(ConvBnAct(ConvBnActImpl::Config{.in = in, .out = hidden, .kernel = 1, .eps = eps}));
    }
    conv->push_back(ConvBnAct(ConvBnActImpl::Config{.in = hidden,
                                                    .out = hidden,
                                                    .kernel = 3,
                                                    .stride = stride,
                                                    .groups = hidden,
                                                    .tf_same_padding = tf_same_padding,
                                                    .eps = eps}));
    conv->push_back(nn::Conv2d(nn::Conv2dOptions(hidden, out, 1).bias(false)));
    conv->push_back(BatchNorm2d(nn::BatchNorm2dOptions(out).eps(eps)));
    conv_ = register_module("conv", conv);
  }

  at::Tensor forward(const at::Tensor& x) {
    at::Tensor out = x;
    for (size_t i = 0; i + 2 < conv_->size(); ++i) out = conv_[i]->as<ConvBnActImpl>()->forward(out);
    // The projection: a 1x1 convolution and its BatchNorm, the sequence's last two layers, then the shortcut.
    return convolve_normalized(*conv_[conv_->size() - 2]->as<nn::Conv2dImpl>(),
                               *conv_[conv_->size() - 1]->as<BatchNorm2dImpl>(), out,
                               {.residual = residual_ ? x : at::Tensor()});
  }

  // Taps the depthwise ReLU6, the block's last activation.
  void set_activation_tap(std::string layer) {
    conv_[conv_->size() - 3]->as<ConvBnActImpl>()->set_activation_tap(std::move(layer));
  }

 private:
  bool residual_;
  nn::Sequential conv_{nullptr};
};

struct BlockSetting {
  int64_t expand_ratio, channels, repeats, stride;
};
constexpr std::array<BlockSetting, 7> kSettings = {{
    {1, 16, 1, 1},
    {6, 24, 2, 2},
    {6, 32, 3, 2},
    {6, 64, 4, 2},
    {6, 96, 3, 1},
    {6, 160, 3, 2},
    {6, 320, 1, 1},
}};

// Stage boundaries as indices into `features` (see the header's table).
struct StageRange {
  const char* name;
  size_t first, last;
};
constexpr std::array<StageRange, 6> kStages = {{
    {"stem", 0, 0},
    {"features.1", 1, 1},
    {"features.2-3", 2, 3},
    {"features.4-6", 4, 6},
    {"features.7-13", 7, 13},
    {"features.14-18", 14, 18},
}};

}  // namespace

Status MobileNetV2Options::validate() const {
  if (num_classes < 0) {
    return invalid_argument("MobileNetV2 num_classes is {}: use 0 (no classifier) or a positive class count",
                            num_classes);
  }
  if (!(dropout >= 0 && dropout < 1)) {
    return invalid_argument("MobileNetV2 dropout is {}: use a probability in [0, 1)", dropout);
  }
  if (!(batch_norm_eps > 0)) {
    return invalid_argument("MobileNetV2 batch_norm_eps is {}: use a small positive value", batch_norm_eps);
  }
  return {};
}

MobileNetV2Impl::MobileNetV2Impl(const MobileNetV2Options& options)
    : BackboneImpl("MobileNetV2"), options_(options) {
  if (Status status = options_.validate(); !status.ok()) throw Error(status);
  const bool tf = options_.tf_same_padding;
  const double eps = options_.batch_norm_eps;

  features_ = nn::Sequential();
  features_->push_back(ConvBnAct(ConvBnActImpl::Config{
      .in = 3, .out = kStemChannels, .kernel = 3, .stride = 2, .tf_same_padding = tf, .eps = eps}));
  int64_t channels = kStemChannels;
  for (const auto& setting : kSettings) {
    for (int64_t i = 0; i < setting.repeats; ++i) {
      features_->push_back(std::make_shared<InvertedResidualImpl>(
          channels, setting.channels, i == 0 ? setting.stride : 1, setting.expand_ratio, tf, eps));
      channels = setting.channels;
    }
  }
  features_->push_back(
      ConvBnAct(ConvBnActImpl::Config{.in = channels, .out = kLastChannels, .kernel = 1, .eps = eps}));
  for (const auto& stage : kStages) {
    const auto& last = features_[stage.last];
    if (auto* block = last->as<InvertedResidualImpl>()) {
      block->set_activation_tap(stage.name);
    } else {
      last->as<ConvBnActImpl>()->set_activation_tap(stage.name);
    }
  }
  register_module("features", features_);
  if (options_.num_classes > 0) {
    classifier_ = register_module(
        "classifier", nn::Sequential(nn::Dropout(options_.dropout), nn::Linear(kLastChannels, options_.num_classes)));
  }

  for (const auto& module : modules(/*include_self=*/false)) {
    if (auto* convolution = module->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(convolution->weight, 0.0, torch::kFanOut);
    } else if (auto* norm = module->as<BatchNorm2d>()) {
      nn::init::ones_(norm->weight);
      nn::init::zeros_(norm->bias);
    } else if (auto* linear = module->as<nn::Linear>()) {
      nn::init::normal_(linear->weight, 0, 0.01);
      nn::init::zeros_(linear->bias);
    }
  }
}

at::Tensor MobileNetV2Impl::features(const at::Tensor& images) {
  return at::adaptive_avg_pool2d(features_->forward(images), {1, 1}).flatten(1);
}

at::Tensor MobileNetV2Impl::forward(const at::Tensor& images) {
  if (!classifier_) {
    throw Error(failed_precondition("this MobileNetV2 was built with num_classes = 0: call features()"));
  }
  return classifier_->forward(features(images));
}

std::vector<BackboneStage> MobileNetV2Impl::stages() {
  std::vector<BackboneStage> result;
  for (const auto& range : kStages) {
    BackboneStage stage{range.name, {}, {}};
    for (size_t i = range.first; i <= range.last; ++i) {
      stage.paths.push_back(fmt::format("features.{}", i));
      stage.modules.push_back(features_->ptr(i));
    }
    result.push_back(std::move(stage));
  }
  return result;
}

}  // namespace kennel::models

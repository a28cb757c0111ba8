// MobileNetV2 (width 1.0) exactly as torchvision 0.14 builds it.
//
// Names and shapes are torchvision's: features.0.{0,1} (stem conv + BN),
// features.1..17 InvertedResidual blocks as features.N.conv.M..., features.18
// (1x1 conv to 1280 + BN), and classifier.1 (Linear after Dropout(0.2)) — so
// `mobilenet_v2().state_dict()` from Python loads with strict matching. Init is
// torchvision's: Kaiming-normal fan_out convs, BatchNorm 1/0, Linear N(0, 0.01).
//
// `tf_same_padding` reproduces TensorFlow/Keras "same" padding on the stride-2
// convolutions (the stem and four depthwise convs): zero padding computed
// from the actual input size and placed asymmetrically — for an even size,
// nothing before and one pixel after — where torchvision pads one pixel on
// both sides. Keras-trained weights give wrong features without it (the
// sampling grid shifts by a pixel at each stride-2 layer). Keras' BatchNorm
// also uses eps 1e-3 (batch_norm_eps).
//
// Stages (for freezing "all but the last N"), by output stride like ResNet's:
//   stem         features.0         stride 2,  32 channels
//   features.1   features.1         stride 2,  16
//   features.2-3                    stride 4,  24
//   features.4-6                    stride 8,  32
//   features.7-13                   stride 16, 64 and 96
//   features.14-18                  stride 32, 160, 320 and the 1280 head conv
#pragma once

#include <cstdint>

#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "kennel/models/backbone.h"
#include "kennel/util/status.h"

namespace kennel::models {

struct MobileNetV2Options {
  // 1000: torchvision's full model with its `classifier`; 0: no classifier,
  // the trunk only (what a Classifier wraps, attaching its own head).
  int64_t num_classes = 1000;
  double dropout = 0.2;  // before the classifier's Linear (torchvision's value)
  bool tf_same_padding = false;  // TF/Keras asymmetric "same" padding on stride-2 convs
  double batch_norm_eps = 1e-5;  // torchvision 1e-5; Keras 1e-3

  // kInvalidArgument naming the field: num_classes < 0, dropout outside [0, 1),
  // batch_norm_eps <= 0.
  Status validate() const;
};

class MobileNetV2Impl : public BackboneImpl {
 public:
  // Throws kennel::Error (kInvalidArgument) when options.validate() fails.
  explicit MobileNetV2Impl(const MobileNetV2Options& options = {});

  // Logits [N, num_classes]; requires num_classes > 0.
  at::Tensor forward(const at::Tensor& images);
  at::Tensor features(const at::Tensor& images) override;
  int64_t feature_dim() const override { return 1280; }
  std::vector<BackboneStage> stages() override;
  HeadStyle head_style() const override {
    return {.name = "classifier", .leading_dropout = options_.dropout, .linear_init_std = 0.01};
  }

  const MobileNetV2Options& options() const { return options_; }

 private:
  MobileNetV2Options options_;
  torch::nn::Sequential features_{nullptr};
  torch::nn::Sequential classifier_{nullptr};
};
TORCH_MODULE(MobileNetV2);

}  // namespace kennel::models

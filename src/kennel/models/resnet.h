// ResNet-18/34/50/101/152 exactly as torchvision 0.14 builds them (the "v1.5"
// variant: a Bottleneck strides on its 3x3 conv, not its first 1x1).
//
// Parameter and buffer names and shapes are torchvision's — conv1, bn1,
// layer1.0.conv1, layer1.0.downsample.0/1, ..., fc — so `resnet50.state_dict()`
// from Python loads with strict key matching, and the initialisation is
// torchvision's (Kaiming-normal fan_out convolutions, BatchNorm weight 1 and
// bias 0, PyTorch's default Linear). Parity with torchvision's logits is
// checked by tests/parity/test_model_parity.py.
//
// Stages (for freezing "all but the last N"): stem (conv1, bn1), layer1,
// layer2, layer3, layer4 — five stages, each after the stem halving the
// resolution except layer1 (which follows the stem's max-pool).
#pragma once

#include <cstdint>

#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "kennel/models/backbone.h"
#include "kennel/models/batch_norm.h"
#include "kennel/util/status.h"

namespace kennel::models {

struct ResNetOptions {
  int64_t depth = 50;  // 18 and 34 use BasicBlocks; 50, 101 and 152 Bottlenecks
  // 1000: torchvision's full model with its ImageNet `fc`; 0: no `fc`, the
  // trunk only (what a Classifier wraps, attaching its own head).
  int64_t num_classes = 1000;

  // kInvalidArgument naming the field when depth is not one of the five or num_classes < 0.
  Status validate() const;
};

class ResNetImpl : public BackboneImpl {
 public:
  // Throws kennel::Error (kInvalidArgument) when options.validate() fails.
  explicit ResNetImpl(const ResNetOptions& options = {});

  // Logits [N, num_classes]; requires num_classes > 0.
  at::Tensor forward(const at::Tensor& images);
  at::Tensor features(const at::Tensor& images) override;
  int64_t feature_dim() const override { return feature_dim_; }
  std::vector<BackboneStage> stages() override;
  HeadStyle head_style() const override { return {.name = "fc"}; }

  const ResNetOptions& options() const { return options_; }

 private:
  ResNetOptions options_;
  int64_t feature_dim_ = 0;
  torch::nn::Conv2d conv1_{nullptr};
  BatchNorm2d bn1_{nullptr};
  torch::nn::Sequential layer1_{nullptr}, layer2_{nullptr}, layer3_{nullptr}, layer4_{nullptr};
  torch::nn::Linear fc_{nullptr};
};
TORCH_MODULE(ResNet);

}  // namespace kennel::models

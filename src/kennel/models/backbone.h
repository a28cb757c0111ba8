// Backbone: what every convolutional feature extractor offers the classifier.
//
// A backbone owns the convolutional trunk of a torchvision architecture under
// torchvision's own parameter and buffer names (so that a torchvision state
// dict loads with strict matching), maps images [N,3,H,W] to a pooled feature
// vector [N,F], and says how it splits into stages (for "freeze all but the
// last N stages"). It does not own the classification head: the Classifier
// attaches one under the name torchvision gives it (HeadStyle::name).
//
// Thread-safety: as torch::nn::Module — one forward at a time per instance
// while training; concurrent forwards in eval mode under NoGradGuard are safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/MemoryFormat.h>
#include <torch/nn/module.h>

namespace kennel::models {

// Bump when a change to any backbone's forward (layer order, padding, BatchNorm
// folding, pooling) changes its features for the same weights: it keys the
// feature cache.
// 2: the feature pass runs the inference graph (BatchNorm folded, weights converted once).
inline constexpr int kBackboneVersion = 2;

// A contiguous run of the backbone's modules, in forward order.
struct BackboneStage {
  std::string name;                // "stem", "layer1", ... / "features.2-3"
  std::vector<std::string> paths;  // module paths inside the backbone ("conv1", "features.2", ...)
  std::vector<std::shared_ptr<torch::nn::Module>> modules;
};

// How torchvision shapes the head that follows this backbone, so that a head
// built by Kennel has torchvision's names ("fc.weight" / "classifier.1.weight").
struct HeadStyle {
  std::string name;            // "fc" (ResNet) or "classifier" (MobileNetV2)
  double leading_dropout = 0;  // > 0: a Dropout sits at index 0 before the first Linear
  double linear_init_std = 0;  // > 0: Linear weights ~ N(0, std), bias 0; 0: PyTorch's default init
};

class BackboneImpl : public torch::nn::Module {
 public:
  explicit BackboneImpl(std::string name) : torch::nn::Module(std::move(name)) {}

  // Images [N,3,H,W] (any memory format) -> globally average-pooled features [N, feature_dim()].
  virtual at::Tensor features(const at::Tensor& images) = 0;
  virtual int64_t feature_dim() const = 0;
  // Stages from input to output; together they hold every parameter of the trunk.
  virtual std::vector<BackboneStage> stages() = 0;
  virtual HeadStyle head_style() const = 0;
};

// Restrides every 4-d parameter and buffer of `module` into `format`, in place
// (the tensors stay the same objects, so optimizers holding them keep working).
// Convolution weights in channels-last let oneDNN skip a reorder per call when
// the input is channels-last too.
inline void convert_memory_format(torch::nn::Module& module, at::MemoryFormat format) {
  auto convert = [format](const at::Tensor& tensor) {
    if (tensor.dim() == 4 && !tensor.is_contiguous(format)) {
      tensor.set_data(tensor.data().contiguous(format));
    }
  };
  for (const auto& parameter : module.parameters()) convert(parameter);
  for (const auto& buffer : module.buffers()) convert(buffer);
}

}  // namespace kennel::models

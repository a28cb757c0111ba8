// BatchNorm2d as Kennel's backbones build it: torchvision's layer (the same
// parameters weight/bias and buffers running_mean/running_var/
// num_batches_tracked, so state dicts load by name, and the same maths
// through at::batch_norm), plus an inversion for data parallelism. While a
// BatchNormSync is set on a model, every layer in training mode takes its
// batch statistics over all replicas' batches (SyncBatchNorm) through it,
// without models/ knowing who provides it (dist/ does).
// Its own module, not a subclass of torch::nn::BatchNorm2dImpl: LibTorch does
// not export the base's symbols a subclass's vtables would name.
// Thread-safety: as torch::nn modules.
#pragma once

#include <iosfwd>
#include <memory>

#include <torch/nn/cloneable.h>
#include <torch/nn/options/batchnorm.h>
#include <torch/nn/pimpl.h>

namespace kennel::models {

class BatchNorm2dImpl;

class BatchNormSync {
 public:
  virtual ~BatchNormSync() = default;
  // The layer's output for `input` with the mean and variance taken over
  // every replica's input, updating the layer's running statistics as
  // BatchNorm does; differentiable (its backward is collective too).
  virtual at::Tensor forward(BatchNorm2dImpl& layer, const at::Tensor& input) = 0;
};

class BatchNorm2dImpl : public torch::nn::Cloneable<BatchNorm2dImpl> {
 public:
  explicit BatchNorm2dImpl(const torch::nn::BatchNorm2dOptions& options);
  explicit BatchNorm2dImpl(int64_t num_features) : BatchNorm2dImpl(torch::nn::BatchNorm2dOptions(num_features)) {}

  void reset() override;
  // weight 1, bias 0, running statistics 0 and 1 (PyTorch's defaults).
  void reset_parameters();
  // [N, C, H, W] -> the same shape. Throws c10::Error on another rank of input.
  at::Tensor forward(const at::Tensor& input);
  void pretty_print(std::ostream& stream) const override;

  void set_sync(std::shared_ptr<BatchNormSync> sync) { sync_ = std::move(sync); }
  // Whether training-mode statistics are taken over every replica (a BatchNormSync is set).
  bool synchronized() const { return sync_ != nullptr; }
  // The factor running statistics move by this step (momentum, or the cumulative average without one).
  double next_average_factor();

  torch::nn::BatchNorm2dOptions options;
  // Set by fold_batchnorm (models/inference_graph.h) once the preceding convolution carries this
  // layer's scale and shift: forward() then returns its input. Inference only.
  bool folded = false;
  // While this layer normalises with its running statistics (eval mode, e.g. --batchnorm frozen or a
  // frozen stage), models::convolve_normalized folds it into the convolution before it on every call
  // (models/convolution.h). Off: it runs after the convolution as declared, to compare against.
  bool fold_in_eval = true;
  at::Tensor weight, bias;                                  // [C] (undefined without affine)
  at::Tensor running_mean, running_var, num_batches_tracked;  // undefined without track_running_stats

 private:
  std::shared_ptr<BatchNormSync> sync_;
};
TORCH_MODULE(BatchNorm2d);

// Sets (or, with nullptr, clears) `sync` on every models::BatchNorm2d of `model`;
// returns how many layers it reached.
int set_batchnorm_sync(torch::nn::Module& model, const std::shared_ptr<BatchNormSync>& sync);

}  // namespace kennel::models

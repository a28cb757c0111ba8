#include "kennel/models/batch_norm.h"

#include <ostream>

#include <ATen/ATen.h>
#include <torch/nn/init.h>

namespace kennel::models {

BatchNorm2dImpl::BatchNorm2dImpl(const torch::nn::BatchNorm2dOptions& options) : options(options) { reset(); }

void BatchNorm2dImpl::reset() {
  const int64_t features = options.num_features();
  if (options.affine()) {
    weight = register_parameter("weight", at::empty({features}));
    bias = register_parameter("bias", at::empty({features}));
  } else {
    weight = register_parameter("weight", at::Tensor(), /*requires_grad=*/false);
    bias = register_parameter("bias", at::Tensor(), /*requires_grad=*/false);
  }
  if (options.track_running_stats()) {
    running_mean = register_buffer("running_mean", at::zeros({features}));
    running_var = register_buffer("running_var", at::ones({features}));
    num_batches_tracked = register_buffer("num_batches_tracked", at::zeros({}, at::kLong));
  } else {
    running_mean = register_buffer("running_mean", at::Tensor());
    running_var = register_buffer("running_var", at::Tensor());
    num_batches_tracked = register_buffer("num_batches_tracked", at::Tensor());
  }
  reset_parameters();
}

void BatchNorm2dImpl::reset_parameters() {
  at::NoGradGuard no_grad;
  if (options.track_running_stats()) {
    running_mean.zero_();
    running_var.fill_(1);
    num_batches_tracked.zero_();
  }
  if (options.affine()) {
    torch::nn::init::ones_(weight);
    torch::nn::init::zeros_(bias);
  }
}

double BatchNorm2dImpl::next_average_factor() {
  double factor = options.momentum().value_or(0.0);
  if (is_training() && options.track_running_stats() && num_batches_tracked.defined()) {
    at::NoGradGuard no_grad;
    num_batches_tracked.add_(1);
    if (!options.momentum()) factor = 1.0 / num_batches_tracked.item<double>();
  }
  return factor;
}

at::Tensor BatchNorm2dImpl::forward(const at::Tensor& input) {
  TORCH_CHECK(input.dim() == 4, "BatchNorm2d expects a 4-D input [N, C, H, W], got ", input.dim(), "-D");
  if (sync_ && is_training()) return sync_->forward(*this, input);
  const double factor = next_average_factor();
  return at::batch_norm(input, weight, bias, running_mean, running_var,
                        is_training() || !options.track_running_stats(), factor, options.eps(),
                        at::globalContext().userEnabledCuDNN());
}

void BatchNorm2dImpl::pretty_print(std::ostream& stream) const {
  stream << "kennel::models::BatchNorm2d(" << options.num_features() << ", eps=" << options.eps()
         << ", momentum=" << options.momentum().value_or(-1.0) << ", affine=" << options.affine()
         << ", track_running_stats=" << options.track_running_stats() << (sync_ ? ", sync" : "") << ")";
}

int set_batchnorm_sync(torch::nn::Module& model, const std::shared_ptr<BatchNormSync>& sync) {
  int reached = 0;
  for (const auto& module : model.modules(/*include_self=*/true)) {
    if (auto* norm = module->as<BatchNorm2dImpl>()) {
      norm->set_sync(sync);
      ++reached;
    }
  }
  return reached;
}

}  // namespace kennel::models

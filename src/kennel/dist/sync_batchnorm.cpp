#include "kennel/dist/sync_batchnorm.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

namespace kennel::dist {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::vector<int64_t> channel_shape(int64_t channels) { return {1, channels, 1, 1}; }

// y = (x - mean) * invstd * weight + bias, with mean and invstd the group's
// (computed outside and passed as constants); backward accounts for their
// dependence on every rank's input.
class SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const at::Tensor& bias, const at::Tensor& mean, const at::Tensor& invstd, double count,
                            ProcessGroup* group) {
    const auto shape = channel_shape(input.size(1));
    const at::Tensor xhat = (input.to(at::kFloat) - mean.view(shape)) * invstd.view(shape);
    at::Tensor output = xhat;
    if (weight.defined()) output = xhat * weight.view(shape).to(at::kFloat) + bias.view(shape).to(at::kFloat);
    ctx->save_for_backward({xhat, weight, invstd});
    ctx->saved_data["count"] = count;
    ctx->saved_data["group"] = reinterpret_cast<int64_t>(group);
    ctx->saved_data["dtype"] = static_cast<int64_t>(input.scalar_type());
    return output.to(input.scalar_type());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& xhat = saved[0];
    const at::Tensor& weight = saved[1];
    const at::Tensor& invstd = saved[2];
    const double count = ctx->saved_data["count"].toDouble();
    auto* group = reinterpret_cast<ProcessGroup*>(ctx->saved_data["group"].toInt());
    const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
    const int64_t channels = xhat.size(1);
    const auto shape = channel_shape(channels);
    const at::Tensor dy = grads[0].to(at::kFloat);
    const at::Tensor sum_dy = dy.sum({0, 2, 3});
    const at::Tensor sum_dy_xhat = (dy * xhat).sum({0, 2, 3});
    at::Tensor both = at::cat({sum_dy, sum_dy_xhat}).to(at::kDouble);
    group->all_reduce_sum(both);
    const at::Tensor mean_dy = (both.narrow(0, 0, channels) / count).to(at::kFloat);
    const at::Tensor mean_dy_xhat = (both.narrow(0, channels, channels) / count).to(at::kFloat);
    at::Tensor scale = invstd;
    if (weight.defined()) scale = scale * weight.to(at::kFloat);
    const at::Tensor dx = (dy - mean_dy.view(shape) - xhat * mean_dy_xhat.view(shape)) * scale.view(shape);
    at::Tensor grad_weight, grad_bias;
    if (weight.defined()) {
      grad_weight = sum_dy_xhat.to(weight.scalar_type());
      grad_bias = sum_dy.to(weight.scalar_type());
    }
    return {dx.to(dtype), grad_weight, grad_bias, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

class GroupBatchNormSync : public models::BatchNormSync {
 public:
  explicit GroupBatchNormSync(ProcessGroup& group) : group_(group) {}

  at::Tensor forward(models::BatchNorm2dImpl& layer, const at::Tensor& input) override {
    const int64_t channels = input.size(1);
    at::Tensor mean, invstd;
    double count = 0;
    {
      at::NoGradGuard no_grad;
      const at::Tensor x = input.detach().to(at::kDouble);
      const double local = static_cast<double>(input.numel() / std::max<int64_t>(1, channels));
      at::Tensor stats = at::cat({x.sum({0, 2, 3}), (x * x).sum({0, 2, 3}), at::full({1}, local, at::kDouble)});
      group_.all_reduce_sum(stats);
      count = stats[2 * channels].item<double>();
      const at::Tensor global_mean = stats.narrow(0, 0, channels) / count;
      const at::Tensor variance = (stats.narrow(0, channels, channels) / count - global_mean * global_mean).clamp_min(0);
      const auto& options = layer.options;
      mean = global_mean.to(at::kFloat);
      invstd = (variance + options.eps()).rsqrt().to(at::kFloat);
      const double momentum = layer.next_average_factor();
      if (options.track_running_stats() && layer.running_mean.defined()) {
        const double unbiased = count > 1 ? count / (count - 1) : 1.0;
        layer.running_mean.mul_(1 - momentum).add_(global_mean.to(layer.running_mean.scalar_type()), momentum);
        layer.running_var.mul_(1 - momentum).add_((variance * unbiased).to(layer.running_var.scalar_type()), momentum);
      }
    }
    return SyncBatchNormFunction::apply(input, layer.weight, layer.bias, mean, invstd, count, &group_);
  }

 private:
  ProcessGroup& group_;
};

}  // namespace

std::shared_ptr<models::BatchNormSync> make_batchnorm_sync(ProcessGroup& group) {
  return std::make_shared<GroupBatchNormSync>(group);
}

}  // namespace kennel::dist

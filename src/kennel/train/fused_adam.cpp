#include "kennel/train/fused_adam.h"

#include <array>
#include <cmath>
#include <memory>
#include <type_traits>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "kennel/util/loop_instruction_set.h"

namespace kennel::train {
namespace {

// One parameter's update (detail/adam_kernels.inc): its float buffers and the step's scalars.
struct AdamCall {
  float* param = nullptr;
  const float* grad = nullptr;
  float* exp_avg = nullptr;
  float* exp_avg_sq = nullptr;
  bool coupled_decay = false, decoupled_decay = false;
  float weight_decay = 0, decay = 1;
  float beta1 = 0, one_minus_beta1 = 0, beta2 = 0, one_minus_beta2 = 0;
  float sqrt_bias_correction2 = 1, eps = 0, negative_step_size = 0;
};

}  // namespace

namespace avx512_adam_kernels {
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,prefer-vector-width=512")
#include "kennel/train/detail/adam_kernels.inc"
#pragma GCC pop_options
}  // namespace avx512_adam_kernels

namespace avx2_adam_kernels {
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include "kennel/train/detail/adam_kernels.inc"
#pragma GCC pop_options
}  // namespace avx2_adam_kernels

namespace baseline_adam_kernels {
#include "kennel/train/detail/adam_kernels.inc"
}  // namespace baseline_adam_kernels

namespace {

using Updater = void (*)(const AdamCall&, long, long);

// Indexed by InstructionSet (clause 4).
constexpr std::array<Updater, 3> kUpdaters = {&avx512_adam_kernels::update, &avx2_adam_kernels::update,
                                              &baseline_adam_kernels::update};

// Clause 2's test.
bool updates_in_one_pass(const at::Tensor& param, const at::Tensor& grad, const at::Tensor& exp_avg,
                         const at::Tensor& exp_avg_sq, bool amsgrad) {
  if (amsgrad || !param.is_non_overlapping_and_dense()) return false;
  for (const at::Tensor* tensor : {&param, &grad, &exp_avg, &exp_avg_sq}) {
    if (tensor->scalar_type() != at::kFloat || !tensor->device().is_cpu() || tensor->sizes() != param.sizes() ||
        tensor->strides() != param.strides()) {
      return false;
    }
  }
  return true;
}

// One step for every parameter of `optimizer` (Adam when !kDecoupled, AdamW when kDecoupled), after the
// closure, if any, computed the loss it returns (with gradients on, as LibTorch's step runs it).
template <bool kDecoupled, typename Optimizer, typename Options, typename State>
torch::Tensor step_parameters(Optimizer& optimizer, const torch::optim::Optimizer::LossClosure& closure) {
  torch::Tensor loss;
  if (closure) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  torch::NoGradGuard no_grad;
  const Updater updater = kUpdaters[static_cast<size_t>(loop_instruction_set())];
  for (auto& group : optimizer.param_groups()) {
    const auto& options = static_cast<const Options&>(group.options());
    const double lr = options.lr(), weight_decay = options.weight_decay();
    const auto [beta1, beta2] = options.betas();
    for (auto& param : group.params()) {
      if (!param.grad().defined()) continue;
      at::Tensor grad = param.grad();
      TORCH_CHECK(!grad.is_sparse(), "Adam does not support sparse gradients");
      auto& slot = optimizer.state()[c10::guts::to_string(param.unsafeGetTensorImpl())];
      if (!slot) {
        auto state = std::make_unique<State>();
        state->step(0);
        state->exp_avg(at::zeros_like(param, at::MemoryFormat::Preserve));
        state->exp_avg_sq(at::zeros_like(param, at::MemoryFormat::Preserve));
        if (options.amsgrad()) state->max_exp_avg_sq(at::zeros_like(param, at::MemoryFormat::Preserve));
        slot = std::move(state);
      }
      auto& state = static_cast<State&>(*slot);
      state.step(state.step() + 1);
      const double bias_correction1 = 1 - std::pow(beta1, state.step());
      const double bias_correction2 = 1 - std::pow(beta2, state.step());
      const double step_size = lr / bias_correction1;
      at::Tensor data = param.data();
      if (!updates_in_one_pass(data, grad, state.exp_avg(), state.exp_avg_sq(), options.amsgrad())) {
        // LibTorch's own operations, in its order.
        if (kDecoupled && weight_decay != 0) data.mul_(1 - lr * weight_decay);
        if (!kDecoupled && weight_decay != 0) grad = grad.add(data, weight_decay);
        state.exp_avg().mul_(beta1).add_(grad, 1 - beta1);
        state.exp_avg_sq().mul_(beta2).addcmul_(grad, grad, 1 - beta2);
        at::Tensor denominator;
        if (options.amsgrad()) {
          at::maximum_out(state.max_exp_avg_sq(), state.max_exp_avg_sq(), state.exp_avg_sq());
          denominator = (state.max_exp_avg_sq().sqrt() / std::sqrt(bias_correction2)).add_(options.eps());
        } else {
          denominator = (state.exp_avg_sq().sqrt() / std::sqrt(bias_correction2)).add_(options.eps());
        }
        data.addcdiv_(state.exp_avg(), denominator, -step_size);
        continue;
      }
      AdamCall call;
      call.param = data.data_ptr<float>();
      call.grad = grad.data_ptr<float>();
      call.exp_avg = state.exp_avg().template data_ptr<float>();
      call.exp_avg_sq = state.exp_avg_sq().template data_ptr<float>();
      call.coupled_decay = !kDecoupled && weight_decay != 0;
      call.decoupled_decay = kDecoupled && weight_decay != 0;
      call.weight_decay = static_cast<float>(weight_decay);
      call.decay = static_cast<float>(1 - lr * weight_decay);
      call.beta1 = static_cast<float>(beta1);
      call.one_minus_beta1 = static_cast<float>(1 - beta1);
      call.beta2 = static_cast<float>(beta2);
      call.one_minus_beta2 = static_cast<float>(1 - beta2);
      call.sqrt_bias_correction2 = static_cast<float>(std::sqrt(bias_correction2));
      call.eps = static_cast<float>(options.eps());
      call.negative_step_size = static_cast<float>(-step_size);
      // Chunks of 16K elements: a small parameter (a bias) stays on one thread.
      at::parallel_for(0, data.numel(), 16384, [&](int64_t begin, int64_t end) { updater(call, begin, end); });
    }
  }
  return loss;
}

}  // namespace

torch::Tensor FusedAdam::step(LossClosure closure) {
  return step_parameters<false, FusedAdam, torch::optim::AdamOptions, torch::optim::AdamParamState>(*this, closure);
}

torch::Tensor FusedAdamW::step(LossClosure closure) {
  return step_parameters<true, FusedAdamW, torch::optim::AdamWOptions, torch::optim::AdamWParamState>(*this,
                                                                                                       closure);
}

}  // namespace kennel::train

#include "kennel/train/schedule.h"

#include <cmath>

#include <torch/optim.h>

#include "kennel/train/fused_adam.h"

namespace kennel::train {

double LrSchedule::lr_at(int64_t step) const {
  if (warmup_steps > 0 && static_cast<double>(step) < warmup_steps) {
    return base_lr * static_cast<double>(step + 1) / warmup_steps;
  }
  if (kind == "step") {
    const int64_t epoch = step / std::max<int64_t>(1, steps_per_epoch);
    return base_lr * std::pow(gamma, static_cast<double>(epoch / std::max<int64_t>(1, step_epochs)));
  }
  if (kind == "cosine") {
    const double start = warmup_steps;
    const double span = std::max(1.0, static_cast<double>(total_steps) - start);
    const double progress = std::clamp((static_cast<double>(step) - start) / span, 0.0, 1.0);
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
  }
  return base_lr;
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<at::Tensor>& parameters,
                                                        const OptimizerSpec& spec) {
  if (spec.kind == "sgd" || spec.kind == "momentum") {
    torch::optim::SGDOptions options(spec.lr);
    options.momentum(spec.kind == "momentum" ? spec.momentum : 0.0).weight_decay(spec.weight_decay);
    return std::make_unique<torch::optim::SGD>(parameters, options);
  }
  if (spec.kind == "adamw") {
    torch::optim::AdamWOptions options(spec.lr);
    options.weight_decay(spec.weight_decay);
    return std::make_unique<FusedAdamW>(parameters, options);
  }
  torch::optim::AdamOptions options(spec.lr);
  options.weight_decay(spec.weight_decay);
  return std::make_unique<FusedAdam>(parameters, options);
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

}  // namespace kennel::train

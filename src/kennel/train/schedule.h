// Learning-rate schedules and optimizer construction for the trainer.
//
// The schedule is a pure function of the global step, so a resumed job
// recomputes the same rate without saving scheduler state: constant, step
// (multiply by gamma every N epochs) or cosine (to min_lr at the last step), each
// with an optional linear warm-up from 0. Thread-safety: values.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace torch::optim {
class Optimizer;
}

namespace kennel::train {

struct LrSchedule {
  std::string kind = "constant";  // constant | step | cosine
  double base_lr = 1e-3;
  int64_t steps_per_epoch = 1;
  int64_t total_steps = 1;
  int64_t step_epochs = 1;  // step: period in epochs
  double gamma = 0.1;       // step: factor
  double warmup_steps = 0;
  double min_lr = 0;        // cosine: the rate at the last step (PyTorch's eta_min)

  double lr_at(int64_t step) const;  // step counts from 0
};

struct OptimizerSpec {
  std::string kind = "adam";  // sgd | momentum | adam | adamw
  double lr = 1e-3;
  double momentum = 0.9;
  double weight_decay = 0;
};

// Builds the optimizer over the parameters that require grad.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<at::Tensor>& parameters,
                                                        const OptimizerSpec& spec);
void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

}  // namespace kennel::train

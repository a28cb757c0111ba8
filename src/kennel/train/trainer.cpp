#include "kennel/train/trainer.h"

#include <chrono>

#include <ATen/autocast_mode.h>
#include <torch/cuda.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/types.h>
#include <torch/utils.h>

#include "kennel/train/autocast.h"
#include "kennel/util/status.h"

namespace kennel::train {

namespace {
double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

Trainer::Trainer(TrainableModel& model, torch::optim::Optimizer& optimizer, BatchSource& train,
                 BatchSource* valid, TrainerOptions options)
    : model_(model), optimizer_(optimizer), train_(train), valid_(valid), options_(std::move(options)) {}

void Trainer::add_callback(std::shared_ptr<TrainerCallback> callback) {
  callbacks_.push_back(std::move(callback));
}

void Trainer::request_stop(const std::string& reason) {
  std::lock_guard lock(stop_mutex_);
  if (!stop_requested_.load()) stop_reason_ = reason;
  stop_requested_ = true;
}

bool Trainer::stopping() const {
  return options_.replicas != nullptr ? stop_agreed_ : stop_requested_.load();
}

void Trainer::exchange_step(double& loss_sum, double& correct, double& seen, double busy_seconds,
                            StepResult& step) {
  ReplicaGroup& replicas = *options_.replicas;
  const std::vector<double> mine = {loss_sum, correct, seen, stop_requested_ ? 1.0 : 0.0, busy_seconds};
  const auto all = replicas.all_gather(mine);
  loss_sum = correct = seen = 0;
  step.replica_busy_seconds.clear();
  int asked = -1;
  for (size_t rank = 0; rank < all.size(); ++rank) {
    loss_sum += all[rank][0];
    correct += all[rank][1];
    seen += all[rank][2];
    if (all[rank][3] != 0 && asked < 0) asked = static_cast<int>(rank);
    step.replica_busy_seconds.push_back(all[rank][4]);
  }
  if (asked >= 0) {
    if (asked != replicas.rank()) request_stop(fmt::format("rank {} stopped the job", asked));
    stop_agreed_ = true;
  }
}

bool Trainer::step_budget_spent() const {
  return options_.max_steps > 0 && state_.step >= options_.max_steps;
}

at::Tensor Trainer::prepare_inputs(const at::Tensor& inputs) const {
  at::Tensor out = inputs.to(options_.device, /*non_blocking=*/true);
  if (options_.channels_last && out.dim() == 4) out = out.contiguous(at::MemoryFormat::ChannelsLast);
  return out;
}

void Trainer::clear_gradients() {
  // Set to none rather than zeroed (PyTorch's default since 2.0): the backward's own gradient tensors
  // become the parameters' gradients, with no pass zeroing 100 MB (ResNet-50) and none adding into it.
  for (auto& group : optimizer_.param_groups()) {
    for (auto& parameter : group.params()) parameter.mutable_grad() = at::Tensor();
  }
}

at::Tensor Trainer::forward_with_precision(const at::Tensor& inputs) {
  AutocastScope autocast(options_.precision, options_.device);
  return model_.forward(inputs);
}

TrainOutcome Trainer::fit() {
  TrainOutcome outcome;
  for (auto& callback : callbacks_) callback->on_train_begin(*this);
  namespace F = torch::nn::functional;
  const auto loss_options = F::CrossEntropyFuncOptions().label_smoothing(options_.label_smoothing);
  ReplicaGroup* replicas = options_.replicas;
  if (replicas != nullptr) replicas->attach(model_);

  while (state_.epoch < options_.epochs && !stopping()) {
    const int64_t epoch = state_.epoch;
    if (state_.batch == 0) {
      state_.loss_sum = state_.correct = state_.seen = state_.epoch_seconds = 0;
    }
    for (auto& callback : callbacks_) callback->on_epoch_begin(*this, epoch);
    model_.set_training(true);
    train_.start_epoch(epoch, state_.batch);
    auto epoch_start = std::chrono::steady_clock::now();
    const double seconds_before = state_.epoch_seconds;
    double step_end_callbacks = 0;  // the previous step's on_step_end callbacks, charged to this step
    while (!stopping()) {
      if (step_budget_spent()) break;
      const auto step_start = std::chrono::steady_clock::now();
      StepPhases phases;
      phases.start = std::chrono::duration<double>(step_start.time_since_epoch()).count();
      phases.callbacks = step_end_callbacks;
      auto mark = step_start;
      // Seconds since the previous mark (synchronising CUDA first when asked), and a new mark.
      auto lap = [&] {
        if (options_.synchronize_phases && options_.device.is_cuda()) torch::cuda::synchronize(options_.device.index());
        const auto now = std::chrono::steady_clock::now();
        const double seconds = std::chrono::duration<double>(now - mark).count();
        mark = now;
        return seconds;
      };
      auto batch = train_.next();
      if (!batch) break;
      phases.data = lap();
      const double lr = options_.schedule.lr_at(state_.step);
      set_learning_rate(optimizer_, lr);
      const at::Tensor inputs = prepare_inputs(batch->inputs);
      const at::Tensor labels = batch->labels.to(options_.device);
      clear_gradients();
      phases.copy = lap();
      for (auto& callback : callbacks_) callback->on_before_forward(*this, *batch);
      phases.callbacks += lap();
      if (replicas != nullptr) replicas->before_forward();
      const at::Tensor logits = forward_with_precision(inputs).to(at::kFloat);
      const at::Tensor loss = F::cross_entropy(logits, labels, loss_options);
      phases.forward = lap();
      if (replicas != nullptr) replicas->before_backward();
      loss.backward();
      phases.backward = lap();
      const double busy_seconds = seconds_since(step_start);
      if (replicas != nullptr) replicas->after_backward();
      phases.sync = lap();
      for (auto& callback : callbacks_) callback->on_after_backward(*this, *batch, logits, loss);
      phases.callbacks += lap();

      StepResult step;
      double step_loss_sum = loss.item<double>() * static_cast<double>(labels.size(0));
      double step_correct = 0;
      double step_seen = static_cast<double>(labels.size(0));
      {
        torch::NoGradGuard no_grad;
        step_correct = logits.argmax(1).eq(labels).sum().item<double>();
      }
      if (replicas != nullptr) {
        exchange_step(step_loss_sum, step_correct, step_seen, busy_seconds, step);
        phases.sync += lap();
      }
      const double step_loss = step_seen > 0 ? step_loss_sum / step_seen : 0;
      if (!std::isfinite(step_loss)) {
        throw Error(failed_precondition(
            "the training loss became {} at epoch {} step {}: the learning rate ({}) is probably "
            "too high",
            step_loss, epoch, state_.step + 1, lr));
      }
      optimizer_.step();

      state_.correct += step_correct;
      state_.loss_sum += step_loss_sum;
      state_.seen += step_seen;
      ++state_.step;
      ++state_.batch;
      step.epoch = epoch;
      step.step = state_.step;
      step.batch = state_.batch - 1;
      step.batch_size = static_cast<int64_t>(step_seen);
      step.loss = step_loss;
      step.lr = lr;
      phases.optimizer = lap();  // the step, and the metrics' host sync that waits for it
      step.seconds = seconds_since(step_start);
      step.images_per_second = step.seconds > 0 ? step_seen / step.seconds : 0;
      step.phases = phases;
      for (auto& callback : callbacks_) callback->on_step_end(*this, step);
      step_end_callbacks = lap();
    }
    state_.epoch_seconds = seconds_before + seconds_since(epoch_start);
    if (stopping()) break;  // mid-epoch: the state says where to resume

    EpochResult result;
    result.epoch = epoch;
    result.step = state_.step;
    result.train_loss = state_.seen > 0 ? state_.loss_sum / state_.seen : 0;
    result.train_accuracy = state_.seen > 0 ? state_.correct / state_.seen : 0;
    result.seconds = state_.epoch_seconds;
    result.images_per_second = result.seconds > 0 ? state_.seen / result.seconds : 0;
    if (valid_ != nullptr && valid_->size() > 0) result.valid = evaluate(*valid_);
    ++state_.epoch;
    state_.batch = 0;
    outcome.epochs.push_back(result);
    for (auto& callback : callbacks_) callback->on_epoch_end(*this, result);
    // max_steps is a training budget, not an interruption: the partial epoch is
    // validated like a full one and the run completes.
    if (step_budget_spent()) break;
  }
  outcome.completed = !stopping() && (state_.epoch >= options_.epochs || step_budget_spent());
  {
    std::lock_guard lock(stop_mutex_);
    if (!outcome.completed) outcome.stop_reason = stop_reason_.empty() ? "stopped" : stop_reason_;
  }
  outcome.state = state_;
  for (auto& callback : callbacks_) callback->on_train_end(*this, outcome);
  return outcome;
}

EvalMetrics Trainer::evaluate(BatchSource& source) {
  EvalMetrics metrics = train::evaluate(model_, source, options_);
  model_.set_training(true);
  return metrics;
}

EvalMetrics evaluate(TrainableModel& model, BatchSource& source, const TrainerOptions& options) {
  torch::NoGradGuard no_grad;
  model.set_training(false);
  const int64_t classes = options.num_classes;
  EvalMetrics metrics;
  metrics.confusion = torch::zeros({classes, classes}, torch::kLong);
  double loss_sum = 0, correct = 0, top5 = 0;
  source.start_epoch(0, 0);
  while (auto batch = source.next()) {
    at::Tensor inputs = batch->inputs.to(options.device);
    if (options.channels_last && inputs.dim() == 4) inputs = inputs.contiguous(at::MemoryFormat::ChannelsLast);
    if (inputs.scalar_type() != options.input_dtype) inputs = inputs.to(options.input_dtype);
    const at::Tensor labels = batch->labels.to(options.device);
    at::Tensor logits;
    {
      AutocastScope autocast(options.precision, options.device);
      logits = model.forward(inputs);
    }
    logits = logits.to(at::kFloat);
    loss_sum += torch::nn::functional::cross_entropy(logits, labels).item<double>() *
                static_cast<double>(labels.size(0));
    const at::Tensor predicted = logits.argmax(1);
    correct += predicted.eq(labels).sum().item<double>();
    const int64_t k = std::min<int64_t>(5, classes);
    const at::Tensor best = std::get<1>(logits.topk(k, 1));
    top5 += best.eq(labels.unsqueeze(1)).any(1).sum().item<double>();
    metrics.confusion.view(-1).index_add_(
        0, (labels * classes + predicted).cpu(), torch::ones({labels.size(0)}, torch::kLong));
    metrics.samples += labels.size(0);
  }
  if (options.replicas != nullptr) {
    // Each replica evaluated its own samples (an unpadded shard): the sums make one evaluation.
    at::Tensor sums = at::tensor({loss_sum, correct, top5, static_cast<double>(metrics.samples)}, at::kDouble);
    options.replicas->sum(sums);
    options.replicas->sum(metrics.confusion);
    loss_sum = sums[0].item<double>();
    correct = sums[1].item<double>();
    top5 = sums[2].item<double>();
    metrics.samples = static_cast<int64_t>(sums[3].item<double>());
  }
  if (metrics.samples > 0) {
    const auto n = static_cast<double>(metrics.samples);
    metrics.loss = loss_sum / n;
    metrics.accuracy = correct / n;
    metrics.top5_accuracy = top5 / n;
  }
  return metrics;
}

}  // namespace kennel::train

#include "kennel/debug/hook.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <torch/torch.h>

#include "kennel/debug/summarize.h"

namespace kennel::debug {

namespace {

double wall_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Trainable parameters with their names; "bias" parameters are the biases collection.
std::vector<std::pair<std::string, at::Tensor>> trainable(train::Trainer& trainer) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : trainer.model().module().named_parameters(/*recurse=*/true)) {
    if (item.value().requires_grad()) out.emplace_back(item.key(), item.value());
  }
  return out;
}

bool is_bias(const std::string& name) {
  return name == "bias" || (name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0);
}

}  // namespace

bool SaveConfig::saves(int64_t step) const {
  if (step < start_step || (end_step >= 0 && step >= end_step)) return false;
  if (save_interval > 0 && (step - start_step) % save_interval == 0) return true;
  return std::find(save_steps.begin(), save_steps.end(), step) != save_steps.end();
}

DebugHookConfig DebugHookConfig::defaults() {
  DebugHookConfig config;
  CollectionConfig every_step;
  every_step.save.save_interval = 1;
  CollectionConfig tensors;
  tensors.save.save_interval = 10;
  CollectionConfig with_histogram = tensors;
  with_histogram.histogram_bins = 30;
  // Labels and predictions are a bincount each: every step, so ClassImbalance sees every sample.
  config.collections = {{"losses", every_step},      {"metrics", every_step},       {"weights", with_histogram},
                        {"biases", with_histogram},  {"gradients", with_histogram}, {"optimizer", tensors},
                        {"inputs", tensors},         {"labels", every_step},        {"predictions", every_step},
                        {"relu_input", with_histogram}, {"relu_output", tensors}};
  return config;
}

bool DebugHook::saves(const std::string& collection, int64_t step, Mode mode) const {
  const auto found = config_.collections.find(collection);
  if (found == config_.collections.end()) return false;
  const SaveConfig& save = found->second.save;
  if (mode == Mode::kTrain ? !save.train : !save.eval) return false;
  return save.saves(step);
}

void DebugHook::add(const std::string& collection, const std::string& what, const at::Tensor& tensor, Mode mode,
                    int64_t keep_values) {
  const CollectionConfig& config = config_.collections.at(collection);
  SummaryOptions options;
  options.histogram_bins = config.histogram_bins;
  options.keep_values = std::max(keep_values, config.raw_values);
  pending_->tensors.push_back(summarize(tensor, collection, what, pending_->step, mode, options));
}

void DebugHook::on_before_forward(train::Trainer& trainer, const train::TrainBatch&) {
  const int64_t step = trainer.state().step;  // steps done before this one = this step's 0-based index
  pending_.reset();
  before_.clear();
  watching_.reset();
  bool any = false;
  for (const auto& [collection, unused] : config_.collections) any = any || saves(collection, step, Mode::kTrain);
  if (!any) return;
  pending_ = StepRecord{step, Mode::kTrain, wall_now(), {}};
  if (saves("relu_input", step, Mode::kTrain) || saves("relu_output", step, Mode::kTrain)) watching_.emplace(this);
}

void DebugHook::observe(const std::string& layer, models::ActivationKind kind, const at::Tensor& pre_activation) {
  if (!pending_) return;
  const int64_t step = pending_->step;
  const at::NoGradGuard no_grad;
  // A stage's activations are the largest tensors of the step (ResNet's stem at 224 px: 800k values per
  // image); summarising a whole batch of them tripled that step's forward. The first few images estimate
  // the same statistics (the batch is shuffled) at a fraction of the cost.
  constexpr int64_t kActivationImages = 8;
  at::Tensor pre = pre_activation.detach();
  if (pre.dim() >= 1 && pre.size(0) > kActivationImages) pre = pre.narrow(0, 0, kActivationImages);
  if (saves("relu_input", step, Mode::kTrain)) add("relu_input", layer, pre, Mode::kTrain);
  if (saves("relu_output", step, Mode::kTrain)) {
    const at::Tensor output = kind == models::ActivationKind::kRelu6 ? pre.clamp(0, 6) : pre.clamp_min(0);
    add("relu_output", layer, output, Mode::kTrain);
    // Per unit (channel) share of the batch and positions where the unit fired.
    std::vector<int64_t> reduce;
    for (int64_t dim = 0; dim < pre.dim(); ++dim) {
      if (dim != 1) reduce.push_back(dim);
    }
    const at::Tensor active = pre.gt(0).to(torch::kDouble);
    const at::Tensor per_unit = (pre.dim() >= 2 ? active.mean(reduce) : active.mean().reshape({1})).cpu().contiguous();
    pending_->tensors.back().values.assign(per_unit.data_ptr<double>(), per_unit.data_ptr<double>() + per_unit.numel());
  }
}

void DebugHook::on_after_backward(train::Trainer& trainer, const train::TrainBatch& batch, const at::Tensor& logits,
                                  const at::Tensor& loss) {
  watching_.reset();
  if (!pending_) return;
  const int64_t step = pending_->step;
  const at::NoGradGuard no_grad;
  const double loss_value = loss.detach().item<double>();
  if (saves("losses", step, Mode::kTrain)) {
    pending_->tensors.push_back(scalar_summary(loss_value, "losses", "train_loss", step, Mode::kTrain));
  }
  const int64_t classes = trainer.options().num_classes;
  const at::Tensor labels = batch.labels.to(torch::kCPU);
  const at::Tensor predicted = logits.detach().argmax(1).to(torch::kCPU);
  if (saves("metrics", step, Mode::kTrain)) {
    const double accuracy = predicted.eq(labels).to(torch::kDouble).mean().item<double>();
    pending_->tensors.push_back(scalar_summary(accuracy, "metrics", "train_accuracy", step, Mode::kTrain));
  }
  if (saves("inputs", step, Mode::kTrain) && batch.inputs.defined()) {
    add("inputs", batch.inputs.dim() == 4 ? "images" : "features", batch.inputs, Mode::kTrain);
    if (batch.inputs.dim() == 4) {
      const at::Tensor channel_means = batch.inputs.detach().to(torch::kDouble).mean({0, 2, 3}).cpu();
      pending_->tensors.back().values.assign(channel_means.data_ptr<double>(),
                                             channel_means.data_ptr<double>() + channel_means.numel());
    }
  }
  if (saves("labels", step, Mode::kTrain)) {
    add("labels", "counts", torch::bincount(labels, {}, classes).to(torch::kDouble), Mode::kTrain, classes);
  }
  if (saves("predictions", step, Mode::kTrain)) {
    const at::Tensor confusion = torch::bincount(labels * classes + predicted, {}, classes * classes);
    add("predictions", "confusion", confusion.to(torch::kDouble), Mode::kTrain, classes * classes);
  }
  const bool weights = saves("weights", step, Mode::kTrain), biases = saves("biases", step, Mode::kTrain);
  const bool gradients = saves("gradients", step, Mode::kTrain), optimizer = saves("optimizer", step, Mode::kTrain);
  for (const auto& [name, parameter] : trainable(trainer)) {
    const bool bias = is_bias(name);
    if (bias ? biases : weights) add(bias ? "biases" : "weights", name, parameter, Mode::kTrain);
    if (gradients && parameter.grad().defined()) add("gradients", name, parameter.grad(), Mode::kTrain);
    if (optimizer) before_.emplace_back(name, parameter.detach().clone());
  }
  if (!std::isfinite(loss_value)) {
    // The trainer fails this step right after us: hand the NaN/Inf over now so that ExplodingTensor sees it.
    before_.clear();
    sink_(std::move(*pending_));
    pending_.reset();
  }
}

void DebugHook::on_step_end(train::Trainer& trainer, const train::StepResult&) {
  if (!pending_) return;
  if (!before_.empty()) {
    const at::NoGradGuard no_grad;
    const auto now = trainer.model().module().named_parameters(/*recurse=*/true);
    for (const auto& [name, before] : before_) {
      const at::Tensor* after = now.find(name);
      if (!after) continue;
      const double weight_norm = before.to(torch::kDouble).norm().item<double>();
      const double update_norm = (after->detach() - before).to(torch::kDouble).norm().item<double>();
      TensorSummary ratio = scalar_summary(weight_norm > 0 ? update_norm / weight_norm : 0.0, "optimizer",
                                           "update_ratio/" + name, pending_->step, Mode::kTrain);
      ratio.values.push_back(weight_norm);
      pending_->tensors.push_back(std::move(ratio));
    }
    before_.clear();
  }
  sink_(std::move(*pending_));
  pending_.reset();
}

void DebugHook::on_epoch_end(train::Trainer& trainer, const train::EpochResult& epoch) {
  if (!epoch.valid) return;
  const int64_t step = std::max<int64_t>(0, epoch.step - 1);  // the last train step before this validation
  StepRecord record{step, Mode::kEval, wall_now(), {}};
  const auto& valid = *epoch.valid;
  // Every validation pass is recorded for the collections that record eval mode (rules compare them all).
  auto records_eval = [&](const char* collection) {
    const auto found = config_.collections.find(collection);
    return found != config_.collections.end() && found->second.save.eval;
  };
  if (records_eval("losses")) {
    record.tensors.push_back(scalar_summary(valid.loss, "losses", "valid_loss", step, Mode::kEval));
  }
  if (records_eval("metrics")) {
    record.tensors.push_back(scalar_summary(valid.accuracy, "metrics", "valid_accuracy", step, Mode::kEval));
  }
  if (records_eval("predictions") && valid.confusion.defined()) {
    const int64_t cells = valid.confusion.numel();
    record.tensors.push_back(summarize(valid.confusion.to(torch::kDouble), "predictions", "confusion", step,
                                       Mode::kEval, {.histogram_bins = 0, .keep_values = cells}));
  }
  if (!record.tensors.empty()) sink_(std::move(record));
}

}  // namespace kennel::debug

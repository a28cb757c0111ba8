// The debugger's training hook: a Trainer callback that, at the steps each
// collection's save config selects, reduces the tensors of that collection
// to TensorSummary records (tensor_record.h) and hands one StepRecord per
// step to a sink (the rule runner, the storage). The trainer never knows it
// is there.
//
// Collections: losses, metrics, weights, biases, gradients, optimizer (update
// ratios), inputs, labels, predictions, and relu_input / relu_output (one
// activation per backbone stage, seen through models::ActivationObserver
// during the training forward of a saved step). Only parameters that require
// grad are recorded, so a frozen backbone simply contributes nothing (the cloud
// hook crashes there); with cached features the backbone does not run at all,
// so the activation collections stay empty and their rules say NoData.
// Thread-safety: called on the training thread; the sink is called there too.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "kennel/debug/tensor_record.h"
#include "kennel/models/activation_probe.h"
#include "kennel/train/trainer.h"

namespace kennel::debug {

// Which steps a collection is saved at. Steps are global train steps from 0.
struct SaveConfig {
  int64_t save_interval = 10;       // every N steps (0: only save_steps)
  std::vector<int64_t> save_steps;  // these steps as well
  int64_t start_step = 0;
  int64_t end_step = -1;            // exclusive; -1: no end
  bool train = true;                // record in training steps
  bool eval = true;                 // record in validation passes

  bool saves(int64_t step) const;
};

struct CollectionConfig {
  static constexpr int64_t kMaxRawValues = 1 << 20;
  SaveConfig save;
  int64_t histogram_bins = 0;  // 0: reductions only
  // Opt-in raw tensors: a tensor with at most this many elements is also saved
  // element by element (in `values`); larger ones keep their reductions only.
  // inputs and relu_output keep their per-channel values instead.
  int64_t raw_values = 0;
};

struct DebugHookConfig {
  std::map<std::string, CollectionConfig> collections;  // absent: not recorded

  // Short CPU runs have tens of steps, not thousands: losses, metrics, labels
  // and predictions every step, tensors every 10 steps (with 30-bin histograms for parameters and
  // gradients), so a 50-step run still gives rules several observations.
  static DebugHookConfig defaults();
  bool records(const std::string& collection) const { return collections.count(collection) > 0; }
};

class DebugHook : public train::TrainerCallback, public models::ActivationObserver {
 public:
  using Sink = std::function<void(StepRecord)>;
  DebugHook(DebugHookConfig config, Sink sink) : config_(std::move(config)), sink_(std::move(sink)) {}

  void on_before_forward(train::Trainer& trainer, const train::TrainBatch& batch) override;
  void observe(const std::string& layer, models::ActivationKind kind, const at::Tensor& pre_activation) override;
  void on_after_backward(train::Trainer& trainer, const train::TrainBatch& batch, const at::Tensor& logits,
                         const at::Tensor& loss) override;
  void on_step_end(train::Trainer& trainer, const train::StepResult& step) override;
  void on_epoch_end(train::Trainer& trainer, const train::EpochResult& epoch) override;

 private:
  bool saves(const std::string& collection, int64_t step, Mode mode) const;
  void add(const std::string& collection, const std::string& what, const at::Tensor& tensor, Mode mode,
           int64_t keep_values = 0);

  DebugHookConfig config_;
  Sink sink_;
  std::optional<StepRecord> pending_;                      // the step being recorded
  std::optional<models::ScopedActivationObserver> watching_;  // during a saved step's forward
  std::vector<std::pair<std::string, at::Tensor>> before_;  // trainable parameters before the optimizer step
};

}  // namespace kennel::debug

// The trainer: epochs of steps over a BatchSource, validation after each
// epoch, and nothing else. Everything around the loop — metrics, checkpoints,
// heartbeats, the debugger, the profiler — is a TrainerCallback attached by
// the job; the trainer never knows which ones are there.
//
// The loop's position (epoch, batch within it, global step and the running
// sums of the epoch) is TrainerState, which a checkpoint saves and a resumed
// job restores, so that a resumed run continues to the same result.
// Stop requests (a signal, a rule) end the loop at a step boundary with a
// reason; max_steps ends it as a completed run (a budget, as in other
// trainers). With a ReplicaGroup (data parallelism) gradients are averaged
// between backward and the optimizer step, reported numbers are summed over
// replicas, and stops are agreed on by every replica at a step boundary.
// Thread-safety: fit() runs on one thread; request_stop() may be called from
// any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "kennel/train/replica_group.h"
#include "kennel/train/schedule.h"

namespace torch::nn {
class Module;
}

namespace kennel::train {

struct TrainBatch {
  at::Tensor inputs;  // images [N,3,H,W] or features [N,F]
  at::Tensor labels;  // [N] int64
};

// Where batches come from: the image loader, or cached features.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual int64_t size() const = 0;
  virtual int64_t batches_per_epoch() const = 0;
  // Starts `epoch` at batch `first_batch` (resumption skips what was done).
  virtual void start_epoch(int64_t epoch, int64_t first_batch) = 0;
  virtual std::optional<TrainBatch> next() = 0;
};

// What the trainer optimises: a forward function over the module's parameters.
class TrainableModel {
 public:
  virtual ~TrainableModel() = default;
  virtual at::Tensor forward(const at::Tensor& inputs) = 0;
  // train(true) except where the model must stay in eval (frozen BatchNorm).
  virtual void set_training(bool training) = 0;
  virtual std::vector<at::Tensor> trainable_parameters() = 0;
  virtual torch::nn::Module& module() = 0;
};

struct EvalMetrics {
  double loss = 0;
  double accuracy = 0;
  double top5_accuracy = 0;
  int64_t samples = 0;
  at::Tensor confusion;  // [C, C] int64: rows = truth, columns = prediction
};

// Where one training step's time went, in seconds. On CUDA the phases are
// only exact with TrainerOptions::synchronize_phases (kernels run async).
struct StepPhases {
  double start = 0;      // steady-clock time (seconds since its epoch) when the step began
  double data = 0;       // waiting for the batch from the loader
  double copy = 0;       // host-to-device copy (and channels-last restride)
  double forward = 0;    // forward pass and loss
  double backward = 0;
  double optimizer = 0;
  // Data parallelism: waiting for the gradients' averaging after backward
  // (communication not hidden behind backward) and for the step's metrics.
  double sync = 0;
  // on_before_forward / on_after_backward callbacks of this step, plus the
  // on_step_end callbacks of the step before (they run after its result).
  double callbacks = 0;
};

struct StepResult {
  int64_t epoch = 0;
  int64_t step = 0;   // global, counting from 1 after the first step
  int64_t batch = 0;  // within the epoch, from 0
  int64_t batch_size = 0;  // over all replicas
  double loss = 0;         // mean over all replicas' samples
  double lr = 0;
  double seconds = 0;
  double images_per_second = 0;
  StepPhases phases;
  // Data parallelism: each replica's busy time this step (data, forward,
  // backward: everything before it waits for the others), by rank.
  std::vector<double> replica_busy_seconds;
};

struct EpochResult {
  int64_t epoch = 0;
  int64_t step = 0;
  double train_loss = 0;
  double train_accuracy = 0;
  double seconds = 0;
  double images_per_second = 0;
  std::optional<EvalMetrics> valid;
};

struct TrainerState {
  int64_t epoch = 0;  // the epoch in progress (or next to start)
  int64_t batch = 0;  // batches done in that epoch
  int64_t step = 0;   // global steps done
  // Running sums of the epoch in progress (restored on resume).
  double loss_sum = 0;
  double correct = 0;
  double seen = 0;
  double epoch_seconds = 0;
};

struct TrainerOptions {
  int64_t epochs = 1;
  int64_t max_steps = 0;  // 0: no limit; reaching it completes the run after validating
  int64_t num_classes = 2;
  double label_smoothing = 0;
  LrSchedule schedule;
  c10::Device device = c10::Device(c10::kCPU);
  std::string precision = "fp32";  // fp32 | bf16 | fp16 (autocast)
  bool channels_last = false;      // image inputs in channels-last memory format
  // evaluate(): inputs are converted to this dtype before the forward pass (a model whose
  // weights were converted once, by models::prepare_inference_graph, runs without autocast).
  at::ScalarType input_dtype = at::kFloat;
  bool synchronize_phases = false;  // CUDA: synchronise at phase boundaries so StepPhases are exact (profiler)
  // Data parallelism (not owned); null for one process. Sources must then hand
  // this replica its shard: padded for training, unpadded for evaluation.
  ReplicaGroup* replicas = nullptr;
};

struct TrainOutcome {
  bool completed = false;   // every epoch ran
  std::string stop_reason;  // why it stopped early (empty when completed)
  TrainerState state;
  std::vector<EpochResult> epochs;  // of this run (not of earlier runs before a resume)
};

class Trainer;

class TrainerCallback {
 public:
  virtual ~TrainerCallback() = default;
  virtual void on_train_begin(Trainer&) {}
  virtual void on_epoch_begin(Trainer&, int64_t /*epoch*/) {}
  // Right before a training step's forward pass (on the thread that runs it).
  virtual void on_before_forward(Trainer&, const TrainBatch&) {}
  // After backward (also when the loss is not finite, right before the step
  // fails, so that observers can record the NaN), before the optimizer step:
  // gradients are populated.
  virtual void on_after_backward(Trainer&, const TrainBatch&, const at::Tensor& /*logits*/,
                                 const at::Tensor& /*loss*/) {}
  virtual void on_step_end(Trainer&, const StepResult&) {}
  virtual void on_epoch_end(Trainer&, const EpochResult&) {}
  virtual void on_train_end(Trainer&, const TrainOutcome&) {}
};

// Loss, accuracy, top-5 and the confusion matrix of `model` over a whole
// source, without gradients (uses options' device, precision, channels_last, num_classes).
EvalMetrics evaluate(TrainableModel& model, BatchSource& source, const TrainerOptions& options);

class Trainer {
 public:
  Trainer(TrainableModel& model, torch::optim::Optimizer& optimizer, BatchSource& train,
          BatchSource* valid, TrainerOptions options);

  void add_callback(std::shared_ptr<TrainerCallback> callback);
  // Runs from state() to the last epoch, or until a stop is requested.
  TrainOutcome fit();
  // Loss, accuracy, top-5 and the confusion matrix over a whole source (no grad).
  EvalMetrics evaluate(BatchSource& source);

  // Ends fit() after the current step (with replicas: after the step at
  // which every replica has heard of it). The first reason wins.
  void request_stop(const std::string& reason);
  bool stop_requested() const { return stop_requested_.load(); }

  TrainerState& state() { return state_; }
  TrainableModel& model() { return model_; }
  torch::optim::Optimizer& optimizer() { return optimizer_; }
  const TrainerOptions& options() const { return options_; }

 private:
  bool step_budget_spent() const;
  // Whether the loop ends now: the local request, or with replicas the agreed one.
  bool stopping() const;
  // With replicas: sums the step's numbers over replicas and agrees on stopping.
  void exchange_step(double& loss_sum, double& correct, double& seen, double busy_seconds, StepResult& step);
  at::Tensor prepare_inputs(const at::Tensor& inputs) const;
  // Before each step: every parameter's gradient undefined, for the backward to set.
  void clear_gradients();
  at::Tensor forward_with_precision(const at::Tensor& inputs);

  TrainableModel& model_;
  torch::optim::Optimizer& optimizer_;
  BatchSource& train_;
  BatchSource* valid_;
  TrainerOptions options_;
  TrainerState state_;
  std::vector<std::shared_ptr<TrainerCallback>> callbacks_;
  std::atomic<bool> stop_requested_{false};
  bool stop_agreed_ = false;  // with replicas: some replica asked to stop, and all know it
  std::mutex stop_mutex_;
  std::string stop_reason_;
};

}  // namespace kennel::train

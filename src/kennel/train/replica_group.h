// The trainer's view of data parallelism, without knowing how it is done:
// the model is replicated in `world_size()` processes, each training on its
// own shard of every batch. Between backward and the optimizer step the
// replicas average their gradients; the numbers the trainer reports (losses,
// accuracies, evaluations) are summed over replicas, each sample counted
// once; and a stop asked for by any replica (a signal, a debugger rule) is
// agreed on by all, at the same step, so that nobody waits for a partner
// that has left. dist/ implements this on PyTorch's c10d; a single process
// has no ReplicaGroup at all.
//
// Every call is collective: all replicas make the same calls in the same
// order. A replica that is gone makes the call throw kennel::Error naming it.
// Thread-safety: called from the training thread.
#pragma once

#include <vector>

#include <ATen/core/Tensor.h>

namespace kennel::train {

class TrainableModel;

class ReplicaGroup {
 public:
  virtual ~ReplicaGroup() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  // Before the loop: rank 0's parameters and buffers everywhere, and gradient
  // averaging set up for `model`'s trainable parameters.
  virtual void attach(TrainableModel& model) = 0;
  // Before each training step's forward pass (e.g. rank 0's BatchNorm
  // statistics broadcast, as DDP does by default).
  virtual void before_forward() = 0;
  // Around backward: afterwards every trainable parameter's gradient is the
  // average over replicas.
  virtual void before_backward() = 0;
  virtual void after_backward() = 0;

  // Every replica's `values` (same length on all), by rank.
  virtual std::vector<std::vector<double>> all_gather(const std::vector<double>& values) = 0;
  // Element-wise sum over replicas, in place (a confusion matrix, metric sums).
  virtual void sum(at::Tensor& tensor) = 0;
};

}  // namespace kennel::train

// DynamicBatcher: the model's task queue. Request handlers enqueue
// preprocessed images and wait on futures; model workers form batches and run
// the model. Handlers never touch the model.
//
// The batch-formation rule (each clause is tested):
//   1. send as soon as max_batch_size images are waiting;
//   2. send what is waiting once the oldest image has waited max_delay;
//   3. a batch holds images of one shape only: the first image of another
//      shape ends it;
//   4. on shutdown, send what is waiting without delay.
// The queue is bounded: enqueue() takes all of a request's images or none and
// answers kUnavailable at once when they do not fit (the server's 503 with
// Retry-After), so memory stays bounded under any load.
//
// Thread-safety: enqueue(), queue_depth() and shutdown() from any thread.
// An exception thrown by the batch function fails that batch's futures only.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <ATen/core/Tensor.h>

#include "kennel/util/status.h"

namespace kennel::serve {

struct BatcherOptions {
  int64_t max_batch_size = 8;  // larger: better throughput, more latency per request
  double max_delay_ms = 5;     // how long a lone image waits for company
  int64_t max_queue = 128;     // images waiting beyond this are refused (503)
  int workers = 1;             // model workers forming batches concurrently

  Status validate() const;  // kInvalidArgument naming the field
};

// [N, ...] images -> [N, C] outputs.
using BatchFunction = std::function<at::Tensor(const at::Tensor& batch)>;

class DynamicBatcher {
 public:
  using Clock = std::chrono::steady_clock;

  DynamicBatcher(BatchFunction run, BatcherOptions options);  // throws kennel::Error for bad options
  ~DynamicBatcher();
  DynamicBatcher(const DynamicBatcher&) = delete;
  DynamicBatcher& operator=(const DynamicBatcher&) = delete;

  // One future per image, in order, each resolving to that image's output row.
  // kUnavailable when the queue cannot take them all; kCancelled after shutdown().
  Result<std::vector<std::future<at::Tensor>>> enqueue(std::vector<at::Tensor> images);

  // Runs what is queued, then stops the workers. Idempotent.
  void shutdown();
  int64_t queue_depth() const;
  // Called by workers after each batch with its size and model seconds.
  void set_batch_observer(std::function<void(int64_t size, double seconds)> observer);

  // Rule 1-4 above, as a pure function of the queue: how many of the first
  // images to send now, or nullopt to keep waiting (until `wake_at`).
  struct Pending {
    std::vector<int64_t> shape;
    Clock::time_point enqueued;
  };
  static std::optional<size_t> batch_to_send(const std::deque<Pending>& queue, Clock::time_point now,
                                             const BatcherOptions& options, bool stopping,
                                             Clock::time_point* wake_at);

 private:
  struct Task {
    at::Tensor image;
    std::promise<at::Tensor> promise;
    Pending pending;
  };
  void worker_loop();

  BatchFunction run_;
  BatcherOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Task> queue_;
  std::deque<Pending> pending_;  // mirrors queue_ for batch_to_send
  bool stopping_ = false;
  std::function<void(int64_t, double)> observer_;
  std::vector<std::thread> workers_;
};

}  // namespace kennel::serve

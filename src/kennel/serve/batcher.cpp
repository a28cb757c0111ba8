#include "kennel/serve/batcher.h"

#include <ATen/ATen.h>

namespace kennel::serve {

Status BatcherOptions::validate() const {
  if (max_batch_size < 1) return invalid_argument("--max-batch-size must be >= 1, got {}", max_batch_size);
  if (!(max_delay_ms >= 0 && max_delay_ms <= 60'000)) {
    return invalid_argument("--max-batch-delay-ms must be in [0, 60000], got {}", max_delay_ms);
  }
  if (max_queue < max_batch_size) {
    return invalid_argument("--max-queue ({}) must be >= --max-batch-size ({})", max_queue, max_batch_size);
  }
  if (workers < 1 || workers > 64) return invalid_argument("--workers must be in [1, 64], got {}", workers);
  return {};
}

DynamicBatcher::DynamicBatcher(BatchFunction run, BatcherOptions options)
    : run_(std::move(run)), options_(options) {
  if (Status status = options_.validate(); !status.ok()) throw Error(status);
  for (int i = 0; i < options_.workers; ++i) workers_.emplace_back([this] { worker_loop(); });
}

DynamicBatcher::~DynamicBatcher() { shutdown(); }

void DynamicBatcher::shutdown() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
  }
  changed_.notify_all();
  for (auto& worker : workers_) {
    if (worker.joinable()) worker.join();
  }
  workers_.clear();
}

int64_t DynamicBatcher::queue_depth() const {
  std::lock_guard lock(mutex_);
  return static_cast<int64_t>(queue_.size());
}

void DynamicBatcher::set_batch_observer(std::function<void(int64_t, double)> observer) {
  std::lock_guard lock(mutex_);
  observer_ = std::move(observer);
}

Result<std::vector<std::future<at::Tensor>>> DynamicBatcher::enqueue(std::vector<at::Tensor> images) {
  std::vector<std::future<at::Tensor>> futures;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return Status(ErrorCode::kCancelled, "the server is shutting down");
    if (static_cast<int64_t>(queue_.size() + images.size()) > options_.max_queue) {
      return Status(ErrorCode::kUnavailable,
                    fmt::format("the inference queue is full ({} images waiting, limit {}): retry shortly",
                                queue_.size(), options_.max_queue));
    }
    const auto now = Clock::now();
    for (auto& image : images) {
      Task task;
      task.pending = {image.sizes().vec(), now};
      task.image = std::move(image);
      futures.push_back(task.promise.get_future());
      pending_.push_back(task.pending);
      queue_.push_back(std::move(task));
    }
  }
  changed_.notify_all();
  return futures;
}

std::optional<size_t> DynamicBatcher::batch_to_send(const std::deque<Pending>& queue, Clock::time_point now,
                                                    const BatcherOptions& options, bool stopping,
                                                    Clock::time_point* wake_at) {
  if (queue.empty()) return std::nullopt;
  // Rule 3: only the leading run of images shaped like the first.
  size_t same_shape = 1;
  while (same_shape < queue.size() && same_shape < static_cast<size_t>(options.max_batch_size) &&
         queue[same_shape].shape == queue.front().shape) {
    ++same_shape;
  }
  const bool shape_break = same_shape < queue.size() && same_shape < static_cast<size_t>(options.max_batch_size);
  if (same_shape == static_cast<size_t>(options.max_batch_size)) return same_shape;  // rule 1
  if (shape_break || stopping) return same_shape;                                     // rules 3, 4
  const auto deadline = queue.front().enqueued + std::chrono::duration_cast<Clock::duration>(
                                                     std::chrono::duration<double, std::milli>(options.max_delay_ms));
  if (now >= deadline) return same_shape;  // rule 2
  if (wake_at != nullptr) *wake_at = deadline;
  return std::nullopt;
}

void DynamicBatcher::worker_loop() {
  while (true) {
    std::vector<Task> batch;
    std::function<void(int64_t, double)> observer;
    {
      std::unique_lock lock(mutex_);
      while (true) {
        if (queue_.empty()) {
          if (stopping_) return;
          changed_.wait(lock);
          continue;
        }
        Clock::time_point wake_at;
        const auto count = batch_to_send(pending_, Clock::now(), options_, stopping_, &wake_at);
        if (count) {
          for (size_t i = 0; i < *count; ++i) {
            batch.push_back(std::move(queue_.front()));
            queue_.pop_front();
            pending_.pop_front();
          }
          break;
        }
        changed_.wait_until(lock, wake_at);
      }
      observer = observer_;
    }
    changed_.notify_all();  // another worker may have a batch to form from what is left
    const auto start = Clock::now();
    try {
      std::vector<at::Tensor> images;
      images.reserve(batch.size());
      for (auto& task : batch) images.push_back(task.image);
      const at::Tensor outputs = run_(at::stack(images));
      for (size_t i = 0; i < batch.size(); ++i) batch[i].promise.set_value(outputs[static_cast<int64_t>(i)]);
    } catch (...) {
      for (auto& task : batch) task.promise.set_exception(std::current_exception());
    }
    if (observer) {
      observer(static_cast<int64_t>(batch.size()), std::chrono::duration<double>(Clock::now() - start).count());
    }
  }
}

}  // namespace kennel::serve

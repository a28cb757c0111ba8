// The dynamic batcher: each clause of the batch-formation rule, backpressure,
// errors and shutdown.
#include "kennel/serve/batcher.h"

#include <gtest/gtest.h>

#include <atomic>

#include <torch/torch.h>

namespace kennel::serve {
namespace {

using Clock = DynamicBatcher::Clock;
using Pending = DynamicBatcher::Pending;

std::deque<Pending> queue_of(std::vector<std::vector<int64_t>> shapes, Clock::time_point enqueued) {
  std::deque<Pending> queue;
  for (auto& shape : shapes) queue.push_back({shape, enqueued});
  return queue;
}

BatcherOptions options(int64_t max_batch, double delay_ms) {
  BatcherOptions o;
  o.max_batch_size = max_batch;
  o.max_delay_ms = delay_ms;
  return o;
}

TEST(BatchRuleTest, SendsWhenFull) {
  const auto now = Clock::now();
  auto queue = queue_of({{3}, {3}, {3}, {3}, {3}}, now);
  EXPECT_EQ(DynamicBatcher::batch_to_send(queue, now, options(4, 1000), false, nullptr), 4u);
}

TEST(BatchRuleTest, WaitsUntilTheOldestHasWaitedMaxDelay) {
  const auto start = Clock::now();
  auto queue = queue_of({{3}, {3}}, start);
  Clock::time_point wake;
  EXPECT_FALSE(DynamicBatcher::batch_to_send(queue, start, options(4, 10), false, &wake).has_value());
  EXPECT_EQ(wake, start + std::chrono::milliseconds(10));
  EXPECT_EQ(DynamicBatcher::batch_to_send(queue, start + std::chrono::milliseconds(10), options(4, 10), false, nullptr),
            2u);
}

TEST(BatchRuleTest, ADifferentShapeEndsTheBatch) {
  const auto now = Clock::now();
  auto queue = queue_of({{3}, {3}, {5}, {3}}, now);
  EXPECT_EQ(DynamicBatcher::batch_to_send(queue, now, options(8, 1000), false, nullptr), 2u);
}

TEST(BatchRuleTest, ShutdownSendsWithoutDelayAndEmptyQueueWaits) {
  const auto now = Clock::now();
  auto queue = queue_of({{3}}, now);
  EXPECT_EQ(DynamicBatcher::batch_to_send(queue, now, options(8, 1000), true, nullptr), 1u);
  EXPECT_FALSE(DynamicBatcher::batch_to_send({}, now, options(8, 1000), true, nullptr).has_value());
}

TEST(DynamicBatcherTest, RowsComeBackToTheirOwnRequests) {
  std::vector<int64_t> sizes;
  std::mutex mutex;
  DynamicBatcher batcher([](const at::Tensor& batch) { return batch * 2; }, options(4, 20));
  batcher.set_batch_observer([&](int64_t size, double) {
    std::lock_guard lock(mutex);
    sizes.push_back(size);
  });
  std::vector<std::future<at::Tensor>> futures;
  for (int i = 0; i < 6; ++i) {
    auto enqueued = batcher.enqueue({torch::full({2}, static_cast<float>(i))});
    ASSERT_TRUE(enqueued.ok());
    futures.push_back(std::move((*enqueued)[0]));
  }
  for (int i = 0; i < 6; ++i) {
    EXPECT_TRUE(torch::equal(futures[static_cast<size_t>(i)].get(), torch::full({2}, 2.0f * static_cast<float>(i))));
  }
  batcher.shutdown();
  std::lock_guard lock(mutex);
  int64_t total = 0;
  for (int64_t size : sizes) {
    EXPECT_LE(size, 4);
    total += size;
  }
  EXPECT_EQ(total, 6);
  EXPECT_LT(sizes.size(), 6u) << "six images arriving together should share batches";
}

TEST(DynamicBatcherTest, AFullQueueRefusesTheWholeRequestAtOnce) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  BatcherOptions o = options(1, 0);
  o.max_queue = 2;
  DynamicBatcher batcher(
      [released](const at::Tensor& batch) {
        released.wait();
        return batch;
      },
      o);
  auto first = batcher.enqueue({torch::zeros({1})});  // taken by the worker, which blocks
  ASSERT_TRUE(first.ok());
  while (batcher.queue_depth() != 0) std::this_thread::yield();
  ASSERT_TRUE(batcher.enqueue({torch::zeros({1}), torch::zeros({1})}).ok());  // fills the queue
  auto refused = batcher.enqueue({torch::zeros({1})});
  EXPECT_EQ(refused.status().code(), ErrorCode::kUnavailable);
  EXPECT_NE(refused.status().message().find("full"), std::string::npos);
  EXPECT_EQ(batcher.queue_depth(), 2);
  release.set_value();
  (*first)[0].get();
  batcher.shutdown();
  EXPECT_EQ(batcher.enqueue({torch::zeros({1})}).status().code(), ErrorCode::kCancelled);
}

TEST(DynamicBatcherTest, AFailingBatchFailsOnlyItsFutures) {
  std::atomic<int> calls{0};
  DynamicBatcher batcher(
      [&](const at::Tensor& batch) {
        if (calls++ == 0) throw std::runtime_error("model exploded");
        return batch;
      },
      options(1, 0));
  auto failing = batcher.enqueue({torch::zeros({1})});
  ASSERT_TRUE(failing.ok());
  EXPECT_THROW((*failing)[0].get(), std::runtime_error);
  auto fine = batcher.enqueue({torch::ones({1})});
  ASSERT_TRUE(fine.ok());
  EXPECT_TRUE(torch::equal((*fine)[0].get(), torch::ones({1})));
}

TEST(DynamicBatcherTest, ShutdownFinishesQueuedWork) {
  DynamicBatcher batcher([](const at::Tensor& batch) { return batch + 1; }, options(2, 10'000));
  auto futures = batcher.enqueue({torch::zeros({1})});
  ASSERT_TRUE(futures.ok());
  batcher.shutdown();  // would otherwise wait 10 s for a second image
  EXPECT_TRUE(torch::equal((*futures)[0].get(), torch::ones({1})));
}

TEST(BatcherOptionsTest, BadValuesNameTheFlag) {
  BatcherOptions o;
  o.max_batch_size = 0;
  EXPECT_NE(o.validate().message().find("--max-batch-size"), std::string::npos);
  o = BatcherOptions();
  o.max_queue = 1;
  EXPECT_NE(o.validate().message().find("--max-queue"), std::string::npos);
  o = BatcherOptions();
  o.workers = 0;
  EXPECT_NE(o.validate().message().find("--workers"), std::string::npos);
  o = BatcherOptions();
  o.max_delay_ms = -1;
  EXPECT_NE(o.validate().message().find("--max-batch-delay-ms"), std::string::npos);
}

}  // namespace
}  // namespace kennel::serve

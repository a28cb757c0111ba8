#include "kennel/train/batch_sources.h"

#include <ATen/ops/arange.h>
#include <ATen/ops/randperm.h>
#include <ATen/ops/tensor.h>
#include <ATen/CPUGeneratorImpl.h>

namespace kennel::train {

std::optional<TrainBatch> ImageBatchSource::next() {
  auto batch = loader_.next();
  if (!batch) return std::nullopt;
  return TrainBatch{std::move(batch->images), std::move(batch->labels)};
}

TensorBatchSource::TensorBatchSource(at::Tensor inputs, at::Tensor labels, TensorBatchOptions options)
    : inputs_(std::move(inputs)), labels_(std::move(labels)), options_(options) {}

int64_t TensorBatchSource::batches_per_epoch() const {
  const int64_t n = options_.shard.size(inputs_.size(0));
  return options_.drop_last ? n / options_.batch_size : (n + options_.batch_size - 1) / options_.batch_size;
}

void TensorBatchSource::start_epoch(int64_t epoch, int64_t first_batch) {
  const int64_t n = inputs_.size(0);
  if (options_.shuffle) {
    // A generator of our own, seeded from (seed, epoch): the global RNG (dropout) is untouched.
    auto generator = at::make_generator<at::CPUGeneratorImpl>(options_.seed * 1000003ull + static_cast<uint64_t>(epoch));
    order_ = at::randperm(n, generator, at::TensorOptions().dtype(at::kLong));
  } else {
    order_ = at::arange(n, at::TensorOptions().dtype(at::kLong));
  }
  if (!options_.shard.whole()) {
    const at::Tensor whole = order_.contiguous();
    std::vector<int64_t> positions(whole.data_ptr<int64_t>(), whole.data_ptr<int64_t>() + n);
    order_ = at::tensor(options_.shard.take(positions), at::TensorOptions().dtype(at::kLong));
  }
  next_batch_ = first_batch;
}

std::optional<TrainBatch> TensorBatchSource::next() {
  if (!order_.defined() || next_batch_ >= batches_per_epoch()) return std::nullopt;
  const int64_t start = next_batch_ * options_.batch_size;
  const int64_t length = std::min(options_.batch_size, order_.size(0) - start);
  ++next_batch_;
  const at::Tensor indices = order_.narrow(0, start, length);
  return TrainBatch{inputs_.index_select(0, indices), labels_.index_select(0, indices)};
}

}  // namespace kennel::train

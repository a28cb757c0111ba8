// BatchSource implementations: images from the ImageLoader, or tensors held
// in memory (cached backbone features). Both order samples as a function of
// (seed, epoch) and can start an epoch at any batch, so resumed jobs see the
// same batches. Thread-safety: one consumer thread.
#pragma once

#include <cstdint>

#include "kennel/data/loader.h"
#include "kennel/data/shard.h"
#include "kennel/train/trainer.h"

namespace kennel::train {

class ImageBatchSource : public BatchSource {
 public:
  explicit ImageBatchSource(data::ImageLoader& loader) : loader_(loader) {}
  int64_t size() const override { return loader_.size(); }
  int64_t batches_per_epoch() const override { return loader_.batches_per_epoch(); }
  void start_epoch(int64_t epoch, int64_t first_batch) override { loader_.start_epoch(epoch, first_batch); }
  std::optional<TrainBatch> next() override;

 private:
  data::ImageLoader& loader_;
};

struct TensorBatchOptions {
  int64_t batch_size = 32;
  bool shuffle = false;
  uint64_t seed = 0;
  bool drop_last = false;
  data::Shard shard{};  // a data-parallel rank's share of each epoch
};

class TensorBatchSource : public BatchSource {
 public:
  // `inputs` [N, ...], `labels` [N] int64, on the CPU.
  TensorBatchSource(at::Tensor inputs, at::Tensor labels, TensorBatchOptions options);
  int64_t size() const override { return inputs_.size(0); }  // all shards' samples
  int64_t batches_per_epoch() const override;
  void start_epoch(int64_t epoch, int64_t first_batch) override;
  std::optional<TrainBatch> next() override;

 private:
  at::Tensor inputs_;
  at::Tensor labels_;
  TensorBatchOptions options_;
  at::Tensor order_;
  int64_t next_batch_ = 0;
};

}  // namespace kennel::train

// ImageLoader: a pool of decode threads feeding a bounded window of ready
// batches, in a deterministic order.
//
// Each worker takes the next (batch, slot) of the epoch, reads and decodes
// the file, runs the ImagePipeline and writes the normalised floats straight
// into that batch's tensor: no per-sample tensors, no collate copy. Workers
// never run more than `prefetch_batches` batches ahead of the consumer, so
// memory is bounded. Batches come out in order; the sample order is a
// function of (seed, epoch) and each sample's augmentation of (seed, epoch,
// sample), so results do not depend on the number of threads.
//
// Bad files (unreadable, corrupt, truncated, too large...) are skipped: the
// batch comes out smaller, and every skipped file is counted and listed with
// its reason (never a crash, never a silent loss). An unexpected exception in
// a worker travels as std::exception_ptr and is rethrown by next() with the
// file named. Destroying the loader mid-epoch stops and joins the workers.
//
// Thread-safety: one consumer thread calls start_epoch()/next(); stats() and
// skipped_files() may be called from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <ATen/core/Tensor.h>

#include "kennel/data/image_folder.h"
#include "kennel/data/shard.h"
#include "kennel/data/transforms.h"
#include "kennel/util/status.h"

namespace kennel::data {

struct LoaderOptions {
  int64_t batch_size = 32;
  bool shuffle = false;
  uint64_t seed = 0;
  bool drop_last = false;
  int threads = 0;  // decode threads; 0 = all cores
  // Batches decoded ahead of the consumer. More smooths out slow files at the
  // cost of batch_size * 3 * crop^2 * 4 bytes each.
  int prefetch_batches = 4;
  // kHwc hands out channels-last batches (what oneDNN convolutions prefer).
  PixelLayout layout = PixelLayout::kChw;
  int64_t max_pixels = 89'478'485;  // decompression-bomb guard (0 = none)
  bool reduced_decode = true;        // JPEG DCT-scaled decode when the target is much smaller
  bool apply_exif_orientation = true;
  // A data-parallel rank's share of each epoch (data/shard.h); whole by default.
  Shard shard{};

  Status validate() const;
};

struct Batch {
  at::Tensor images;  // [B, 3, crop, crop] float32; channels-last strides when layout is kHwc
  at::Tensor labels;  // [B] int64
  std::vector<std::string> paths;
  std::vector<int64_t> sample_indices;  // positions in the loader's sample list
  int64_t index = 0;                    // batch number within the epoch
};

struct SkippedFile {
  std::string path;
  std::string reason;
  int64_t epoch = 0;
};

struct LoaderStats {
  int64_t images = 0;          // delivered
  int64_t skipped = 0;         // bad files skipped (all epochs)
  int64_t batches = 0;         // delivered
  double decode_seconds = 0;   // summed over workers: read + decode + transform
  double wait_seconds = 0;     // consumer time blocked in next()
  int64_t ready_batches = 0;   // decoded batches waiting for the consumer, when stats() was called
};

class ImageLoader {
 public:
  // Throws kennel::Error when options are invalid or `samples` is empty.
  ImageLoader(std::vector<ImageSample> samples, ImagePipeline pipeline, LoaderOptions options);
  ~ImageLoader();
  ImageLoader(const ImageLoader&) = delete;
  ImageLoader& operator=(const ImageLoader&) = delete;

  int64_t size() const { return static_cast<int64_t>(samples_.size()); }  // all shards' samples
  int64_t epoch_size() const;  // samples this loader delivers per epoch (its shard's)
  int64_t batches_per_epoch() const;
  // Starts (or restarts) an epoch at batch `first_batch` (resumption skips
  // what was done without decoding it); an epoch in progress is abandoned.
  void start_epoch(int64_t epoch, int64_t first_batch = 0);
  // The next batch of the current epoch, or nullopt when it is over.
  std::optional<Batch> next();
  // Stops the workers (idempotent); next() returns nullopt afterwards.
  void stop();

  LoaderStats stats() const;
  std::vector<SkippedFile> skipped_files() const;
  // This shard's sample order of an epoch (exposed for tests and resumption).
  std::vector<int64_t> epoch_order(int64_t epoch) const;

 private:
  struct PendingBatch;
  void worker_loop();
  void fill_slot(const std::shared_ptr<PendingBatch>& batch, int64_t slot, int64_t sample_index,
                 int64_t epoch);
  Batch finish_batch(PendingBatch& pending);
  int64_t batch_length(int64_t batch) const;

  const std::vector<ImageSample> samples_;
  const ImagePipeline pipeline_;
  const LoaderOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable work_ready_;   // workers wait here
  std::condition_variable batch_ready_;  // the consumer waits here
  bool stopping_ = false;
  uint64_t generation_ = 0;  // bumped by start_epoch; stale work is discarded
  int64_t epoch_ = 0;
  bool epoch_active_ = false;
  std::vector<int64_t> order_;
  int64_t next_task_ = 0;        // next (batch * batch_size + slot) to hand out
  int64_t next_to_deliver_ = 0;  // batch the consumer waits for
  std::map<int64_t, std::shared_ptr<PendingBatch>> pending_;
  std::exception_ptr worker_error_;
  LoaderStats stats_;
  std::vector<SkippedFile> skipped_;
  std::vector<std::thread> workers_;
};

}  // namespace kennel::data

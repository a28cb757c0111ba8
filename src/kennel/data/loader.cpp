#include "kennel/data/loader.h"

#include <algorithm>
#include <chrono>
#include <numeric>
#include <random>

#include <ATen/ops/empty.h>
#include <ATen/ops/tensor.h>

#include "kennel/data/decode.h"
#include "kennel/util/fs.h"
#include "kennel/util/parallel.h"

namespace kennel::data {

namespace {
// splitmix64: decorrelates (seed, epoch, sample) into independent RNG seeds.
uint64_t mix(uint64_t value) {
  value += 0x9E3779B97F4A7C15ull;
  value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9ull;
  value = (value ^ (value >> 27)) * 0x94D049BB133111EBull;
  return value ^ (value >> 31);
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

struct ImageLoader::PendingBatch {
  int64_t index = 0;
  uint64_t generation = 0;
  at::Tensor images;
  std::vector<int64_t> labels;
  std::vector<int64_t> sample_indices;
  std::vector<uint8_t> ok;  // per slot; written by the slot's worker only
  int64_t remaining = 0;    // guarded by the loader mutex
};

Status LoaderOptions::validate() const {
  if (batch_size < 1) return invalid_argument("batch_size must be >= 1, got {}", batch_size);
  if (threads < 0) return invalid_argument("threads must be >= 0 (0 = all cores), got {}", threads);
  if (prefetch_batches < 1) {
    return invalid_argument("prefetch_batches must be >= 1, got {}", prefetch_batches);
  }
  if (max_pixels < 0) return invalid_argument("max_pixels must be >= 0, got {}", max_pixels);
  if (shard.count < 1 || shard.index < 0 || shard.index >= shard.count) {
    return invalid_argument("shard {} of {} does not exist", shard.index, shard.count);
  }
  return {};
}

ImageLoader::ImageLoader(std::vector<ImageSample> samples, ImagePipeline pipeline,
                         LoaderOptions options)
    : samples_(std::move(samples)), pipeline_(std::move(pipeline)), options_(options) {
  Status status = options_.validate();
  if (!status.ok()) throw Error(status);
  if (samples_.empty()) throw Error(failed_precondition("the loader was given no images"));
  const int threads = options_.threads > 0 ? options_.threads : default_thread_count();
  workers_.reserve(static_cast<size_t>(threads));
  for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ImageLoader::~ImageLoader() { stop(); }

void ImageLoader::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
    epoch_active_ = false;
  }
  work_ready_.notify_all();
  batch_ready_.notify_all();
  for (auto& worker : workers_) {
    if (worker.joinable()) worker.join();
  }
}

int64_t ImageLoader::epoch_size() const { return options_.shard.size(static_cast<int64_t>(samples_.size())); }

int64_t ImageLoader::batches_per_epoch() const {
  const int64_t n = epoch_size();
  return options_.drop_last ? n / options_.batch_size
                            : (n + options_.batch_size - 1) / options_.batch_size;
}

int64_t ImageLoader::batch_length(int64_t batch) const {
  const int64_t n = epoch_size();
  return std::min(options_.batch_size, n - batch * options_.batch_size);
}

std::vector<int64_t> ImageLoader::epoch_order(int64_t epoch) const {
  std::vector<int64_t> order(samples_.size());
  std::iota(order.begin(), order.end(), 0);
  if (options_.shuffle) {
    std::mt19937_64 rng(mix(options_.seed ^ mix(static_cast<uint64_t>(epoch))));
    std::shuffle(order.begin(), order.end(), rng);
  }
  return options_.shard.take(order);
}

void ImageLoader::start_epoch(int64_t epoch, int64_t first_batch) {
  auto order = epoch_order(epoch);
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    ++generation_;
    epoch_ = epoch;
    epoch_active_ = true;
    order_ = std::move(order);
    first_batch = std::clamp<int64_t>(first_batch, 0, batches_per_epoch());
    next_task_ = first_batch * options_.batch_size;
    next_to_deliver_ = first_batch;
    pending_.clear();
  }
  work_ready_.notify_all();
}

void ImageLoader::worker_loop() {
  while (true) {
    std::shared_ptr<PendingBatch> batch;
    int64_t slot = 0, sample_index = 0, epoch = 0;
    {
      std::unique_lock lock(mutex_);
      // Bounded: only hand out work for batches within the prefetch window.
      work_ready_.wait(lock, [&] {
        if (stopping_) return true;
        if (!epoch_active_ || worker_error_) return false;
        // A partial last batch has fewer tasks than batch_size: stop at the epoch's last sample.
        const int64_t epoch_tasks =
            std::min<int64_t>(epoch_size(), batches_per_epoch() * options_.batch_size);
        const int64_t batch_index = next_task_ / options_.batch_size;
        return next_task_ < epoch_tasks && batch_index < next_to_deliver_ + options_.prefetch_batches;
      });
      if (stopping_) return;
      const int64_t task = next_task_++;
      const int64_t batch_index = task / options_.batch_size;
      slot = task % options_.batch_size;
      auto& entry = pending_[batch_index];
      if (!entry) {
        entry = std::make_shared<PendingBatch>();
        entry->index = batch_index;
        entry->generation = generation_;
        const int64_t length = batch_length(batch_index);
        const int64_t size = pipeline_.output_size();
        auto tensor_options = at::TensorOptions().dtype(at::kFloat);
        entry->images = at::empty({length, 3, size, size},
                                  tensor_options.memory_format(options_.layout == PixelLayout::kHwc
                                                                   ? at::MemoryFormat::ChannelsLast
                                                                   : at::MemoryFormat::Contiguous));
        entry->labels.assign(static_cast<size_t>(length), 0);
        entry->sample_indices.assign(static_cast<size_t>(length), 0);
        entry->ok.assign(static_cast<size_t>(length), 0);
        entry->remaining = length;
      }
      batch = entry;
      sample_index = order_[static_cast<size_t>(task)];
      epoch = epoch_;
    }
    // Wake another worker if more work is available in the window.
    work_ready_.notify_one();
    try {
      fill_slot(batch, slot, sample_index, epoch);
    } catch (const std::exception& error) {
      std::lock_guard lock(mutex_);
      if (!worker_error_) {
        worker_error_ = std::make_exception_ptr(Error(internal_error(
            "loader thread failed on '{}': {}", samples_[static_cast<size_t>(sample_index)].path,
            error.what())));
      }
    }
    {
      std::lock_guard lock(mutex_);
      if (batch->generation == generation_ && --batch->remaining == 0) batch_ready_.notify_all();
      if (worker_error_) batch_ready_.notify_all();
    }
  }
}

void ImageLoader::fill_slot(const std::shared_ptr<PendingBatch>& batch, int64_t slot,
                            int64_t sample_index, int64_t epoch) {
  const auto start = std::chrono::steady_clock::now();
  const ImageSample& sample = samples_[static_cast<size_t>(sample_index)];
  batch->labels[static_cast<size_t>(slot)] = sample.label;
  batch->sample_indices[static_cast<size_t>(slot)] = sample_index;

  Status failure;
  auto bytes = read_file_bytes(sample.path, 256ull << 20);
  if (!bytes.ok()) {
    failure = bytes.status();
  } else {
    DecodeOptions decode_options;
    decode_options.max_pixels = options_.max_pixels;
    decode_options.min_short_side = options_.reduced_decode ? pipeline_.min_decode_short_side() : 0;
    decode_options.apply_exif_orientation = options_.apply_exif_orientation;
    auto decoded = decode_image(*bytes, decode_options);
    if (!decoded.ok()) {
      failure = decoded.status();
    } else {
      Rng rng(mix(options_.seed ^ mix(static_cast<uint64_t>(epoch) * 0x100000001B3ull +
                                      static_cast<uint64_t>(sample_index))));
      const int64_t size = pipeline_.output_size();
      float* out = batch->images.data_ptr<float>() + slot * 3 * size * size;
      pipeline_.apply(decoded->rgb, rng, options_.layout, out);
      batch->ok[static_cast<size_t>(slot)] = 1;
    }
  }
  std::lock_guard lock(mutex_);
  stats_.decode_seconds += seconds_since(start);
  if (!failure.ok() && batch->generation == generation_) {
    ++stats_.skipped;
    skipped_.push_back({sample.path, failure.message(), epoch});
  }
}

Batch ImageLoader::finish_batch(PendingBatch& pending) {
  Batch batch;
  batch.index = pending.index;
  std::vector<int64_t> good;
  for (size_t i = 0; i < pending.ok.size(); ++i) {
    if (pending.ok[i]) good.push_back(static_cast<int64_t>(i));
  }
  if (good.size() == pending.ok.size()) {
    batch.images = std::move(pending.images);
  } else {
    // Rare path: drop the slots of skipped files, keeping the memory format.
    batch.images = at::empty({static_cast<int64_t>(good.size()), pending.images.size(1),
                              pending.images.size(2), pending.images.size(3)},
                             pending.images.options().memory_format(
                                 pending.images.suggest_memory_format()));
    for (size_t j = 0; j < good.size(); ++j) {
      batch.images.select(0, static_cast<int64_t>(j)).copy_(pending.images.select(0, good[j]));
    }
  }
  std::vector<int64_t> labels;
  for (int64_t slot : good) {
    labels.push_back(pending.labels[static_cast<size_t>(slot)]);
    batch.sample_indices.push_back(pending.sample_indices[static_cast<size_t>(slot)]);
    batch.paths.push_back(samples_[static_cast<size_t>(batch.sample_indices.back())].path);
  }
  batch.labels = at::tensor(labels, at::TensorOptions().dtype(at::kLong));
  return batch;
}

std::optional<Batch> ImageLoader::next() {
  const auto start = std::chrono::steady_clock::now();
  std::unique_lock lock(mutex_);
  while (true) {
    if (worker_error_) {
      epoch_active_ = false;
      std::rethrow_exception(worker_error_);
    }
    if (stopping_ || !epoch_active_ || next_to_deliver_ >= batches_per_epoch()) {
      epoch_active_ = false;
      return std::nullopt;
    }
    auto it = pending_.find(next_to_deliver_);
    if (it == pending_.end() || it->second->remaining > 0) {
      batch_ready_.wait(lock);
      continue;
    }
    auto pending = it->second;
    pending_.erase(it);
    ++next_to_deliver_;
    lock.unlock();
    work_ready_.notify_all();  // the window moved
    Batch batch = finish_batch(*pending);
    lock.lock();
    stats_.wait_seconds += seconds_since(start);
    if (batch.labels.numel() == 0) continue;  // every file of the batch was bad
    stats_.images += batch.labels.numel();
    ++stats_.batches;
    return batch;
  }
}

LoaderStats ImageLoader::stats() const {
  std::lock_guard lock(mutex_);
  LoaderStats stats = stats_;
  for (const auto& [index, batch] : pending_) stats.ready_batches += batch->remaining == 0 ? 1 : 0;
  return stats;
}

std::vector<SkippedFile> ImageLoader::skipped_files() const {
  std::lock_guard lock(mutex_);
  return skipped_;
}

}  // namespace kennel::data

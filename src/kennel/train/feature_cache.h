// The feature cache: with a frozen backbone and no augmentation, the
// backbone's output for an image never changes, so it is computed once and
// every later job with the same (architecture, weights, dataset content,
// transform) trains its head on the cached features — the step that makes
// tuning frozen-backbone models cheap.
//
// The key is a SHA-256 over those four identities: weights by the file's
// content hash, the dataset by every file's relative path, label and content
// hash, the transform by its parameters. Any change gives a new key. Entries
// are written atomically under `<home>/cache/features/<key>/`.
// Thread-safety: concurrent processes may compute the same entry; the
// rename makes the last writer win with identical content.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "kennel/data/image_folder.h"
#include "kennel/data/loader.h"
#include "kennel/util/status.h"

namespace kennel::train {

struct FeatureSet {
  at::Tensor features;  // [N, F] float32, CPU
  at::Tensor labels;    // [N] int64
  int64_t skipped = 0;  // bad files left out
  at::Tensor sample_indices;  // [N] int64: each row's position in the loader's samples (not cached)
};

// SHA-256 over (relative path, label, content hash) of every sample, in order.
std::string dataset_content_hash(const std::vector<data::ImageSample>& samples,
                                 const std::filesystem::path& root);
// SHA-256 of a file's bytes (weights); "random-init:<seed>" style ids pass through unchanged.
Result<std::string> file_content_hash(const std::filesystem::path& path);

std::string feature_cache_key(const std::string& arch, const std::string& weights_id,
                              const std::string& dataset_id, const std::string& transform_id);

class FeatureCache {
 public:
  explicit FeatureCache(std::filesystem::path dir) : dir_(std::move(dir)) {}
  // nullopt when the entry is absent; an unreadable entry is treated as absent (and logged).
  std::optional<FeatureSet> load(const std::string& key, const std::string& split) const;
  Status store(const std::string& key, const std::string& split, const FeatureSet& features) const;

 private:
  std::filesystem::path dir_;
};

// Runs `extract` (images -> features, no grad) over every batch of the loader.
FeatureSet compute_features(data::ImageLoader& loader,
                            const std::function<at::Tensor(const at::Tensor&)>& extract,
                            const std::string& progress_label, bool quiet);

}  // namespace kennel::train

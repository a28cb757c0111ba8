// The feature cache: with a frozen backbone and no augmentation, the
// backbone's output for an image never changes, so it is computed once and
// every later job with the same inputs trains its head on the cached
// features — the step that makes tuning frozen-backbone models cheap.
//
// The key is a SHA-256 over everything that decides a feature's value
// (FeatureCacheIdentity): architecture, weights (the file's content hash),
// the dataset (every file's relative path, label and content hash), the
// transform's parameters, the device, precision and memory layout the
// backbone ran with, and the code versions of the decoder, the transforms
// and the backbones (bumped when their output changes). Any change gives a
// new key. Entries are written atomically under `<home>/cache/features/<key>/`
// with an `identity.json` saying what they hold, for `kennel cache list|prune`.
// Thread-safety: concurrent processes may compute the same entry; the
// rename makes the last writer win with identical content.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json_fwd.hpp>

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
// A file named in `identities` (relative path -> an identity that changes with
// the content, such as an S3 object's key and ETag) is not read: its identity
// stands for its content hash.
std::string dataset_content_hash(const std::vector<data::ImageSample>& samples,
                                 const std::filesystem::path& root,
                                 const std::map<std::string, std::string>& identities = {});
// SHA-256 of a file's bytes (weights); "random-init:<seed>" style ids pass through unchanged.
Result<std::string> file_content_hash(const std::filesystem::path& path);

// What a cached feature depends on. The code versions default to the
// current ones (data::kDecodeVersion, data::kTransformVersion,
// models::kBackboneVersion); an entry written by other versions is never hit
// again and `kennel cache prune` removes it.
struct FeatureCacheIdentity {
  std::string arch;
  std::string weights_id;    // file_content_hash of the weights, or "random-init:<seed>"
  std::string dataset_id;    // dataset_content_hash of the split
  std::string transform_id;  // the eval transform's parameters
  std::string device;        // "cpu", "cuda:0", ...: kernels round differently
  std::string precision;     // "fp32", "bf16", "fp16"
  std::string layout;        // "channels_last" or "contiguous"
  int decode_version;
  int transform_version;
  int backbone_version;

  FeatureCacheIdentity();  // code versions: the current ones
  bool current_code() const;  // written by this build's decoder, transforms and backbones
};

nlohmann::json to_json(const FeatureCacheIdentity& identity);
std::string feature_cache_key(const FeatureCacheIdentity& identity);

// One entry of the cache, as `kennel cache list` shows it.
struct FeatureCacheEntry {
  std::string key;
  std::filesystem::path dir;
  std::vector<std::string> splits;  // "train", "valid", ...
  int64_t bytes = 0;
  double last_used = 0;  // seconds since the epoch: the newest store or load
  std::optional<FeatureCacheIdentity> identity;  // nullopt: no readable identity.json (an old entry)
  bool outdated() const { return !identity || !identity->current_code(); }
};

class FeatureCache {
 public:
  explicit FeatureCache(std::filesystem::path dir) : dir_(std::move(dir)) {}
  // nullopt when the entry is absent; an unreadable entry is treated as absent (and logged).
  // A hit marks the entry as used now (for `prune --older-than`).
  std::optional<FeatureSet> load(const std::string& key, const std::string& split) const;
  Status store(const FeatureCacheIdentity& identity, const std::string& split, const FeatureSet& features) const;

  // Every entry, newest use first. A missing cache folder is an empty list.
  Result<std::vector<FeatureCacheEntry>> list() const;
  // Removes one entry (its folder and its lock files). Errors name the folder.
  Status remove(const FeatureCacheEntry& entry) const;

 private:
  std::filesystem::path dir_;
};

// Runs `extract` (images -> features, no grad) over every batch of the loader.
FeatureSet compute_features(data::ImageLoader& loader,
                            const std::function<at::Tensor(const at::Tensor&)>& extract,
                            const std::string& progress_label, bool quiet);

}  // namespace kennel::train

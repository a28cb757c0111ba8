#include "kennel/train/feature_cache.h"

#include <sstream>

#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/tensor.h>
#include <spdlog/spdlog.h>
#include <torch/serialize.h>
#include <torch/utils.h>

#include "kennel/util/fs.h"
#include "kennel/util/hash.h"
#include "kennel/util/parallel.h"
#include "kennel/util/progress.h"

namespace kennel::train {

namespace fs = std::filesystem;

std::string dataset_content_hash(const std::vector<data::ImageSample>& samples, const fs::path& root) {
  std::vector<std::string> file_hashes(samples.size());
  parallel_for(samples.size(), 0, [&](size_t i) {
    auto bytes = read_file_bytes(samples[i].path);
    file_hashes[i] = bytes.ok() ? sha256_hex(bytes->data(), bytes->size()) : "unreadable";
  });
  std::string manifest;
  const std::string prefix = root.string();
  for (size_t i = 0; i < samples.size(); ++i) {
    std::string path = samples[i].path;
    if (path.rfind(prefix, 0) == 0) path = path.substr(prefix.size());
    manifest += fmt::format("{}\t{}\t{}\n", path, samples[i].label, file_hashes[i]);
  }
  return sha256_hex(manifest);
}

Result<std::string> file_content_hash(const fs::path& path) {
  auto bytes = read_file_bytes(path);
  if (!bytes.ok()) return bytes.status();
  return sha256_hex(bytes->data(), bytes->size());
}

std::string feature_cache_key(const std::string& arch, const std::string& weights_id,
                              const std::string& dataset_id, const std::string& transform_id) {
  return sha256_hex(fmt::format("kennel-features-v1\n{}\n{}\n{}\n{}\n", arch, weights_id, dataset_id,
                                transform_id))
      .substr(0, 32);
}

std::optional<FeatureSet> FeatureCache::load(const std::string& key, const std::string& split) const {
  const fs::path path = dir_ / key / (split + ".pt");
  std::error_code error;
  if (!fs::exists(path, error)) return std::nullopt;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path.string());
    FeatureSet set;
    archive.read("features", set.features);
    archive.read("labels", set.labels);
    at::Tensor skipped;
    archive.read("skipped", skipped);
    set.skipped = skipped.item<int64_t>();
    return set;
  } catch (const std::exception& e) {
    spdlog::warn("feature cache entry '{}' is unreadable ({}); recomputing", path.string(), e.what());
    return std::nullopt;
  }
}

Status FeatureCache::store(const std::string& key, const std::string& split, const FeatureSet& set) const {
  KENNEL_RETURN_IF_ERROR(kennel::create_directories(dir_ / key));
  std::ostringstream bytes;
  torch::serialize::OutputArchive archive;
  archive.write("features", set.features);
  archive.write("labels", set.labels);
  archive.write("skipped", torch::tensor(set.skipped));
  archive.save_to(bytes);
  return write_file_atomic(dir_ / key / (split + ".pt"), bytes.str());
}

FeatureSet compute_features(data::ImageLoader& loader, const std::function<at::Tensor(const at::Tensor&)>& extract,
                            const std::string& progress_label, bool quiet) {
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> features, labels, indices;
  Progress progress(progress_label, static_cast<uint64_t>(loader.epoch_size()), quiet);
  const int64_t skipped_before = loader.stats().skipped;
  loader.start_epoch(0);
  while (auto batch = loader.next()) {
    features.push_back(extract(batch->images).to(at::kCPU, at::kFloat));
    labels.push_back(batch->labels);
    indices.push_back(at::tensor(batch->sample_indices, at::kLong));
    progress.advance(static_cast<uint64_t>(batch->labels.size(0)));
  }
  progress.finish();
  FeatureSet set;
  set.skipped = loader.stats().skipped - skipped_before;
  if (features.empty()) {
    set.features = at::empty({0, 0}, at::kFloat);
    set.labels = at::empty({0}, at::kLong);
    set.sample_indices = at::empty({0}, at::kLong);
  } else {
    set.features = at::cat(features);
    set.labels = at::cat(labels);
    set.sample_indices = at::cat(indices);
  }
  return set;
}

}  // namespace kennel::train

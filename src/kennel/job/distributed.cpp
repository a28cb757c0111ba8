#include "kennel/job/distributed.h"

#include <sys/stat.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "kennel/job/training_job.h"
#include "kennel/util/hash.h"

namespace kennel::job {

using nlohmann::json;

Result<std::unique_ptr<JobGroup>> JobGroup::join(const dist::RankEnvironment& rank, const TrainJobOptions& options) {
  dist::GroupOptions group_options;
  group_options.rank = rank;
  group_options.timeout = std::chrono::milliseconds(static_cast<int64_t>(options.dist_timeout_seconds * 1000));
  group_options.interface = options.dist_interface;
  auto group = dist::ProcessGroup::connect(group_options);
  if (!group.ok()) return group.status();
  return std::unique_ptr<JobGroup>(new JobGroup(std::move(*group)));
}

dist::DataParallel& JobGroup::data_parallel(const dist::DataParallelOptions& options) {
  if (!data_parallel_) data_parallel_ = std::make_unique<dist::DataParallel>(*group_, options);
  return *data_parallel_;
}

Status JobGroup::agree(const std::string& round, const Status& mine) {
  const std::string prefix = fmt::format("kennel/agree/{}-{}/", ++rounds_, round);
  group_->store_set(prefix + std::to_string(rank()),
                    json{{"code", static_cast<int>(mine.code())}, {"message", mine.message()}}.dump());
  Status first_other;
  for (int other = 0; other < world_size(); ++other) {
    if (other == rank()) continue;
    const json said = json::parse(group_->store_get(prefix + std::to_string(other)));
    if (said.value("code", 0) != 0 && first_other.ok()) {
      first_other = Status(ErrorCode::kFailedPrecondition,
                           fmt::format("rank {} cannot start the job: {}", other, said.value("message", "")));
    }
  }
  return mine.ok() ? first_other : mine;
}

train::FeatureSet JobGroup::gather_features(const train::FeatureSet& mine) {
  // Shares differ in length (a bad file is skipped where it falls): pad to the longest, gather, trim.
  const int64_t rows = mine.features.size(0);
  const int64_t width = rows > 0 ? mine.features.size(1) : 0;
  std::vector<double> shape = {static_cast<double>(rows), static_cast<double>(width),
                               static_cast<double>(mine.skipped)};
  at::Tensor shape_tensor = at::tensor(shape, at::kDouble);
  const auto shapes = group_->all_gather(shape_tensor);
  int64_t longest = 0, features_width = 0, skipped = 0;
  for (const auto& s : shapes) {
    longest = std::max<int64_t>(longest, static_cast<int64_t>(s[0].item<double>()));
    features_width = std::max<int64_t>(features_width, static_cast<int64_t>(s[1].item<double>()));
    skipped += static_cast<int64_t>(s[2].item<double>());
  }
  at::Tensor features = at::zeros({longest, features_width}, at::kFloat);
  at::Tensor labels = at::zeros({longest}, at::kLong);
  at::Tensor indices = at::full({longest}, -1, at::kLong);
  if (rows > 0) {
    features.narrow(0, 0, rows).copy_(mine.features);
    labels.narrow(0, 0, rows).copy_(mine.labels);
    indices.narrow(0, 0, rows).copy_(mine.sample_indices);
  }
  const auto all_features = group_->all_gather(features);
  const auto all_labels = group_->all_gather(labels);
  const auto all_indices = group_->all_gather(indices);
  std::vector<at::Tensor> f, l, i;
  for (size_t r = 0; r < shapes.size(); ++r) {
    const auto n = static_cast<int64_t>(shapes[r][0].item<double>());
    f.push_back(all_features[r].narrow(0, 0, n));
    l.push_back(all_labels[r].narrow(0, 0, n));
    i.push_back(all_indices[r].narrow(0, 0, n));
  }
  const at::Tensor order = at::argsort(at::cat(i));
  train::FeatureSet whole;
  whole.features = at::cat(f).index_select(0, order).contiguous();
  whole.labels = at::cat(l).index_select(0, order).contiguous();
  whole.sample_indices = at::cat(i).index_select(0, order).contiguous();
  whole.skipped = skipped;
  return whole;
}

json comparable_spec(const TrainSpec& spec) {
  json object = to_json(spec);
  object.erase("threads");  // a host's own choice
  object.erase("data");     // the path may differ per host; the fingerprint compares the files
  return object;
}

std::string dataset_fingerprint(const data::DatasetIndex& index, const std::string& root) {
  std::string manifest;
  for (const auto& split : index.splits) {
    for (const auto& sample : split.samples) {
      std::string path = sample.path;
      if (path.rfind(root, 0) == 0) path = path.substr(root.size());
      struct stat info {};
      const int64_t size = ::stat(sample.path.c_str(), &info) == 0 ? static_cast<int64_t>(info.st_size) : -1;
      manifest += fmt::format("{}\t{}\t{}\t{}\n", split.name, path, sample.label, size);
    }
  }
  return sha256_hex(manifest);
}

std::string first_difference(const json& mine, const json& leader) {
  for (const auto& [key, value] : leader.items()) {
    if (!mine.contains(key)) return fmt::format("'{}' is missing here, {} on rank 0", key, value.dump());
    if (mine[key] != value) return fmt::format("{} is {} here, {} on rank 0", key, mine[key].dump(), value.dump());
  }
  for (const auto& [key, value] : mine.items()) {
    if (!leader.contains(key)) return fmt::format("{} is {} here and missing on rank 0", key, value.dump());
  }
  return "";
}

}  // namespace kennel::job

// A training job as one rank of a data-parallel group (dist/). Rank 0 owns
// the job: its registry row, directory, logs, checkpoints and model; every
// rank computes. What this file adds to dist/ is the job's side:
//   - the start-up agreement: every rank runs rank 0's spec on the same
//     dataset, or none starts (a rank started with another spec or dataset
//     is refused, naming the first difference);
//   - rank 0's spec and checkpoint sent to ranks that have neither (nothing
//     assumes a shared filesystem);
//   - the sharded feature pass: each rank computes the features of its share
//     of a split and all of them are gathered, so every rank has the whole set.
// Thread-safety: the job's thread.
#pragma once

#include <memory>
#include <string>

#include "kennel/data/image_folder.h"
#include "kennel/dist/data_parallel.h"
#include "kennel/dist/process_group.h"
#include "kennel/job/train_spec.h"
#include "kennel/train/feature_cache.h"
#include "kennel/util/status.h"

namespace kennel::job {

struct TrainJobOptions;

class JobGroup {
 public:
  // Joins the group (errors as dist::ProcessGroup::connect).
  static Result<std::unique_ptr<JobGroup>> join(const dist::RankEnvironment& rank, const TrainJobOptions& options);

  bool leader() const { return group_->rank() == 0; }
  int rank() const { return group_->rank(); }
  int world_size() const { return group_->world_size(); }
  const dist::RankEnvironment& environment() const { return group_->options().rank; }
  dist::ProcessGroup& group() { return *group_; }
  // The trainer's ReplicaGroup, made on first use.
  dist::DataParallel& data_parallel(const dist::DataParallelOptions& options = {});

  // Every rank says whether it can go on (`mine`); returns `mine` if it is an
  // error, else the first other rank's error naming the rank, else OK.
  Status agree(const std::string& round, const Status& mine);

  // Rank 0's bytes on every rank (its spec, its checkpoint).
  std::string from_leader(const std::string& bytes) { return group_->broadcast_bytes(bytes, 0); }

  // The whole split's features from every rank's share (rows in sample order).
  train::FeatureSet gather_features(const train::FeatureSet& mine);

 private:
  explicit JobGroup(std::unique_ptr<dist::ProcessGroup> group) : group_(std::move(group)) {}
  std::unique_ptr<dist::ProcessGroup> group_;
  std::unique_ptr<dist::DataParallel> data_parallel_;
  int rounds_ = 0;
};

// What must be the same on every rank, as text to compare: the resolved spec
// without the keys that may differ per host (the default name, threads, the
// dataset's path), and the dataset's files (relative path, label and size).
nlohmann::json comparable_spec(const TrainSpec& spec);
std::string dataset_fingerprint(const data::DatasetIndex& index, const std::string& root);
// "" when equal, else the first differing key: "lr is 0.02 here, 0.01 on rank 0".
std::string first_difference(const nlohmann::json& mine, const nlohmann::json& leader);

}  // namespace kennel::job

// What the trainer consumes, from a prepared job: the model it optimises and
// a batch source per split. With a frozen backbone and no augmentation that
// is the head alone over cached backbone features (computed once per
// weights, dataset content and transform, shared by every job of the home);
// otherwise the whole classifier over images decoded by loaders. In a
// data-parallel job each rank's sources hand it its shard (data/shard.h) and
// the feature pass is sharded too: each rank computes its share and every
// rank gets the whole set.
// Thread-safety: built and used on the job's thread.
#pragma once

#include <memory>
#include <vector>

#include "kennel/data/loader.h"
#include "kennel/data/transforms.h"
#include "kennel/job/prepare.h"
#include "kennel/store/layout.h"
#include "kennel/train/trainer.h"

namespace kennel::job {

struct JobInputs {
  std::unique_ptr<train::TrainableModel> model;
  std::unique_ptr<train::BatchSource> train, valid, test;  // valid and test may be null
  bool on_cached_features = false;
  bool channels_last = false;  // image batches (and the model) in channels-last memory format
  // The loaders behind image sources; the first feeds training. Empty on cached features.
  std::vector<std::unique_ptr<data::ImageLoader>> loaders;

  // The training loader's queue and decode time, for the profiler; nullopt on cached features.
  std::optional<data::LoaderStats> train_loader_stats() const;
};

class JobGroup;

struct InputOptions {
  store::HomeLayout home;
  int threads = 1;     // decode threads (and the feature pass's compute threads)
  bool quiet = false;  // no progress bars
  JobGroup* group = nullptr;  // data parallelism; null for one process
};

// What of a classifier the trainer optimises: all its trainable parameters,
// its head alone (inputs are cached backbone features), or nothing (evaluation).
enum class TrainedPart { kWhole, kHead, kNone };
std::unique_ptr<train::TrainableModel> trainable_model(models::Classifier classifier, TrainedPart part);

// True when the job trains its head on cached features (frozen backbone, no augmentation).
bool uses_feature_cache(const TrainSpec& spec);

// Moves the classifier to the job's device and memory format and builds the
// sources; the feature pass (when the cache misses) runs here. Throws
// kennel::Error on I/O failures.
JobInputs build_job_inputs(const PreparedJob& prepared, const InputOptions& options);

// The transforms of a job: evaluation (resize + center crop + normalise) and training (plus augmentation).
data::TransformSpec eval_transform_of(const PreparedJob& prepared);

}  // namespace kennel::job

// Everything a training job checks before it exists: the resolved spec, the
// hooks' specs, the dataset's index, the device, and the classifier with its
// pretrained weights loaded. Writes nothing: a bad spec, dataset or weight
// file is an error here, before any directory or registry row is made.
// Thread-safety: values; one prepare per thread.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <c10/core/Device.h>

#include "kennel/data/image_folder.h"
#include "kennel/debug/debugger.h"
#include "kennel/job/train_spec.h"
#include "kennel/models/classifier.h"
#include "kennel/profile/profiler.h"
#include "kennel/util/status.h"

namespace kennel::job {

struct PreparedJob {
  TrainSpec spec;  // resolved: every default filled
  data::DatasetIndex index;
  // Where the images are: spec.data, or the local copy of an s3:// dataset.
  std::filesystem::path data_root;
  // For an s3:// dataset: each file's object identity (relative path ->
  // "s3://bucket/key etag=... size=..."), so the feature-cache key needs no
  // reading of the images. Empty for a local dataset.
  std::map<std::string, std::string> data_identities;
  models::Classifier classifier{nullptr};
  std::string weights_id;             // content hash of the pretrained file, or random-init:<seed>
  std::vector<std::string> notices;   // what loading the weights dropped or changed
  c10::Device device{c10::kCPU};
  std::optional<debug::DebuggerSpec> debugger;    // --debugger default|SPEC
  std::optional<profile::ProfilerSpec> profiler;  // --profiler default|SPEC
  double started_at = 0;              // Unix seconds: the job's initialisation starts here
  Normalization normalization;        // `normalize`, with auto resolved
  std::string normalize_id;           // ... as text, for the feature-cache key
  bool keras_compat = false;          // the pretrained backbone came from Keras
};

// Errors name the spec key, file or value and what to do. An s3:// dataset is
// synced into `home`'s S3 cache first (data/s3_sync.h); `quiet` hides its progress bar.
Result<PreparedJob> prepare_training_job(const TrainSpec& requested, const std::filesystem::path& home,
                                         bool quiet = false);

}  // namespace kennel::job

// The ImageFolder dataset index: `root/{train,valid,test}/<class>/<image>`,
// the layout of the dog-breed dataset (dogImages/train/001.Affenpinscher/...).
//
// Owns: finding splits and classes, listing image files (recursively inside a
// class folder, following symlinks, breaking symlink loops), the class list
// (sorted folder names, the same for every split), and the seeded train/valid
// split when valid/ is missing. It does not open images: checking them is
// dataset_check.h, decoding them decode.h. Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "kennel/util/status.h"

namespace kennel::data {

struct ImageSample {
  std::string path;  // absolute or relative to the cwd, as found
  int64_t label = 0; // index into DatasetIndex::classes
};

struct Split {
  std::string name;  // "train", "valid" or "test"
  std::vector<ImageSample> samples;
  std::vector<int64_t> class_counts;  // per class, in class order
};

struct ScanOptions {
  // When valid/ is missing, this share of each class of train/ becomes valid
  // (stratified, seeded). 0 leaves the dataset without a valid split.
  double valid_fraction = 0.2;
  uint64_t seed = 0;
  // A trained model's classes, when the dataset is to be evaluated rather than trained on:
  // then train/ is optional (a test/ folder alone will do) and, without it, these are the classes.
  std::vector<std::string> known_classes;

  Status validate() const;
};

struct DatasetIndex {
  std::filesystem::path root;
  std::vector<std::string> classes;  // sorted folder names
  std::vector<Split> splits;         // in the order train, valid, test (those present)
  bool valid_split_from_train = false;
  // Things a person should know that do not stop training: a class missing
  // from a split, a symlink loop that was cut, non-image files that were ignored.
  std::vector<std::string> warnings;
  int64_t ignored_files = 0;  // files without an image extension

  const Split* find_split(const std::string& name) const;
  int64_t total_images() const;
};

// Scans `root`. A root that has class folders but no train/valid/test folders
// is read as a train split only. Errors (kNotFound, kInvalidArgument,
// kFailedPrecondition) name the path: missing root, not a directory, no class
// folders, a split with classes the train split lacks.
Result<DatasetIndex> scan_image_folder(const std::filesystem::path& root,
                                       const ScanOptions& options = {});

// Deterministic stratified split of `samples` into (kept, held_out).
void stratified_split(const std::vector<ImageSample>& samples, int64_t num_classes,
                      double held_out_fraction, uint64_t seed, std::vector<ImageSample>& kept,
                      std::vector<ImageSample>& held_out);

}  // namespace kennel::data

// Synthetic ImageFolder datasets for tests and benchmarks: a learnable
// labelled dataset where each class has its own shape, colour and texture,
// drawn at random positions and scales on noisy backgrounds, saved as JPEG at
// varied sizes around the requested one. Optionally plants bad files of every
// kind `kennel data check` detects, and records what it planted in
// `<out>/planted.json` so tests can compare. Deterministic for a seed.
// Thread-safety: independent calls may run concurrently on different dirs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "kennel/util/status.h"

namespace kennel::data {

struct SynthOptions {
  int classes = 10;
  int per_class = 20;        // training images per class
  int width = 64;            // nominal size; each image varies +-20 % around it
  int height = 64;
  double valid_fraction = 0.2;   // valid/ gets round(per_class * fraction) per class (0: no valid/)
  double test_fraction = 0.2;    // test/ likewise (0: no test/)
  int corrupt = 0;           // number of planted bad files, cycling through PlantedKind
  uint64_t seed = 0;
  int jpeg_quality = 90;
  int threads = 0;           // 0 = all cores
  bool overwrite = false;    // refuse a non-empty `out` unless set
  bool quiet = false;        // no progress output (tests, scripts)

  Status validate() const;
};

// The kinds of bad file synth can plant; names match data check's issue names.
// Order is the planting cycle: with corrupt >= 11 every kind is present.
inline const std::vector<std::string>& planted_kinds() {
  static const std::vector<std::string> kinds = {
      "zero_byte", "not_an_image", "truncated", "too_small", "too_large", "grayscale",
      "cmyk",      "has_alpha",    "duplicate", "unreadable", "symlink_loop"};
  return kinds;
}

struct PlantedFile {
  std::string path;  // relative to the dataset root
  std::string kind;  // one of planted_kinds()
};

struct SynthSummary {
  std::vector<std::string> classes;
  int64_t images = 0;                // good images written (all splits)
  std::vector<PlantedFile> planted;  // also written to <out>/planted.json
};

// Class names look like the dog-breed dataset's: "000.circle_red", ...
Result<SynthSummary> generate_synthetic_dataset(const std::filesystem::path& out,
                                                const SynthOptions& options);

}  // namespace kennel::data

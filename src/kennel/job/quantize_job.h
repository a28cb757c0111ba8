// `kennel quantize`: post-training static quantization of a saved model.
// Calibrates the activation ranges on a sample of one split of a dataset,
// measures what int8 costs on images it was not calibrated on (top-1
// agreement with the fp32 model, both accuracies, the largest logit
// difference), and writes a model directory that runs int8: a copy of the
// model's files plus quantization.json (models/quantization_record.h).
// Thread-safety: one at a time per process (it sets LibTorch's thread count).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "kennel/models/quantization_record.h"
#include "kennel/util/status.h"

namespace kennel::job {

struct QuantizeOptions {
  std::filesystem::path calibration;      // ImageFolder dataset root
  std::string calibration_split = "train";
  int64_t calibration_images = 256;       // a seeded random sample of the split
  std::string check_split;                // "" = valid if it has images, else test
  int64_t check_images = 1000;            // 0 = the whole split
  std::filesystem::path out;              // "" = <model dir>-int8 beside the model directory
  int64_t batch_size = 32;
  int threads = 0;
  uint64_t seed = 0;
  bool quiet = false;
};

struct QuantizeResult {
  std::filesystem::path out;
  models::QuantizationRecord record;
};

// `model` is a model directory or the name of a completed job in `home`. Errors name the flag,
// split or folder: an architecture int8 does not cover, classes that differ from the model's,
// an empty split, an --out that holds something other than a model directory.
Result<QuantizeResult> quantize_model(const std::string& model, const std::filesystem::path& home,
                                      const QuantizeOptions& options);

}  // namespace kennel::job

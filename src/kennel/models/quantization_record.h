// quantization.json: what `kennel quantize` leaves in a model directory so
// that it can run int8 — the activation range of every point of the graph
// (models/quantized_graph.h), where the calibration images came from, and
// the accuracy cost measured on a held-out split (top-1 agreement with the
// fp32 model, both accuracies). The int8 weights are not stored: they are
// derived from the fp32 weights at load (per-channel, symmetric), so the
// directory stays a normal model directory that also runs at fp32 and bf16.
// Thread-safety: free functions.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "kennel/util/status.h"

namespace kennel::models {

inline constexpr const char* kQuantizationFile = "quantization.json";
inline constexpr int kQuantizationFormat = 1;

// The observed range of one point of the int8 graph: what quantization maps onto 0..255.
struct ActivationRange {
  double min = 0;
  double max = 0;
  bool seen = false;  // false until an image has passed the point (every range read from a file is)
};
using CalibrationTable = std::map<std::string, ActivationRange>;

// How the int8 model compares with the fp32 one on images it was not calibrated on.
struct QuantizationCheck {
  std::string data;
  std::string split;
  int64_t images = 0;
  double agreement = 0;      // share of images whose top-1 class is the fp32 model's
  double accuracy_int8 = 0;
  double accuracy_fp32 = 0;
  double max_logit_difference = 0;
};

struct QuantizationRecord {
  std::string engine = "onednn";
  std::string weights = "per-channel symmetric qint8";
  std::string activations = "per-tensor affine quint8, min/max";
  CalibrationTable ranges;
  std::string calibration_data;
  std::string calibration_split;
  int64_t calibration_images = 0;
  uint64_t seed = 0;
  QuantizationCheck check;
  std::string cpu;  // the CPU the check ran on
  std::string created_at;
};

// Writes dir/quantization.json atomically.
Status write_quantization_record(const std::filesystem::path& dir, const QuantizationRecord& record);
// nullopt when dir has no quantization.json; errors name the file and field when it is malformed.
Result<std::optional<QuantizationRecord>> read_quantization_record(const std::filesystem::path& dir);

}  // namespace kennel::models

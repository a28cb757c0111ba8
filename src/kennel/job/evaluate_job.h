// `kennel evaluate`: a saved model against a split of an ImageFolder dataset,
// any time after training. Writes <out>/<split>_evaluation.json, the
// confusion matrix as CSV and PNG, and returns the report.
// Thread-safety: one at a time per process (it sets LibTorch's thread count).
#pragma once

#include <filesystem>
#include <string>

#include "kennel/train/evaluation_report.h"
#include "kennel/util/status.h"

namespace kennel::job {

struct EvaluateOptions {
  std::string split = "";  // "" = test if present, else valid
  std::filesystem::path out;  // "" = <model>/../evaluation
  int64_t batch_size = 32;
  int threads = 0;
  std::string precision = "auto";  // auto | fp32 | bf16 | int8 (see models/inference_model.h)
  double int8_min_agreement = 0.98;
  bool quiet = false;
};

struct EvaluateResult {
  std::string split;
  std::string precision;  // what ran: fp32 | bf16 | int8
  train::ClassificationReport report;
  int64_t skipped = 0;
  std::filesystem::path out;
};

// `model` is a model directory or the name of a job in `home`.
Result<EvaluateResult> evaluate_model(const std::string& model, const std::filesystem::path& data,
                                      const std::filesystem::path& home, const EvaluateOptions& options);

}  // namespace kennel::job

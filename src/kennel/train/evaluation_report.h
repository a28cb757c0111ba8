// Evaluation reports from a confusion matrix: accuracy, per-class precision /
// recall / F1 (and their macro averages), written as JSON, as a CSV of the
// matrix, and as a PNG heat map people can look at.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "kennel/util/status.h"

namespace at {
class Tensor;
}

namespace kennel::train {

using ConfusionMatrix = std::vector<std::vector<int64_t>>;  // [truth][prediction]

struct ClassScores {
  std::string name;
  int64_t support = 0;  // true samples of the class
  double precision = 0, recall = 0, f1 = 0;
};

struct ClassificationReport {
  int64_t samples = 0;
  double accuracy = 0;
  // Wilson score interval at 95 % for the accuracy over `samples` images: how far another
  // draw of as many images could move it (stays inside [0, 1], sound near 0 and 1).
  double accuracy_ci95_low = 0, accuracy_ci95_high = 0;
  double top5_accuracy = 0;
  double loss = 0;
  double macro_precision = 0, macro_recall = 0, macro_f1 = 0;
  std::vector<ClassScores> classes;
  ConfusionMatrix confusion;
};

// A [C, C] int64 tensor (any device) as a matrix.
ConfusionMatrix to_confusion_matrix(const at::Tensor& confusion);

// The Wilson score interval of `successes` out of `trials` at 95 % ({0, 0} for no trials).
std::pair<double, double> wilson_interval_95(int64_t successes, int64_t trials);

ClassificationReport make_classification_report(const ConfusionMatrix& confusion,
                                                 const std::vector<std::string>& class_names);
nlohmann::json to_json(const ClassificationReport& report);

// Writes <dir>/<prefix>evaluation.json, <prefix>confusion_matrix.csv and
// <prefix>confusion_matrix.png (rows = truth, columns = prediction, row-normalised colour).
Status write_classification_report(const std::filesystem::path& dir, const std::string& prefix,
                                   const ClassificationReport& report);

}  // namespace kennel::train

// Evaluation reports from a confusion matrix: accuracy, per-class precision /
// recall / F1 (and their macro averages), written as JSON, as a CSV of the
// matrix, and as a PNG heat map people can look at.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
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
  double top5_accuracy = 0;
  double loss = 0;
  double macro_precision = 0, macro_recall = 0, macro_f1 = 0;
  std::vector<ClassScores> classes;
  ConfusionMatrix confusion;
};

// A [C, C] int64 tensor (any device) as a matrix.
ConfusionMatrix to_confusion_matrix(const at::Tensor& confusion);

ClassificationReport make_classification_report(const ConfusionMatrix& confusion,
                                                 const std::vector<std::string>& class_names);
nlohmann::json to_json(const ClassificationReport& report);

// Writes <dir>/<prefix>evaluation.json, <prefix>confusion_matrix.csv and
// <prefix>confusion_matrix.png (rows = truth, columns = prediction, row-normalised colour).
Status write_classification_report(const std::filesystem::path& dir, const std::string& prefix,
                                   const ClassificationReport& report);

}  // namespace kennel::train

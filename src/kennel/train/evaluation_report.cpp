#include "kennel/train/evaluation_report.h"

#include <algorithm>
#include <cmath>
#include <tuple>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "kennel/util/fs.h"

namespace kennel::train {

ConfusionMatrix to_confusion_matrix(const at::Tensor& confusion) {
  const at::Tensor cpu = confusion.to(at::kCPU, at::kLong).contiguous();
  const int64_t n = cpu.size(0);
  ConfusionMatrix matrix(static_cast<size_t>(n), std::vector<int64_t>(static_cast<size_t>(n)));
  const auto* data = cpu.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) matrix[static_cast<size_t>(i)][static_cast<size_t>(j)] = data[i * n + j];
  }
  return matrix;
}

namespace {
std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

// A perceptually ordered white -> dark blue ramp.
cv::Scalar heat_colour(double value) {
  value = std::clamp(value, 0.0, 1.0);
  const double r = 255 * (1 - value) + 8 * value;
  const double g = 255 * (1 - value) + 48 * value;
  const double b = 255 * (1 - value) + 107 * value;
  return cv::Scalar(b, g, r);
}

cv::Mat draw_confusion(const ClassificationReport& report) {
  const int n = static_cast<int>(report.confusion.size());
  const int cell = std::clamp(560 / std::max(1, n), 4, 48);
  size_t longest = 0;
  for (const auto& c : report.classes) longest = std::max(longest, c.name.size());
  const bool labels = cell >= 12;
  const int margin = labels ? static_cast<int>(std::min<size_t>(longest, 24) * 7 + 16) : 16;
  const int top = 40;
  cv::Mat image(top + n * cell + margin, margin + n * cell + 16, CV_8UC3, cv::Scalar(255, 255, 255));
  cv::putText(image, fmt::format("confusion matrix (rows: truth, columns: prediction), accuracy {:.3f}", report.accuracy),
              cv::Point(8, 24), cv::FONT_HERSHEY_SIMPLEX, 0.45, cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
  for (int i = 0; i < n; ++i) {
    int64_t row_total = 0;
    for (int j = 0; j < n; ++j) row_total += report.confusion[i][j];
    for (int j = 0; j < n; ++j) {
      const double share = row_total > 0 ? static_cast<double>(report.confusion[i][j]) / row_total : 0;
      const cv::Rect rect(margin + j * cell, top + i * cell, cell, cell);
      cv::rectangle(image, rect, heat_colour(share), cv::FILLED);
      if (cell >= 24 && report.confusion[i][j] > 0) {
        cv::putText(image, std::to_string(report.confusion[i][j]), cv::Point(rect.x + 3, rect.y + cell / 2 + 4),
                    cv::FONT_HERSHEY_SIMPLEX, 0.35, share > 0.5 ? cv::Scalar(255, 255, 255) : cv::Scalar(0, 0, 0),
                    1, cv::LINE_AA);
      }
    }
    if (labels) {
      cv::putText(image, report.classes[static_cast<size_t>(i)].name.substr(0, 24),
                  cv::Point(4, top + i * cell + cell / 2 + 4), cv::FONT_HERSHEY_SIMPLEX, 0.35,
                  cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
    }
  }
  return image;
}
}  // namespace

std::pair<double, double> wilson_interval_95(int64_t successes, int64_t trials) {
  if (trials <= 0) return {0, 0};
  constexpr double z = 1.959963984540054;
  const double n = static_cast<double>(trials);
  const double p = static_cast<double>(successes) / n;
  const double denominator = 1 + z * z / n;
  const double centre = (p + z * z / (2 * n)) / denominator;
  const double half_width = z * std::sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator;
  return {std::max(0.0, centre - half_width), std::min(1.0, centre + half_width)};
}

ClassificationReport make_classification_report(const ConfusionMatrix& confusion,
                                                 const std::vector<std::string>& class_names) {
  ClassificationReport report;
  report.confusion = confusion;
  const size_t n = confusion.size();
  int64_t correct = 0;
  for (size_t i = 0; i < n; ++i) {
    int64_t row = 0, column = 0;
    for (size_t j = 0; j < n; ++j) {
      row += confusion[i][j];
      column += confusion[j][i];
    }
    report.samples += row;
    correct += confusion[i][i];
    ClassScores scores;
    scores.name = i < class_names.size() ? class_names[i] : std::to_string(i);
    scores.support = row;
    scores.precision = column > 0 ? static_cast<double>(confusion[i][i]) / column : 0;
    scores.recall = row > 0 ? static_cast<double>(confusion[i][i]) / row : 0;
    scores.f1 = scores.precision + scores.recall > 0
                    ? 2 * scores.precision * scores.recall / (scores.precision + scores.recall)
                    : 0;
    report.macro_precision += scores.precision;
    report.macro_recall += scores.recall;
    report.macro_f1 += scores.f1;
    report.classes.push_back(scores);
  }
  if (n > 0) {
    report.macro_precision /= static_cast<double>(n);
    report.macro_recall /= static_cast<double>(n);
    report.macro_f1 /= static_cast<double>(n);
  }
  report.accuracy = report.samples > 0 ? static_cast<double>(correct) / report.samples : 0;
  std::tie(report.accuracy_ci95_low, report.accuracy_ci95_high) = wilson_interval_95(correct, report.samples);
  return report;
}

nlohmann::json to_json(const ClassificationReport& report) {
  nlohmann::json classes = nlohmann::json::array();
  for (const auto& c : report.classes) {
    classes.push_back({{"class", c.name}, {"support", c.support}, {"precision", c.precision},
                       {"recall", c.recall}, {"f1", c.f1}});
  }
  return {{"samples", report.samples},
          {"accuracy", report.accuracy},
          {"accuracy_ci95", {report.accuracy_ci95_low, report.accuracy_ci95_high}},
          {"top5_accuracy", report.top5_accuracy},
          {"loss", report.loss},
          {"macro_precision", report.macro_precision},
          {"macro_recall", report.macro_recall},
          {"macro_f1", report.macro_f1},
          {"per_class", classes},
          {"confusion_matrix", report.confusion}};
}

Status write_classification_report(const std::filesystem::path& dir, const std::string& prefix,
                                   const ClassificationReport& report) {
  KENNEL_RETURN_IF_ERROR(kennel::create_directories(dir));
  KENNEL_RETURN_IF_ERROR(write_file_atomic(dir / (prefix + "evaluation.json"), to_json(report).dump(2) + "\n"));
  std::string csv = "truth\\prediction";
  for (const auto& c : report.classes) csv += "," + csv_field(c.name);
  csv += "\n";
  for (size_t i = 0; i < report.confusion.size(); ++i) {
    csv += csv_field(report.classes[i].name);
    for (int64_t count : report.confusion[i]) csv += "," + std::to_string(count);
    csv += "\n";
  }
  KENNEL_RETURN_IF_ERROR(write_file_atomic(dir / (prefix + "confusion_matrix.csv"), csv));
  std::vector<uint8_t> png;
  if (!cv::imencode(".png", draw_confusion(report), png)) {
    return internal_error("could not encode the confusion matrix image");
  }
  return write_file_atomic(dir / (prefix + "confusion_matrix.png"),
                           std::string_view(reinterpret_cast<const char*>(png.data()), png.size()));
}

}  // namespace kennel::train

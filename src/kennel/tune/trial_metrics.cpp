#include "kennel/tune/trial_metrics.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include <nlohmann/json.hpp>

namespace kennel::tune {

using nlohmann::json;

std::optional<double> objective_of(const std::vector<double>& values, const ObjectiveSpec& objective) {
  if (values.empty()) return std::nullopt;
  if (objective.at == "final") return values.back();
  return objective.maximize() ? *std::max_element(values.begin(), values.end())
                              : *std::min_element(values.begin(), values.end());
}

TrialCurve curve_of(const Trial& trial, const ObjectiveSpec& objective) {
  TrialCurve curve;
  curve.index = trial.index;
  for (double value : trial.intermediate) {
    double loss = objective.maximize() ? -value : value;
    if (objective.at == "best" && !curve.losses.empty()) loss = std::min(loss, curve.losses.back());
    curve.losses.push_back(loss);
  }
  return curve;
}

void absorb_epoch_line(const std::string& line, const std::string& metric, EpochValues& out) {
  json record;
  try {
    record = json::parse(line);
  } catch (const std::exception&) {
    return;
  }
  if (!record.is_object() || record.value("type", std::string()) != "epoch") return;
  for (const auto& [key, value] : record.items()) {
    if (value.is_number() && key != "epoch" && key != "step" &&
        std::find(out.metrics_seen.begin(), out.metrics_seen.end(), key) == out.metrics_seen.end()) {
      out.metrics_seen.push_back(key);
    }
  }
  if (!record.contains(metric) || !record[metric].is_number()) return;
  const int64_t epoch = record.value("epoch", static_cast<int64_t>(out.values.size()));
  const auto again = std::find(out.epochs.begin(), out.epochs.end(), epoch);
  if (again != out.epochs.end()) {
    const auto keep = again - out.epochs.begin();
    out.epochs.resize(static_cast<size_t>(keep));
    out.values.resize(static_cast<size_t>(keep));
  }
  out.epochs.push_back(epoch);
  out.values.push_back(record[metric].get<double>());
}

EpochValues read_epoch_values(const std::filesystem::path& metrics_path, const std::string& metric) {
  EpochValues out;
  std::ifstream in(metrics_path);
  std::string line;
  while (std::getline(in, line)) absorb_epoch_line(line, metric, out);
  return out;
}

CommandMetrics::CommandMetrics(const std::map<std::string, std::string>& definitions, std::string objective_metric)
    : objective_(std::move(objective_metric)) {
  // The study spec compiled each regex already; compiling once here keeps a chatty command cheap to watch.
  for (const auto& [name, pattern] : definitions) regexes_.emplace_back(name, std::regex(pattern));
}

std::string CommandMetrics::absorb(const std::vector<std::string>& lines, std::vector<double>& intermediate) {
  std::string records;
  for (const auto& line : lines) {
    for (const auto& [name, regex] : regexes_) {
      for (auto it = std::sregex_iterator(line.begin(), line.end(), regex); it != std::sregex_iterator(); ++it) {
        char* end = nullptr;
        const std::string text = (*it)[1].str();
        const double value = std::strtod(text.c_str(), &end);
        if (text.empty() || end != text.c_str() + text.size()) continue;
        latest_[name] = value;
        if (name != objective_) continue;
        intermediate.push_back(value);
        json record = {{"type", "epoch"}, {"epoch", intermediate.size() - 1}};
        for (const auto& [metric, latest] : latest_) record[metric] = latest;
        records += record.dump() + "\n";
      }
    }
  }
  return records;
}

std::string join_names(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out.empty() ? "nothing" : out;
}

}  // namespace kennel::tune

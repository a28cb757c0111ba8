// StudioApi: the studies part (list, one study with parameter importance and
// the command that retrains its best trial).
#include <cmath>

#include <fmt/format.h>

#include "kennel/studio/api.h"
#include "kennel/studio/detail/json_files.h"
#include "kennel/studio/param_importance.h"

namespace kennel::studio {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// How one parameter becomes a dimension of the importance forest.
struct Encoding {
  ImportanceDimension dimension;
  enum class Kind { kLinear, kLog, kReverseLog, kCategorical } kind = Kind::kLinear;
  json choices;

  std::optional<double> encode(const json& value) const {
    if (kind == Kind::kCategorical) {
      for (size_t i = 0; i < choices.size(); ++i) {
        if (choices[i] == value) return static_cast<double>(i);
      }
      return std::nullopt;
    }
    if (!value.is_number()) return std::nullopt;
    const double x = value.get<double>();
    if (kind == Kind::kLog) return x > 0 ? std::optional(std::log10(x)) : std::nullopt;
    if (kind == Kind::kReverseLog) return x < 1 ? std::optional(-std::log10(1 - x)) : std::nullopt;
    return x;
  }
};

std::optional<Encoding> encoding_for(const std::string& name, const json& definition) {
  if (!definition.is_object()) return std::nullopt;
  Encoding encoding;
  encoding.dimension.name = name;
  const std::string type = definition.value("type", "");
  if (type == "categorical") {
    if (!definition.contains("choices") || !definition["choices"].is_array() ||
        definition["choices"].size() < 2) {
      return std::nullopt;  // one choice explains nothing
    }
    encoding.kind = Encoding::Kind::kCategorical;
    encoding.choices = definition["choices"];
    encoding.dimension.low = -0.5;
    encoding.dimension.high = static_cast<double>(encoding.choices.size()) - 0.5;
    return encoding;
  }
  if (!definition.contains("min") || !definition.contains("max") ||
      !definition["min"].is_number() || !definition["max"].is_number()) {
    return std::nullopt;
  }
  const std::string scale = definition.value("scale", "linear");
  encoding.kind = scale == "log"           ? Encoding::Kind::kLog
                  : scale == "reverse-log" ? Encoding::Kind::kReverseLog
                                           : Encoding::Kind::kLinear;
  const auto low = encoding.encode(definition["min"]), high = encoding.encode(definition["max"]);
  if (!low || !high || !(*low < *high)) return std::nullopt;
  encoding.dimension.low = *low;
  encoding.dimension.high = *high;
  return encoding;
}

json study_row(const std::string& name, const json& summary, const store::JobRecord& record,
               double now) {
  json best = nullptr;
  if (summary.contains("best") && summary["best"].is_object()) {
    best = {{"name", summary["best"].value("name", "")},
            {"objective", summary["best"].value("objective", json())}};
  }
  return {
      {"name", name},
      {"status", store::job_status_name(record.status)},
      {"reason", record.failure_reason},
      {"strategy", summary.value("strategy", json())},
      {"objective", summary.value("objective", json())},
      {"counts", summary.value("counts", json::object())},
      {"trials",
       summary.contains("trials") && summary["trials"].is_array() ? summary["trials"].size() : 0},
      {"max_jobs", summary.value("max_jobs", json())},
      {"best", best},
      {"started_at", record.started_at},
      {"duration_seconds", record.duration_seconds(now)},
      {"problems", json::array()}};
}

}  // namespace

json StudioApi::importance_of(const json& summary) {
  json out = {{"method",
               "fANOVA: main-effect share of the objective's variance, random forest of 64 trees"},
              {"parameters", json::array()},
              {"note", nullptr}};
  const json parameters = summary.value("parameters", json::object());
  std::vector<Encoding> encodings;
  if (parameters.is_object()) {
    for (const auto& [name, definition] : parameters.items()) {
      if (auto encoding = encoding_for(name, definition)) encodings.push_back(std::move(*encoding));
    }
  }
  std::vector<std::vector<double>> points;
  std::vector<double> objective;
  std::string signature;
  for (const json& trial : summary.value("trials", json::array())) {
    if (!trial.is_object() || trial.value("status", "") != "Completed" ||
        !trial.contains("objective") || !trial["objective"].is_number()) {
      continue;
    }
    const json hyperparameters = trial.value("hyperparameters", json::object());
    std::vector<double> point;
    for (const auto& encoding : encodings) {
      const auto value = encoding.encode(hyperparameters.is_object() &&
                                                 hyperparameters.contains(encoding.dimension.name)
                                             ? hyperparameters[encoding.dimension.name]
                                             : json());
      if (!value || !std::isfinite(*value)) break;
      point.push_back(*value);
    }
    if (point.size() != encodings.size()) continue;
    points.push_back(std::move(point));
    objective.push_back(trial["objective"].get<double>());
    signature += trial.value("name", "") + "=" + trial["objective"].dump() + ";";
  }
  if (encodings.empty()) {
    out["note"] = "the study has no parameter that varies";
    return out;
  }
  const std::string study = summary.value("name", "");
  {
    std::lock_guard lock(importance_mutex_);
    const auto cached = importance_cache_.find(study);
    if (cached != importance_cache_.end() && cached->second.first == signature)
      return cached->second.second;
  }
  std::vector<ImportanceDimension> dimensions;
  for (const auto& encoding : encodings) dimensions.push_back(encoding.dimension);
  auto fractions = fanova_importance(dimensions, points, objective);
  if (fractions.ok()) {
    for (size_t d = 0; d < dimensions.size(); ++d) {
      out["parameters"].push_back({{"name", dimensions[d].name}, {"importance", (*fractions)[d]}});
    }
    out["trials_used"] = points.size();
  } else {
    out["note"] =
        fmt::format("not computed: {} (completed trials are used)", fractions.status().message());
  }
  std::lock_guard lock(importance_mutex_);
  importance_cache_[study] = {signature, out};
  return out;
}

Result<json> StudioApi::studies() {
  store::JobFilter filter;
  filter.kind = "tuning";
  auto records = source_.list_jobs(filter);
  if (!records.ok()) return records.status();
  const double now = store::unix_now();
  json rows = json::array();
  for (const auto& record : *records) {
    auto summary = source_.study_summary(record.name);
    if (summary.ok()) {
      rows.push_back(study_row(record.name, *summary, record, now));
    } else {
      json row = study_row(record.name, json::object(), record, now);
      row["problems"].push_back(summary.status().message());
      rows.push_back(std::move(row));
    }
  }
  return json{{"studies", std::move(rows)}, {"now", now}};
}

Result<json> StudioApi::study(const std::string& name) {
  auto record = source_.get_job(name);
  if (!record.ok()) return record.status();
  if (record->kind != "tuning") {
    return not_found("'{}' is a {} job, not a tuning study (see /jobs/{})", name, record->kind,
                     name);
  }
  auto summary = source_.study_summary(name);
  if (!summary.ok()) return summary.status();
  json out = std::move(*summary);
  out["status"] = store::job_status_name(record->status);
  out["reason"] = record->failure_reason;
  out["started_at"] = record->started_at;
  out["ended_at"] = record->ended_at;
  out["duration_seconds"] = record->duration_seconds(store::unix_now());
  out["importance"] = importance_of(out);

  const store::StudyPaths paths = source_.study_paths(name);
  std::error_code error;
  out["report_url"] =
      fs::exists(paths.report(), error) ? json(study_file_url(name, "report.html")) : json(nullptr);
  // How to train the best configuration again, as a command to paste.
  json retrain = nullptr;
  const json& best = out["best"];
  if (best.is_object() && best.contains("name") && best["name"].is_string()) {
    const std::string best_name = best["name"].get<std::string>();
    auto trial = source_.get_job(best_name);
    if (trial.ok() && trial->kind == "command") {
      auto spec = detail::parse_json_object(trial->spec_json);
      if (spec.ok() && spec->contains("command") && (*spec)["command"].is_string())
        retrain = (*spec)["command"];
    } else if (fs::exists(paths.best_spec(), error)) {
      retrain =
          fmt::format("kennel train --spec {} --name {}-best", paths.best_spec().string(), name);
    } else {
      retrain = fmt::format("kennel tune best {}", name);
    }
  }
  out["retrain_command"] = retrain;
  return out;
}

Result<fs::path> StudioApi::study_dir(const std::string& name) {
  auto record = source_.get_job(name);
  if (!record.ok()) return record.status();
  if (record->kind != "tuning") return not_found("'{}' is not a tuning study", name);
  return source_.study_paths(name).dir;
}

}  // namespace kennel::studio

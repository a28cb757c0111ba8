#include "kennel/report/tuning_report.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <set>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kennel/report/html.h"
#include "kennel/report/svg_chart.h"
#include "kennel/report/json_fields.h"

namespace kennel::report {

namespace {

using nlohmann::json;

// JSON as display text; replaces invalid UTF-8 instead of throwing on it.
std::string json_text(const json& value) {
  if (value.is_null()) return "";
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number_float()) return fmt::format("{:.6g}", value.get<double>());
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string text_field(const json& object, std::string_view key) {
  return json_text(field(object, key));
}

std::string format_number(std::optional<double> value, const char* format = "{:.6g}") {
  return value ? fmt::format(fmt::runtime(format), *value) : "";
}

// ---- The study as the report sees it. ----

struct Trial {
  size_t position = 0;  // in study["trials"]; the tie-breaker when ranking
  std::string name, status, reason;
  bool early_stopped = false;
  std::optional<double> objective, started_at, ended_at, epochs_run;
  const json* hyperparameters = nullptr;

  // The status a person reads: an early stop is not the user's "Stopped".
  std::string status_label() const {
    if (early_stopped) return "Stopped (early)";
    return status.empty() ? "Unknown" : status;
  }
  // When the objective became known: the end of the trial (start, if it has none).
  std::optional<double> finished_at() const { return ended_at ? ended_at : started_at; }
};

// Views into the caller's JSON (pointers, not copies): it outlives the render.
struct Study {
  std::string metric;
  bool maximize = true;
  std::vector<Trial> trials;
  // Declared parameters first, then any others the trials carry (a warm start).
  std::vector<std::string> parameter_names;
  const json* parameters = nullptr;
  const json* best = nullptr;  // null when the study has no best trial

  bool better(double a, double b) const { return maximize ? a > b : a < b; }
};

Study read_study(const json& root) {
  Study study;
  const json& objective = field(root, "objective");
  study.metric = text_field(objective, "metric");
  const std::string goal = text_field(objective, "goal");
  if (goal == "maximize" || goal == "max") {
    study.maximize = true;
  } else if (goal == "minimize" || goal == "min") {
    study.maximize = false;
  } else {
    study.maximize = study.metric.find("loss") == std::string::npos;
  }

  const json& trials = field(root, "trials");
  if (trials.is_array()) {
    for (size_t i = 0; i < trials.size(); ++i) {
      const json& entry = trials[i];
      Trial trial;
      trial.position = i;
      trial.name = text_field(entry, "name");
      if (trial.name.empty()) trial.name = fmt::format("trial {}", i);
      trial.status = text_field(entry, "status");
      trial.reason = text_field(entry, "reason");
      trial.early_stopped =
          field(entry, "early_stopped").is_boolean() && field(entry, "early_stopped").get<bool>();
      trial.objective = number_field(entry, "objective");
      trial.started_at = number_field(entry, "started_at");
      trial.ended_at = number_field(entry, "ended_at");
      trial.epochs_run = number_field(entry, "epochs_run");
      const json& hyperparameters = field(entry, "hyperparameters");
      if (hyperparameters.is_object()) trial.hyperparameters = &hyperparameters;
      study.trials.push_back(std::move(trial));
    }
  }

  const json& parameters = field(root, "parameters");
  std::set<std::string> seen;
  if (parameters.is_object()) {
    study.parameters = &parameters;
    for (const auto& [name, definition] : parameters.items()) {
      if (seen.insert(name).second) study.parameter_names.push_back(name);
    }
  }
  std::set<std::string> undeclared;
  for (const auto& trial : study.trials) {
    if (!trial.hyperparameters) continue;
    for (const auto& [name, value] : trial.hyperparameters->items()) {
      if (!seen.count(name)) undeclared.insert(name);
    }
  }
  study.parameter_names.insert(study.parameter_names.end(), undeclared.begin(), undeclared.end());

  const json& best = field(root, "best");
  if (best.is_object()) study.best = &best;
  return study;
}

const json& hyperparameter(const Trial& trial, const std::string& name) {
  return trial.hyperparameters ? field(*trial.hyperparameters, name) : absent();
}

// The tuner's ranking (see the header): best first.
std::vector<const Trial*> rank_trials(const Study& study) {
  std::vector<const Trial*> ranked;
  for (const auto& trial : study.trials) ranked.push_back(&trial);
  std::stable_sort(ranked.begin(), ranked.end(), [&](const Trial* a, const Trial* b) {
    if (a->objective.has_value() != b->objective.has_value()) return a->objective.has_value();
    if (!a->objective) return false;
    if (a->early_stopped != b->early_stopped) return !a->early_stopped;
    return study.better(*a->objective, *b->objective);
  });
  return ranked;
}

std::string hyperparameters_text(const json* hyperparameters) {
  if (!hyperparameters || !hyperparameters->is_object()) return "";
  std::string out;
  for (const auto& [name, value] : hyperparameters->items()) {
    if (!out.empty()) out += ", ";
    out += name + "=" + json_text(value);
  }
  return out;
}

// ---- Status groups: one colour per status, the same in every chart. ----

const char* status_color(const std::string& label) {
  if (label == "Completed") return "#4e79a7";
  if (label == "Stopped (early)") return "#f28e2b";
  if (label == "Stopped") return "#9c755f";
  if (label == "Failed") return "#e15759";
  if (label == "InProgress") return "#76b7b2";
  return "#bab0ac";
}
constexpr const char* kBestColor = "#222222";

// Status labels in a stable order: the usual ones first, then others as met.
std::vector<std::string> status_labels(const Study& study) {
  std::vector<std::string> labels;
  for (const char* known : {"Completed", "Stopped (early)", "Stopped", "Failed", "InProgress"}) {
    for (const auto& trial : study.trials) {
      if (trial.status_label() == known) {
        labels.emplace_back(known);
        break;
      }
    }
  }
  for (const auto& trial : study.trials) {
    const std::string label = trial.status_label();
    if (std::find(labels.begin(), labels.end(), label) == labels.end()) labels.push_back(label);
  }
  return labels;
}

std::string point_tooltip(const Study& study, const Trial& trial) {
  return fmt::format("{} \u2014 {}\n{} = {}\n{}", trial.name, trial.status_label(),
                     or_dash(study.metric), format_number(trial.objective),
                     hyperparameters_text(trial.hyperparameters));
}

// One point series per status, x from `x_of` (nullopt: not plotted). Trials
// without an objective have nothing to plot, so their groups are left out.
template <typename XOf>
std::vector<Series> series_by_status(const Study& study, XOf x_of) {
  std::vector<Series> all;
  for (const auto& label : status_labels(study)) {
    Series series;
    series.name = label;
    series.style = Series::Style::kPoints;
    series.color = status_color(label);
    for (const auto& trial : study.trials) {
      if (trial.status_label() != label || !trial.objective) continue;
      const std::optional<double> x = x_of(trial);
      if (!x) continue;
      series.x.push_back(*x);
      series.y.push_back(*trial.objective);
      series.tooltips.push_back(point_tooltip(study, trial));
    }
    if (!series.x.empty()) all.push_back(std::move(series));
  }
  return all;
}

// ---- Sections. ----

// Metrics that are fractions in [0, 1] by nature, so they share one axis.
bool is_fraction_metric(std::string_view key) {
  for (std::string_view word : {"acc", "precision", "recall", "f1", "auc", "iou"}) {
    if (key.find(word) != std::string_view::npos) return true;
  }
  return false;
}

// Wall-clock stamps ("time": Unix seconds, "*_at") are when a point was
// recorded, not a metric of the model.
bool is_timestamp_key(std::string_view key) {
  return key == "time" || key == "timestamp" || key == "wall_time" ||
         (key.size() > 3 && key.substr(key.size() - 3) == "_at");
}

std::string summary_section(const json& root, const Study& study,
                            const std::vector<const Trial*>& ranked) {
  std::vector<std::pair<std::string, std::string>> rows;
  rows.emplace_back("Study", or_dash(text_field(root, "name")));
  rows.emplace_back("Status", or_dash(text_field(root, "status")));
  rows.emplace_back("Strategy", or_dash(text_field(root, "strategy")));
  rows.emplace_back("Early stopping", or_dash(text_field(root, "early_stopping")));
  const std::string at = text_field(field(root, "objective"), "at");
  rows.emplace_back("Objective", fmt::format("{} ({}{})", or_dash(study.metric),
                                             study.maximize ? "maximize" : "minimize",
                                             at.empty() ? "" : ", taken at the " + at + " epoch"));

  std::string counts = fmt::format("{}", study.trials.size());
  std::string separator = ": ";
  for (const auto& label : status_labels(study)) {
    const auto count =
        std::count_if(study.trials.begin(), study.trials.end(),
                      [&](const Trial& trial) { return trial.status_label() == label; });
    counts += fmt::format("{}{} {}", separator, count, label);
    separator = ", ";
  }
  rows.emplace_back("Trials", counts);

  if (study.best) {
    const std::string best_name = text_field(*study.best, "name");
    std::optional<double> best_objective = number_field(*study.best, "objective");
    const json* hyperparameters = &field(*study.best, "hyperparameters");
    if (!hyperparameters->is_object()) {
      hyperparameters = nullptr;
      for (const auto& trial : study.trials) {
        if (trial.name == best_name) hyperparameters = trial.hyperparameters;
      }
    }
    rows.emplace_back("Best trial", or_dash(best_name));
    rows.emplace_back("Best objective", or_dash(format_number(best_objective)));
    rows.emplace_back("Best hyperparameters", or_dash(hyperparameters_text(hyperparameters)));
  } else {
    rows.emplace_back("Best trial", ranked.empty() || !ranked.front()->objective
                                        ? "none: no trial produced an objective"
                                        : "not recorded");
  }

  std::string out = "<h2>Summary</h2>\n<dl class=\"summary\">\n";
  for (const auto& [key, value] : rows) {
    out += "<dt>" + html_escape(key) + "</dt><dd>" + html_escape(value) + "</dd>\n";
  }
  return out + "</dl>\n";
}

std::string objective_over_time_section(const Study& study,
                                        const std::vector<const Trial*>& ranked) {
  // Minutes since the first trial started; trial order when times are missing.
  std::optional<double> origin;
  bool every_point_timed = true;
  for (const auto& trial : study.trials) {
    if (trial.started_at)
      origin = origin ? std::min(*origin, *trial.started_at) : *trial.started_at;
    if (trial.objective && !trial.finished_at()) every_point_timed = false;
  }
  if (!origin) {
    for (const auto& trial : study.trials) {
      if (trial.ended_at) origin = origin ? std::min(*origin, *trial.ended_at) : *trial.ended_at;
    }
  }
  const bool timed = origin && every_point_timed;
  const auto x_of = [&](const Trial& trial) -> std::optional<double> {
    if (!timed) return static_cast<double>(trial.position);
    return (*trial.finished_at() - *origin) / 60.0;
  };

  std::vector<Series> series = series_by_status(study, x_of);

  // Best so far over the trials that can be the best: early-stopped trials
  // rank after the others, so they count only when there is nothing else.
  const bool any_full = std::any_of(ranked.begin(), ranked.end(), [](const Trial* t) {
    return t->objective && !t->early_stopped;
  });
  std::vector<const Trial*> candidates;
  for (const auto& trial : study.trials) {
    if (trial.objective && (!any_full || !trial.early_stopped)) candidates.push_back(&trial);
  }
  std::stable_sort(candidates.begin(), candidates.end(),
                   [&](const Trial* a, const Trial* b) { return *x_of(*a) < *x_of(*b); });
  Series best_so_far;
  best_so_far.name = "best so far";
  best_so_far.style = Series::Style::kStepLine;
  best_so_far.color = kBestColor;
  for (const Trial* trial : candidates) {
    const double value =
        best_so_far.y.empty() || study.better(*trial->objective, best_so_far.y.back())
            ? *trial->objective
            : best_so_far.y.back();
    best_so_far.x.push_back(*x_of(*trial));
    best_so_far.y.push_back(value);
  }
  if (!best_so_far.x.empty()) series.push_back(std::move(best_so_far));

  ChartOptions options;
  options.title = "Objective per trial over time";
  options.x_label = timed ? "minutes since the first trial started" : "trial";
  options.y_label = or_dash(study.metric);
  options.width = 720;
  return "<h2>Objective over time</h2>\n<div class=\"charts\">\n" +
         render_svg_chart(options, series) + "</div>\n";
}

std::string parameter_chart(const Study& study, const std::string& name) {
  const json& definition = study.parameters ? field(*study.parameters, name) : absent();
  const std::string type = text_field(definition, "type");
  const std::string scale = text_field(definition, "scale");
  bool categorical = type == "categorical" || field(definition, "choices").is_array();
  if (type.empty() && !categorical) {  // undeclared: categorical unless every value is a number
    for (const auto& trial : study.trials) {
      const json& value = hyperparameter(trial, name);
      if (!value.is_null() && !value.is_number()) categorical = true;
    }
  }

  ChartOptions options;
  options.title = fmt::format("{} vs objective", name);
  options.x_label = name;
  options.y_label = or_dash(study.metric);
  options.width = 420;
  options.height = 300;
  std::vector<json> choices;
  if (categorical) {
    const json& declared = field(definition, "choices");
    if (declared.is_array()) choices.assign(declared.begin(), declared.end());
    // Values outside the declared choices (e.g. a warm start) still get a place.
    for (const auto& trial : study.trials) {
      const json& value = hyperparameter(trial, name);
      if (!value.is_null() && std::find(choices.begin(), choices.end(), value) == choices.end()) {
        choices.push_back(value);
      }
    }
    for (const auto& choice : choices) options.x_categories.push_back(json_text(choice));
  } else {
    options.x_log = scale == "log";
    // Reverse-log spaces values near 1 (momentum); a linear axis shows them
    // truthfully if less evenly, which beats a transform nobody reads.
    if (scale == "log" || scale == "reverse-log")
      options.x_label += fmt::format(" ({} scale)", scale);
  }

  const auto x_of = [&](const Trial& trial) -> std::optional<double> {
    const json& value = hyperparameter(trial, name);
    if (value.is_null()) return std::nullopt;
    if (categorical) {
      const auto it = std::find(choices.begin(), choices.end(), value);
      return static_cast<double>(it - choices.begin());
    }
    if (!value.is_number()) return std::nullopt;
    return value.get<double>();
  };
  std::vector<Series> series = series_by_status(study, x_of);
  if (study.best) {
    const std::string best_name = text_field(*study.best, "name");
    for (const auto& trial : study.trials) {
      if (trial.name != best_name || !trial.objective) continue;
      if (const auto x = x_of(trial)) {
        Series best{.name = "best",
                    .x = {*x},
                    .y = {*trial.objective},
                    .tooltips = {point_tooltip(study, trial)},
                    .style = Series::Style::kPoints,
                    .color = kBestColor};
        series.push_back(std::move(best));
      }
      break;
    }
  }
  return render_svg_chart(options, series);
}

std::string parameters_section(const Study& study) {
  std::string out = "<h2>Parameters vs objective</h2>\n";
  if (study.parameter_names.empty())
    return out + "<p class=\"note\">The study has no parameters.</p>\n";
  out += "<div class=\"charts\">\n";
  for (const auto& name : study.parameter_names) out += parameter_chart(study, name);
  return out + "</div>\n";
}

std::string learning_curve_section(const Study& study) {
  std::string out = "<h2>Best trial learning curve</h2>\n";
  const json& curve = study.best ? field(*study.best, "curve") : absent();
  if (!curve.is_array() || curve.empty()) {
    return out + "<p class=\"note\">No learning curve was recorded for the best trial.</p>\n";
  }
  // x: the epoch when recorded, else the step, else the position in the curve.
  std::string x_key;
  for (const char* key : {"epoch", "step"}) {
    if (x_key.empty() && std::any_of(curve.begin(), curve.end(), [&](const json& point) {
          return number_field(point, key).has_value();
        })) {
      x_key = key;
    }
  }
  std::vector<std::string> metrics;  // in first-seen order
  for (const auto& point : curve) {
    if (!point.is_object()) continue;
    for (const auto& [key, value] : point.items()) {
      if (key == "epoch" || key == "step" || is_timestamp_key(key) || !value.is_number()) continue;
      if (std::find(metrics.begin(), metrics.end(), key) == metrics.end()) metrics.push_back(key);
    }
  }

  // Losses on one chart, fractions (accuracies) on another, and every other
  // metric (images/s, seconds per epoch, ...) on a chart of its own: one
  // shared axis would flatten the small ones to a line at 0.
  std::vector<Series> losses, fractions, others;
  for (const auto& metric : metrics) {
    Series series;
    series.name = metric;
    for (size_t i = 0; i < curve.size(); ++i) {
      const auto x =
          x_key.empty() ? std::optional(static_cast<double>(i)) : number_field(curve[i], x_key);
      const auto y = number_field(curve[i], metric);
      series.x.push_back(x.value_or(NAN));  // NaN leaves a gap in the line
      series.y.push_back(y.value_or(NAN));
    }
    if (metric.find("loss") != std::string::npos) {
      losses.push_back(std::move(series));
    } else if (is_fraction_metric(metric)) {
      fractions.push_back(std::move(series));
    } else {
      others.push_back(std::move(series));
    }
  }
  const std::string best_name = text_field(*study.best, "name");
  const auto chart = [&](const std::string& what, const std::vector<Series>& series) {
    ChartOptions options;
    options.title = best_name.empty() ? fmt::format("Best trial: {}", what)
                                      : fmt::format("{}: {}", best_name, what);
    options.x_label = x_key.empty() ? "point" : x_key;
    options.y_label = what;
    options.width = 520;
    return render_svg_chart(options, series);
  };
  out += "<div class=\"charts\">\n";
  if (!losses.empty()) out += chart("loss", losses);
  if (!fractions.empty()) out += chart("metrics", fractions);
  for (const auto& series : others) out += chart(series.name, {series});
  if (metrics.empty()) out += chart("metrics", {});
  return out + "</div>\n";
}

std::string trials_section(const Study& study, const std::vector<const Trial*>& ranked) {
  std::vector<std::string> header = {"trial", "status", "objective"};
  header.insert(header.end(), study.parameter_names.begin(), study.parameter_names.end());
  header.insert(header.end(), {"epochs run", "duration (s)", "reason"});

  std::vector<std::vector<std::string>> rows;
  for (const Trial* trial : ranked) {
    std::vector<std::string> row = {trial->name, trial->status_label(),
                                    format_number(trial->objective)};
    for (const auto& name : study.parameter_names)
      row.push_back(json_text(hyperparameter(*trial, name)));
    row.push_back(format_number(trial->epochs_run, "{:g}"));
    std::optional<double> duration;
    if (trial->started_at && trial->ended_at) duration = *trial->ended_at - *trial->started_at;
    row.push_back(format_number(duration, "{:.1f}"));
    row.push_back(trial->reason);
    rows.push_back(std::move(row));
  }
  std::string out = "<h2>Trials</h2>\n";
  if (rows.empty()) return out + "<p class=\"note\">The study has no trials.</p>\n";
  return out + html_table(header, rows);
}

}  // namespace

std::string render_tuning_report(const json& study_json) {
  const Study study = read_study(study_json);
  const std::vector<const Trial*> ranked = rank_trials(study);
  const std::string name = text_field(study_json, "name");

  std::string body;
  body += summary_section(study_json, study, ranked);
  body += objective_over_time_section(study, ranked);
  body += parameters_section(study);
  body += learning_curve_section(study);
  body += trials_section(study, ranked);
  return html_page(name.empty() ? "Tuning study" : "Tuning study " + name, body);
}

}  // namespace kennel::report

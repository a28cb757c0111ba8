#include "kennel/profile/profile_report.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <optional>
#include <set>
#include <string_view>

#include <fmt/format.h>

#include "kennel/profile/detail/stats.h"
#include "kennel/report/html.h"
#include "kennel/report/svg_chart.h"
#include "kennel/report/json_fields.h"

namespace kennel::profile {
namespace {

using nlohmann::json;
using report::ChartOptions;
using report::html_escape;
using report::Series;

// Enough points for a chart as wide as a screen; more only makes the file heavy.
constexpr size_t kMaxPoints = 500;
constexpr size_t kMaxOutliersListed = 50;
constexpr size_t kMaxHistogramBins = 40;
// A per-core chart with more lines than this is unreadable: draw an envelope instead.
constexpr size_t kMaxCoreLines = 16;
// StepOutlier's defaults, for a summary made without its result.
constexpr double kDefaultOutlierStddev = 3;
constexpr int64_t kDefaultOutlierSkipSteps = 3;

using Phase = StepPhase;

// ======================================================================== the summary

json number_or_null(double value) {
  return std::isfinite(value) ? json(value) : json(nullptr);
}
json number_or_null(std::optional<double> value) {
  return value ? number_or_null(*value) : json(nullptr);
}

json number_array(const std::vector<double>& values) {
  json out = json::array();
  for (const double value : values) out.push_back(number_or_null(value));
  return out;
}

// Bucket means, at most `points` of them; a bucket with nothing finite is NaN.
std::vector<double> downsample(const std::vector<double>& values, size_t points = kMaxPoints) {
  if (values.size() <= points) return values;
  std::vector<double> out;
  out.reserve(points);
  for (size_t bucket = 0; bucket < points; ++bucket) {
    const size_t begin = bucket * values.size() / points;
    const size_t end = (bucket + 1) * values.size() / points;
    double sum = 0;
    size_t count = 0;
    for (size_t i = begin; i < end; ++i) {
      if (std::isfinite(values[i])) {
        sum += values[i];
        ++count;
      }
    }
    out.push_back(count ? sum / static_cast<double>(count) : kNaN);
  }
  return out;
}

bool recorded(double time) {
  return std::isfinite(time) && time > 0;
}

json span_seconds(double from, double to) {
  return recorded(from) && recorded(to) && to >= from ? json(to - from) : json(nullptr);
}

// The "sync" phase exists only in data-parallel jobs (steps that record every rank's busy time).
bool shows_phase(const ProfileData& data, const Phase& phase) {
  if (phase.field != &StepTiming::sync) return true;
  return std::any_of(data.steps.begin(), data.steps.end(),
                     [](const StepTiming& step) { return step.rank_busy.size() > 1; });
}

json job_json(const ProfileData& data, const std::vector<RuleResult>& rules) {
  std::set<std::pair<int, std::string>> gpus;
  for (const auto& sample : data.system) {
    for (const auto& gpu : sample.gpus) gpus.emplace(gpu.index, gpu.name);
  }
  json gpu_names = json::array();
  std::set<int> named;
  for (const auto& [index, name] : gpus) {
    if (named.insert(index).second)
      gpu_names.push_back(fmt::format("GPU {}{}", index, name.empty() ? "" : ": " + name));
  }
  json triggered = json::array();
  for (const auto& rule : rules) {
    if (rule.triggered) triggered.push_back(rule.rule);
  }
  return {{"name", data.job},
          {"device", data.device},
          {"cores", data.cores},
          {"decode_threads", data.decode_threads},
          {"compute_threads", data.compute_threads},
          {"job_start", number_or_null(recorded(data.job_start) ? data.job_start : kNaN)},
          {"first_step_start",
           number_or_null(recorded(data.first_step_start) ? data.first_step_start : kNaN)},
          {"loop_end", number_or_null(recorded(data.loop_end) ? data.loop_end : kNaN)},
          {"job_end", number_or_null(recorded(data.job_end) ? data.job_end : kNaN)},
          {"init_seconds", span_seconds(data.job_start, data.first_step_start)},
          {"loop_seconds", span_seconds(data.first_step_start, data.loop_end)},
          {"finalisation_seconds", span_seconds(data.loop_end, data.job_end)},
          {"total_seconds", span_seconds(data.job_start, data.job_end)},
          {"steps", data.steps.size()},
          {"system_samples", data.system.size()},
          {"gpus", gpu_names},
          {"rules", rules.size()},
          {"rules_triggered", triggered}};
}

json usage_row(const std::string& metric, const std::string& label, const std::string& unit,
               const std::vector<double>& values) {
  const detail::Distribution d = detail::describe(values);
  return {{"metric", metric},
          {"label", label},
          {"unit", unit},
          {"count", d.count},
          {"min", number_or_null(d.min)},
          {"p50", number_or_null(d.p50)},
          {"p95", number_or_null(d.p95)},
          {"p99", number_or_null(d.p99)},
          {"max", number_or_null(d.max)}};
}

std::set<int> gpu_indices(const ProfileData& data) {
  std::set<int> indices;
  for (const auto& sample : data.system) {
    for (const auto& gpu : sample.gpus) indices.insert(gpu.index);
  }
  return indices;
}



json system_usage_json(const ProfileData& data) {
  const auto column = [&](auto read) {
    std::vector<double> values;
    for (const auto& sample : data.system) values.push_back(read(sample));
    return values;
  };
  json rows = json::array();
  rows.push_back(
      usage_row("cpu", "CPU, all cores", "%", column([](const SystemSample& s) { return s.cpu; })));
  rows.push_back(
      usage_row("iowait", "I/O wait", "%", column([](const SystemSample& s) { return s.iowait; })));
  rows.push_back(usage_row("process_cpu", "process CPU", "% of one core",
                           column([](const SystemSample& s) { return s.process_cpu; })));
  rows.push_back(usage_row("process_rss", "process resident memory", "MiB",
                           column([](const SystemSample& s) { return s.process_rss / kMiB; })));
  rows.push_back(usage_row("memory_used", "memory used, machine", "GiB",
                           column([](const SystemSample& s) { return s.memory_used / kGiB; })));
  rows.push_back(usage_row("disk_read", "disk read", "MiB/s",
                           column([](const SystemSample& s) { return s.disk_read / kMiB; })));
  rows.push_back(usage_row("disk_write", "disk write", "MiB/s",
                           column([](const SystemSample& s) { return s.disk_write / kMiB; })));
  rows.push_back(usage_row("net_receive", "network receive", "MiB/s",
                           column([](const SystemSample& s) { return s.net_receive / kMiB; })));
  rows.push_back(usage_row("net_transmit", "network transmit", "MiB/s",
                           column([](const SystemSample& s) { return s.net_transmit / kMiB; })));
  for (const int index : gpu_indices(data)) {
    const auto gpu_column = [&](auto read) {
      std::vector<double> values;
      for (const auto& sample : data.system) {
        if (const GpuSample* gpu = find_gpu(sample, index)) values.push_back(read(*gpu));
      }
      return values;
    };
    const std::string prefix = fmt::format("gpu{}_", index);
    rows.push_back(usage_row(prefix + "utilization", fmt::format("GPU {} utilisation", index), "%",
                             gpu_column([](const GpuSample& g) { return g.utilization; })));
    rows.push_back(usage_row(prefix + "memory_used", fmt::format("GPU {} memory used", index),
                             "GiB",
                             gpu_column([](const GpuSample& g) { return g.memory_used / kGiB; })));
    rows.push_back(usage_row(prefix + "memory_percent", fmt::format("GPU {} memory used", index),
                             "% of its memory", gpu_column(gpu_memory_percent)));
  }
  return rows;
}

json utilisation_json(const ProfileData& data) {
  const double origin = recorded(data.job_start) ? data.job_start
                        : data.system.empty()    ? 0
                                                 : data.system.front().time;
  size_t widest = 0;
  for (const auto& sample : data.system) widest = std::max(widest, sample.cpu_per_core.size());
  const double cores = data.cores > 0 ? static_cast<double>(data.cores)
                                      : static_cast<double>(std::max<size_t>(widest, 1));

  std::vector<double> time, cpu, process;
  std::vector<std::vector<double>> per_core(widest);
  for (const auto& sample : data.system) {
    time.push_back(sample.time - origin);
    cpu.push_back(sample.cpu);
    process.push_back(sample.process_cpu / cores);
    for (size_t core = 0; core < widest; ++core) {
      per_core[core].push_back(core < sample.cpu_per_core.size() ? sample.cpu_per_core[core]
                                                                 : kNaN);
    }
  }
  json cores_json = json::array();
  for (const auto& values : per_core) cores_json.push_back(number_array(downsample(values)));
  json gpus = json::array();
  for (const int index : gpu_indices(data)) {
    std::vector<double> utilization, memory;
    std::string name;
    for (const auto& sample : data.system) {
      const GpuSample* gpu = find_gpu(sample, index);
      utilization.push_back(gpu ? gpu->utilization : kNaN);
      memory.push_back(gpu ? gpu_memory_percent(*gpu) : kNaN);
      if (gpu && name.empty()) name = gpu->name;
    }
    gpus.push_back({{"index", index},
                    {"name", name},
                    {"utilization", number_array(downsample(utilization))},
                    {"memory_percent", number_array(downsample(memory))}});
  }
  return {{"time", number_array(downsample(time))},
          {"cpu", number_array(downsample(cpu))},
          {"process_cpu", number_array(downsample(process))},
          {"process_cpu_cores", cores},
          {"per_core", cores_json},
          {"gpus", gpus},
          {"samples", data.system.size()}};
}

bool valid_step(const StepTiming& step) {
  return std::isfinite(step.total) && step.total >= 0;
}


// StepOutlier's effective parameter, so the report lists the steps the rule counted.
double outlier_parameter(const std::vector<RuleResult>& rules, const char* name, double fallback) {
  for (const auto& rule : rules) {
    if (rule.rule != "StepOutlier" || !rule.parameters.is_object()) continue;
    const auto found = rule.parameters.find(name);
    if (found != rule.parameters.end() && found->is_number() &&
        std::isfinite(found->get<double>())) {
      // A hand-made result may hold anything; keep it convertible to a count.
      return std::clamp(found->get<double>(), 0.0, 1e9);
    }
  }
  return fallback;
}

json histogram_json(const std::vector<double>& totals_ms) {
  json bins = json::array();
  const std::vector<double> finite = detail::finite_values(totals_ms);
  if (finite.empty()) return bins;
  const auto [low, high] = std::minmax_element(finite.begin(), finite.end());
  const size_t count =
      *high > *low ? std::clamp<size_t>(static_cast<size_t>(std::ceil(std::sqrt(finite.size()))), 1,
                                        kMaxHistogramBins)
                   : 1;
  const double width = (*high - *low) / static_cast<double>(count);
  std::vector<int64_t> counts(count, 0);
  for (const double value : finite) {
    const size_t bin =
        width > 0 ? std::min(count - 1, static_cast<size_t>((value - *low) / width)) : 0;
    ++counts[bin];
  }
  for (size_t i = 0; i < count; ++i) {
    const double from = *low + width * static_cast<double>(i);
    const double to = i + 1 == count ? *high : from + width;
    bins.push_back({{"from_ms", from}, {"to_ms", to}, {"count", counts[i]}});
  }
  return bins;
}

json steps_json(const ProfileData& data, const std::vector<RuleResult>& rules) {
  const double k = outlier_parameter(rules, "stddev", kDefaultOutlierStddev);
  int64_t skip =
      static_cast<int64_t>(outlier_parameter(rules, "skip_steps", kDefaultOutlierSkipSteps));
  std::vector<const StepTiming*> steps;
  for (size_t i = static_cast<size_t>(std::max<int64_t>(skip, 0)); i < data.steps.size(); ++i) {
    if (valid_step(data.steps[i])) steps.push_back(&data.steps[i]);
  }
  // A run shorter than the warm-up still gets statistics, from every step.
  if (steps.empty()) {
    skip = 0;
    for (const auto& step : data.steps) {
      if (valid_step(step)) steps.push_back(&step);
    }
  }
  std::vector<double> totals_ms;
  for (const auto* step : steps) totals_ms.push_back(step->total * 1000);
  const detail::Distribution d = detail::describe(totals_ms);
  json out = {{"count", d.count},
              {"skipped", std::min<int64_t>(std::max<int64_t>(skip, 0),
                                            static_cast<int64_t>(data.steps.size()))},
              {"mean_ms", number_or_null(d.mean)},
              {"min_ms", number_or_null(d.min)},
              {"p50_ms", number_or_null(d.p50)},
              {"p95_ms", number_or_null(d.p95)},
              {"p99_ms", number_or_null(d.p99)},
              {"max_ms", number_or_null(d.max)},
              {"std_ms", number_or_null(d.std)},
              {"histogram", histogram_json(totals_ms)},
              {"outlier_stddev", k}};
  json outliers = json::array();
  if (d.mean && d.std) {
    const double threshold_ms = *d.mean + k * *d.std;
    out["outlier_threshold_ms"] = number_or_null(threshold_ms);
    std::vector<const StepTiming*> slow;
    for (const auto* step : steps) {
      if (step->total * 1000 > threshold_ms) slow.push_back(step);
    }
    std::sort(slow.begin(), slow.end(),
              [](const StepTiming* a, const StepTiming* b) { return a->total > b->total; });
    out["outlier_count"] = slow.size();
    for (size_t i = 0; i < slow.size() && i < kMaxOutliersListed; ++i) {
      const StepTiming& step = *slow[i];
      const Phase& biggest = biggest_phase(step);
      json entry = {{"step", step.step},
                    {"epoch", step.epoch},
                    {"total_ms", number_or_null(step.total * 1000)},
                    {"biggest_phase", biggest.name},
                    {"biggest_phase_ms", number_or_null(step.*biggest.field * 1000)}};
      for (const Phase& phase : kStepPhases) {
        if (shows_phase(data, phase)) entry[std::string(phase.name) + "_ms"] = number_or_null(step.*phase.field * 1000);
      }
      outliers.push_back(std::move(entry));
    }
  } else {
    out["outlier_threshold_ms"] = nullptr;
    out["outlier_count"] = 0;
  }
  out["outliers"] = std::move(outliers);
  return out;
}

json phases_json(const ProfileData& data) {
  double total = 0;
  std::array<double, kStepPhases.size()> sums{};
  for (const auto& step : data.steps) {
    if (!valid_step(step)) continue;
    total += step.total;
    for (size_t i = 0; i < kStepPhases.size(); ++i) {
      const double value = step.*kStepPhases[i].field;
      if (std::isfinite(value) && value > 0) sums[i] += value;
    }
  }
  json rows = json::array();
  double phases = 0;
  const auto row = [&](const char* name, double seconds) {
    return json{{"phase", name},
                {"seconds", seconds},
                {"share", total > 0 ? json(seconds / total) : json(nullptr)}};
  };
  for (size_t i = 0; i < kStepPhases.size(); ++i) {
    phases += sums[i];
    if (shows_phase(data, kStepPhases[i])) rows.push_back(row(kStepPhases[i].name, sums[i]));
  }
  // Time in the step no phase accounts for (the loop's own bookkeeping).
  rows.push_back(row("other", std::max(0.0, total - phases)));
  return rows;
}

json phase_series_json(const ProfileData& data) {
  std::vector<double> index, total;
  std::array<std::vector<double>, kStepPhases.size()> phases;
  for (const auto& step : data.steps) {
    index.push_back(static_cast<double>(step.step));
    total.push_back(valid_step(step) ? step.total * 1000 : kNaN);
    for (size_t i = 0; i < kStepPhases.size(); ++i) phases[i].push_back(step.*kStepPhases[i].field * 1000);
  }
  json out = {{"step", number_array(downsample(index))},
              {"total_ms", number_array(downsample(total))}};
  for (size_t i = 0; i < kStepPhases.size(); ++i) {
    if (shows_phase(data, kStepPhases[i])) out[std::string(kStepPhases[i].name) + "_ms"] = number_array(downsample(phases[i]));
  }
  return out;
}

// ======================================================================== the page

using report::absent;
using report::array_field;
using report::field;
using report::or_dash;

std::optional<double> number(const json& value) { return report::finite_number(value); }

std::vector<double> numbers(const json& array) {
  std::vector<double> out;
  if (!array.is_array()) return out;
  for (const auto& value : array) out.push_back(number(value).value_or(kNaN));
  return out;
}

std::string format_value(double value) {
  if (!std::isfinite(value)) return "";
  if (std::floor(value) == value && std::fabs(value) < 1e15) return fmt::format("{:.0f}", value);
  if (std::fabs(value) >= 100) return fmt::format("{:.1f}", value);
  if (std::fabs(value) >= 1) return fmt::format("{:.2f}", value);
  return fmt::format("{:.3g}", value);
}

// JSON as display text; replaces invalid UTF-8 instead of throwing on it.
std::string text(const json& value) {
  if (value.is_null()) return "";
  if (value.is_string()) return value.get<std::string>();
  if (value.is_boolean()) return value.get<bool>() ? "yes" : "no";
  if (value.is_number()) return number(value) ? format_value(*number(value)) : "";
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string text_field(const json& object, std::string_view key) {
  return text(field(object, key));
}

std::string duration_text(const json& seconds, const char* what) {
  const auto value = number(seconds);
  if (!value) return "-";
  const std::string shown = *value >= 120
                                ? fmt::format("{:.1f} min ({:.0f} s)", *value / 60, *value)
                                : fmt::format("{:.1f} s", *value);
  return fmt::format("{} ({})", shown, what);
}

std::string note(const std::string& message) {
  return "<p class=\"note\">" + html_escape(message) + "</p>\n";
}

std::string charts(const std::vector<std::string>& svgs) {
  std::string out = "<div class=\"charts\">\n";
  for (const auto& svg : svgs) out += svg;
  return out + "</div>\n";
}

Series line(const std::string& name, const std::vector<double>& x, const std::vector<double>& y) {
  Series series;
  series.name = name;
  series.x = x;
  series.y = y;
  return series;
}

// ---- Sections. ----

std::string job_section(const json& summary) {
  const json& job = field(summary, "job");
  std::vector<std::pair<std::string, std::string>> rows;
  rows.emplace_back("Job", or_dash(text_field(job, "name")));
  rows.emplace_back("Device", or_dash(text_field(job, "device")));
  rows.emplace_back("CPU", fmt::format("{} cores; {} decode threads; {} compute threads",
                                       or_dash(text_field(job, "cores")),
                                       or_dash(text_field(job, "decode_threads")),
                                       or_dash(text_field(job, "compute_threads"))));
  std::string gpus;
  for (const auto& name : array_field(job, "gpus")) gpus += (gpus.empty() ? "" : ", ") + text(name);
  rows.emplace_back("GPUs", gpus.empty() ? "none" : gpus);
  rows.emplace_back("Initialisation",
                    duration_text(field(job, "init_seconds"), "job start to the first step"));
  rows.emplace_back("Training loop",
                    duration_text(field(job, "loop_seconds"), "first step to the loop's end"));
  rows.emplace_back("Finalisation",
                    duration_text(field(job, "finalisation_seconds"), "loop end to the job's end"));
  rows.emplace_back("Total", duration_text(field(job, "total_seconds"), "job start to end"));
  rows.emplace_back("Steps", or_dash(text_field(job, "steps")));
  rows.emplace_back("System samples", or_dash(text_field(job, "system_samples")));

  const json& rules = array_field(summary, "rules");
  std::string triggered;
  size_t count = 0;
  for (const auto& rule : rules) {
    if (field(rule, "triggered") != true) continue;
    ++count;
    triggered += (triggered.empty() ? ": " : ", ") + text_field(rule, "rule");
  }
  rows.emplace_back("Rules triggered",
                    rules.empty() ? "no rules were evaluated"
                                  : fmt::format("{} of {}{}", count, rules.size(), triggered));

  std::string out = "<h2>Job summary</h2>\n<dl class=\"summary\">\n";
  for (const auto& [key, value] : rows)
    out += "<dt>" + html_escape(key) + "</dt><dd>" + html_escape(value) + "</dd>\n";
  return out + "</dl>\n";
}

std::string system_usage_section(const json& summary) {
  std::string out = "<h2>System usage</h2>\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& row : array_field(summary, "system_usage")) {
    rows.push_back({or_dash(text_field(row, "label").empty() ? text_field(row, "metric")
                                                             : text_field(row, "label")),
                    text_field(row, "unit"), text_field(row, "min"), text_field(row, "p50"),
                    text_field(row, "p95"), text_field(row, "p99"), text_field(row, "max"),
                    text_field(row, "count")});
  }
  const json& job = field(summary, "job");
  if (rows.empty() || number(field(job, "system_samples")).value_or(1) == 0) {
    out += note("No system samples were recorded: the system monitor did not run.");
  }
  if (!rows.empty())
    out +=
        report::html_table({"metric", "unit", "min", "p50", "p95", "p99", "max", "samples"}, rows);
  return out;
}

std::string utilisation_section(const json& summary) {
  std::string out = "<h2>Utilisation over time</h2>\n";
  const json& utilisation = field(summary, "utilisation");
  const std::vector<double> time = numbers(field(utilisation, "time"));
  if (time.empty()) return out + note("No system samples were recorded.");
  if (const auto samples = number(field(utilisation, "samples"));
      samples && *samples > static_cast<double>(time.size())) {
    out += note(fmt::format("{:.0f} samples, drawn as {} bucket means.", *samples, time.size()));
  }

  ChartOptions options;
  options.title = "CPU and GPU utilisation";
  options.x_label = "seconds since the job started";
  options.y_label = "%";
  options.width = 720;
  std::vector<Series> usage;
  usage.push_back(line("CPU, all cores", time, numbers(field(utilisation, "cpu"))));
  const std::string process_cores = text_field(utilisation, "process_cpu_cores");
  usage.push_back(
      line(process_cores.empty() ? "process CPU" : "process CPU, % of " + process_cores + " cores",
           time, numbers(field(utilisation, "process_cpu"))));
  std::vector<Series> memory;
  for (const auto& gpu : array_field(utilisation, "gpus")) {
    const std::string name = "GPU " + text_field(gpu, "index");
    usage.push_back(line(name, time, numbers(field(gpu, "utilization"))));
    memory.push_back(line(name, time, numbers(field(gpu, "memory_percent"))));
  }
  std::vector<std::string> svgs = {report::render_svg_chart(options, usage)};

  const json& per_core = array_field(utilisation, "per_core");
  if (!per_core.empty()) {
    std::vector<Series> cores;
    if (per_core.size() <= kMaxCoreLines) {
      for (size_t core = 0; core < per_core.size(); ++core) {
        cores.push_back(line(fmt::format("core {}", core), time, numbers(per_core[core])));
      }
    } else {
      std::vector<double> busiest(time.size(), kNaN), mean(time.size(), kNaN),
          idlest(time.size(), kNaN);
      for (size_t i = 0; i < time.size(); ++i) {
        std::vector<double> values;
        for (const auto& core : per_core) {
          if (core.is_array() && i < core.size()) values.push_back(number(core[i]).value_or(kNaN));
        }
        values = detail::finite_values(values);
        if (values.empty()) continue;
        busiest[i] = *std::max_element(values.begin(), values.end());
        idlest[i] = *std::min_element(values.begin(), values.end());
        mean[i] = *detail::mean(values);
      }
      cores.push_back(line("busiest core", time, busiest));
      cores.push_back(line("mean of the cores", time, mean));
      cores.push_back(line("idlest core", time, idlest));
    }
    ChartOptions core_options = options;
    core_options.title = fmt::format("CPU per core ({} cores)", per_core.size());
    core_options.width = 560;
    svgs.push_back(report::render_svg_chart(core_options, cores));
  }
  if (!memory.empty()) {
    ChartOptions memory_options = options;
    memory_options.title = "GPU memory used";
    memory_options.y_label = "% of the GPU's memory";
    memory_options.width = 560;
    svgs.push_back(report::render_svg_chart(memory_options, memory));
  }
  return out + charts(svgs);
}

std::string steps_section(const json& summary) {
  std::string out = "<h2>Step durations</h2>\n";
  const json& steps = field(summary, "steps");
  const auto count = number(field(steps, "count"));
  if (!count || *count == 0) return out + note("No training steps were recorded.");
  const auto skipped = number(field(steps, "skipped")).value_or(0);
  if (skipped > 0)
    out += note(fmt::format("Statistics leave out the first {:.0f} warm-up steps.", skipped));
  out += report::html_table(
      {"steps", "mean (ms)", "min (ms)", "p50 (ms)", "p95 (ms)", "p99 (ms)", "max (ms)",
       "std (ms)"},
      {{text_field(steps, "count"), text_field(steps, "mean_ms"), text_field(steps, "min_ms"),
        text_field(steps, "p50_ms"), text_field(steps, "p95_ms"), text_field(steps, "p99_ms"),
        text_field(steps, "max_ms"), text_field(steps, "std_ms")}});

  // The histogram as a step line: each bin's count held across its width.
  Series histogram;
  histogram.name = "steps";
  histogram.style = Series::Style::kStepLine;
  const json& bins = array_field(steps, "histogram");
  for (const auto& bin : bins) {
    const auto from = number(field(bin, "from_ms"));
    const auto to = number(field(bin, "to_ms"));
    const auto n = number(field(bin, "count"));
    if (!from || !to || !n) continue;
    if (histogram.x.empty()) {
      histogram.x.push_back(*from);
      histogram.y.push_back(0);
      histogram.tooltips.emplace_back("");
    }
    histogram.x.push_back(*from);
    histogram.y.push_back(*n);
    histogram.tooltips.push_back(
        fmt::format("{}-{} ms: {:.0f} steps", format_value(*from), format_value(*to), *n));
  }
  if (!histogram.x.empty()) {
    const auto last_to = number(field(bins.back(), "to_ms"));
    histogram.x.push_back(last_to.value_or(histogram.x.back()));
    histogram.y.push_back(0);
    histogram.tooltips.emplace_back("");
  }
  ChartOptions histogram_options;
  histogram_options.title = "Step duration histogram";
  histogram_options.x_label = "step duration (ms)";
  histogram_options.y_label = "steps";
  histogram_options.width = 480;

  const json& series = field(summary, "phase_series");
  ChartOptions over_run;
  over_run.title = "Step duration over the run";
  over_run.x_label = "step";
  over_run.y_label = "ms";
  over_run.width = 640;
  std::vector<Series> durations = {
      line("step", numbers(field(series, "step")), numbers(field(series, "total_ms")))};
  if (const auto threshold = number(field(steps, "outlier_threshold_ms"))) {
    const std::vector<double> x = numbers(field(series, "step"));
    if (!x.empty()) {
      Series bar = line("outlier threshold", {x.front(), x.back()}, {*threshold, *threshold});
      bar.color = "#e15759";
      durations.push_back(std::move(bar));
    }
  }
  out += charts({report::render_svg_chart(histogram_options, {histogram}),
                 report::render_svg_chart(over_run, durations)});

  out += "<h3>Outlier steps</h3>\n";
  const auto threshold = number(field(steps, "outlier_threshold_ms"));
  const std::string rule_text =
      threshold ? fmt::format("slower than {} ms (mean + {}\u00b7\u03c3)", format_value(*threshold),
                              or_dash(text_field(steps, "outlier_stddev")))
                : "far slower than the rest";
  const json& outliers = array_field(steps, "outliers");
  const double outlier_count =
      number(field(steps, "outlier_count")).value_or(static_cast<double>(outliers.size()));
  if (outliers.empty()) return out + note("No step was " + rule_text + ".");
  out += note(fmt::format("{:.0f} steps were {}{}.", outlier_count, rule_text,
                          outlier_count > static_cast<double>(outliers.size())
                              ? fmt::format("; the {} slowest are listed", outliers.size())
                              : ""));
  std::vector<std::string> header = {"step", "epoch", "total (ms)", "biggest phase"};
  std::vector<std::string> shown;  // the phases the summary has (sync only for data-parallel jobs)
  for (const Phase& phase : kStepPhases) {
    if (outliers.front().contains(std::string(phase.name) + "_ms")) shown.emplace_back(phase.name);
  }
  for (const auto& name : shown) header.push_back(name + " (ms)");
  std::vector<std::vector<std::string>> rows;
  for (const auto& outlier : outliers) {
    std::vector<std::string> row = {text_field(outlier, "step"), text_field(outlier, "epoch"),
                                    text_field(outlier, "total_ms"),
                                    text_field(outlier, "biggest_phase")};
    for (const auto& name : shown) row.push_back(text_field(outlier, name + "_ms"));
    rows.push_back(std::move(row));
  }
  return out + report::html_table(header, rows);
}

std::string phases_section(const json& summary) {
  std::string out = "<h2>Time by phase</h2>\n";
  std::vector<std::vector<std::string>> rows;
  double total = 0;
  for (const auto& row : array_field(summary, "phases")) {
    const auto share = number(field(row, "share"));
    total += number(field(row, "seconds")).value_or(0);
    rows.push_back({text_field(row, "phase"), text_field(row, "seconds"),
                    share ? fmt::format("{:.1f}", *share * 100) : ""});
  }
  if (rows.empty() || total <= 0) return out + note("No step time was recorded.");
  out += report::html_table({"phase", "seconds", "share of step time (%)"}, rows);

  const json& series = field(summary, "phase_series");
  const std::vector<double> x = numbers(field(series, "step"));
  std::vector<Series> lines;
  for (const Phase& phase : kStepPhases) {
    const std::string key = std::string(phase.name) + "_ms";
    if (series.is_object() && series.contains(key)) lines.push_back(line(phase.name, x, numbers(field(series, key))));
  }
  ChartOptions options;
  options.title = "Phase time per step";
  options.x_label = "step";
  options.y_label = "ms";
  options.width = 720;
  return out + charts({report::render_svg_chart(options, lines)});
}

std::string operators_section(const json& summary) {
  std::string out = "<h2>Top operators</h2>\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& op : array_field(summary, "top_operators")) {
    rows.push_back({text_field(op, "name"), text_field(op, "calls"), text_field(op, "self_ms"),
                    text_field(op, "total_ms")});
  }
  if (rows.empty()) return out + note("No operator trace recorded.");
  return out + report::html_table({"operator", "calls", "self (ms)", "total (ms)"}, rows);
}

std::string parameters_text(const json& parameters) {
  if (!parameters.is_object()) return "";
  std::string out;
  for (const auto& [name, value] : parameters.items())
    out += (out.empty() ? "" : ", ") + name + "=" + text(value);
  return out;
}

// Not html_table: a triggered rule's row is marked, which needs a row attribute.
std::string rules_section(const json& summary) {
  std::string out = "<h2>Rules</h2>\n";
  const json& rules = array_field(summary, "rules");
  if (rules.empty()) return out + note("No rules were evaluated.");
  size_t triggered = 0;
  for (const auto& rule : rules) triggered += field(rule, "triggered") == true ? 1 : 0;
  out += note(fmt::format("{} of {} rules triggered.", triggered, rules.size()));
  out += "<table>\n<thead><tr>";
  for (const char* name : {"rule", "triggered", "violations", "datapoints", "parameters", "message",
                           "recommendation"}) {
    out += fmt::format("<th>{}</th>", name);
  }
  out += "</tr></thead>\n<tbody>\n";
  const auto cell = [](const std::string& value) { return "<td>" + html_escape(value) + "</td>"; };
  const auto number_cell = [](const std::string& value) {
    return "<td class=\"num\">" + html_escape(value) + "</td>";
  };
  for (const auto& rule : rules) {
    const bool fired = field(rule, "triggered") == true;
    out += fired ? "<tr class=\"triggered\" style=\"background:#fde8e6\">" : "<tr>";
    out += "<td><strong>" + html_escape(text_field(rule, "rule")) + "</strong></td>";
    out += fired ? "<td style=\"color:#b3261e;font-weight:600\">yes</td>" : "<td>no</td>";
    out += number_cell(text_field(rule, "violations"));
    out += number_cell(text_field(rule, "datapoints"));
    out += cell(parameters_text(field(rule, "parameters")));
    out += cell(text_field(rule, "message"));
    out += cell(text_field(rule, "recommendation"));
    out += "</tr>\n";
  }
  return out + "</tbody>\n</table>\n";
}

}  // namespace

json profile_summary_json(const ProfileData& data, const std::vector<RuleResult>& rules,
                          const json& top_operators) {
  json rules_json = json::array();
  for (const auto& rule : rules) rules_json.push_back(to_json(rule));
  return {{"job", job_json(data, rules)},
          {"system_usage", system_usage_json(data)},
          {"utilisation", utilisation_json(data)},
          {"steps", steps_json(data, rules)},
          {"phases", phases_json(data)},
          {"phase_series", phase_series_json(data)},
          {"top_operators", top_operators.is_array() ? top_operators : json::array()},
          {"rules", rules_json}};
}

std::string render_profile_report(const json& summary) {
  std::string body;
  body += job_section(summary);
  body += system_usage_section(summary);
  body += utilisation_section(summary);
  body += steps_section(summary);
  body += phases_section(summary);
  body += operators_section(summary);
  body += rules_section(summary);
  const std::string name = text_field(field(summary, "job"), "name");
  return report::html_page(name.empty() ? "Profile" : "Profile of " + name, body);
}

}  // namespace kennel::profile

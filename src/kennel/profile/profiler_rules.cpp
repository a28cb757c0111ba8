// The profiler rules (profiler_rules.h documents each rule and parameter);
// the comments here say where this implementation had to choose.
#include "kennel/profile/profiler_rules.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "kennel/profile/detail/stats.h"

namespace kennel::profile {
namespace {

using nlohmann::json;

constexpr double kUnbounded = std::numeric_limits<double>::infinity();
// The largest count (samples, steps, windows) a parameter may hold: far past
// any real run, and small enough to convert to an integer safely.
constexpr double kMaxCount = 1e9;

// Steps skipped before a CPU-only "does the step wait for data" check in rules
// without a skip_steps of their own: the first steps fill the loader's queue.
constexpr int64_t kWarmUpSteps = 2;

// ---------------------------------------------------------------- parameters

struct ParameterSpec {
  const char* name;
  double fallback;
  double min;
  double max;
  bool whole;  // a count: samples, steps, windows
};

struct RuleSpec {
  const char* name;
  std::vector<ParameterSpec> parameters;
};

const std::vector<RuleSpec>& rule_specs() {
  static const std::vector<RuleSpec> kSpecs = {
      {"LowGPUUtilization",
       {{"threshold_p95", 70, 0, 100, false},
        {"threshold_p5", 10, 0, 100, false},
        {"window", 500, 1, kMaxCount, true},
        {"patience", 10, 0, kMaxCount, true},
        {"data_share", 25, 0, 100, false}}},
      {"CPUBottleneck",
       {{"threshold", 90, 0, 100, false},
        {"gpu_threshold", 10, 0, 100, false},
        {"cpu_threshold", 50, 0, 100, false},
        {"patience", 10, 0, kMaxCount, true},
        {"data_share", 50, 0, 100, false}}},
      {"IOBottleneck",
       {{"threshold", 50, 0, 100, false},
        {"gpu_threshold", 10, 0, 100, false},
        {"io_threshold", 50, 0, 100, false},
        {"patience", 10, 0, kMaxCount, true}}},
      {"DataloaderBottleneck",
       {{"threshold_share", 25, 0, 100, false},
        {"skip_steps", 2, 0, kMaxCount, true},
        {"min_threads_percent", 50, 0, kUnbounded, false},
        {"max_threads_percent", 100, 0, kUnbounded, false}}},
      {"GPUMemoryIncrease",
       {{"increase", 5, 0, 100, false},
        {"patience", 10, 0, kMaxCount, true},
        {"window", 10, 1, kMaxCount, true}}},
      {"BatchSize",
       {{"cpu_threshold_p95", 70, 0, 100, false},
        {"gpu_threshold_p95", 70, 0, 100, false},
        {"gpu_memory_threshold_p95", 70, 0, 100, false},
        {"patience", 10, 0, kMaxCount, true}}},
      {"StepOutlier",
       {{"stddev", 3, 0, kUnbounded, false},
        {"n_outliers", 10, 0, kMaxCount, true},
        {"skip_steps", 3, 0, kMaxCount, true}}},
      {"StragglerRank", {{"threshold", 20, 0, kUnbounded, false}, {"skip_steps", 2, 0, kMaxCount, true}}},
      {"MaxInitializationTime", {{"threshold", 20, 0, kUnbounded, false}}},
      {"OverallSystemUsage", {}},
      {"OverallFrameworkMetrics", {}},
  };
  return kSpecs;
}

const RuleSpec* find_rule(const std::string& name) {
  for (const auto& spec : rule_specs()) {
    if (name == spec.name) return &spec;
  }
  return nullptr;
}

// A number, or a string that spells one whole (spec files written by hand
// and --set values arrive as strings).
std::optional<double> parse_number(const json& value) {
  if (value.is_number()) return value.get<double>();
  if (!value.is_string()) return std::nullopt;
  const std::string text = value.get<std::string>();
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  const double parsed = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size()) return std::nullopt;
  return parsed;
}

std::string names_of(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : ", ") + name;
  return out.empty() ? "none" : out;
}

// The effective parameters of one rule; `given` may be null (no overrides).
// On an invalid override the status says why and `values` keeps the defaults.
struct ResolvedParameters {
  std::map<std::string, double> values;
  Status status;
};

ResolvedParameters resolve(const RuleSpec& spec, const json& given) {
  ResolvedParameters out;
  for (const auto& parameter : spec.parameters) out.values[parameter.name] = parameter.fallback;
  if (given.is_null()) return out;
  if (!given.is_object()) {
    out.status =
        invalid_argument("profiler rule '{}': parameters must be an object, got {}", spec.name,
                         given.dump(-1, ' ', false, json::error_handler_t::replace));
    return out;
  }
  std::vector<std::string> known;
  for (const auto& parameter : spec.parameters) known.emplace_back(parameter.name);
  std::map<std::string, double> values = out.values;
  for (const auto& [key, value] : given.items()) {
    const auto parameter =
        std::find_if(spec.parameters.begin(), spec.parameters.end(),
                     [&](const ParameterSpec& candidate) { return key == candidate.name; });
    if (parameter == spec.parameters.end()) {
      out.status = invalid_argument("profiler rule '{}' has no parameter '{}' (its parameters: {})",
                                    spec.name, key, names_of(known));
      return out;
    }
    const std::optional<double> number = parse_number(value);
    const std::string shown = value.dump(-1, ' ', false, json::error_handler_t::replace);
    if (!number || !std::isfinite(*number)) {
      out.status = invalid_argument("profiler rule '{}': parameter '{}' must be a number, got {}",
                                    spec.name, key, shown);
      return out;
    }
    if (parameter->whole && std::floor(*number) != *number) {
      out.status =
          invalid_argument("profiler rule '{}': parameter '{}' must be a whole number, got {}",
                           spec.name, key, shown);
      return out;
    }
    if (*number < parameter->min || *number > parameter->max) {
      out.status =
          std::isinf(parameter->max)
              ? invalid_argument("profiler rule '{}': parameter '{}' must be >= {}, got {}",
                                 spec.name, key, parameter->min, shown)
              : invalid_argument("profiler rule '{}': parameter '{}' must be in [{}, {}], got {}",
                                 spec.name, key, parameter->min, parameter->max, shown);
      return out;
    }
    values[key] = *number;
  }
  // Pairs whose order carries the meaning: reversed, one clause could never fire.
  const auto ordered = [&](const char* low, const char* high) {
    if (!values.count(low) || !values.count(high) || values[low] <= values[high]) return true;
    out.status = invalid_argument(
        "profiler rule '{}': parameter '{}' ({}) must not exceed parameter '{}' ({})", spec.name,
        low, values[low], high, values[high]);
    return false;
  };
  if (!ordered("threshold_p5", "threshold_p95") ||
      !ordered("min_threads_percent", "max_threads_percent")) {
    return out;
  }
  out.values = std::move(values);
  return out;
}

json parameters_json(const std::map<std::string, double>& values) {
  json out = json::object();
  for (const auto& [name, value] : values) {
    if (std::floor(value) == value && std::fabs(value) < 9e15) {
      out[name] = static_cast<int64_t>(value);
    } else {
      out[name] = value;
    }
  }
  return out;
}

// ---------------------------------------------------------------- formatting

std::string pct(double value) {
  return fmt::format("{:.1f}%", value);
}
std::string ms(double seconds) {
  return fmt::format("{:.1f} ms", seconds * 1000);
}
std::string num(double value) {
  return fmt::format("{:.4g}", value);
}
std::string gib(double bytes) {
  return fmt::format("{:.2f} GiB", bytes / (1024.0 * 1024 * 1024));
}

// ---------------------------------------------------------------- reading the data

struct Context {
  explicit Context(const ProfileData& profile) : data(profile) {}
  const ProfileData& data;
  bool has_gpu = false;  // some sample carries a GPU
  std::set<int> gpu_indices;
  double compute_cores = 1;  // what process CPU is normalised by
};

Context make_context(const ProfileData& data) {
  Context context(data);
  for (const auto& sample : data.system) {
    for (const auto& gpu : sample.gpus) context.gpu_indices.insert(gpu.index);
  }
  context.has_gpu = !context.gpu_indices.empty();
  // Compute threads, else every core the job may use; a job that recorded
  // neither is read against the widest per-core vector seen.
  if (data.compute_threads > 0) {
    context.compute_cores = static_cast<double>(data.compute_threads);
  } else if (data.cores > 0) {
    context.compute_cores = static_cast<double>(data.cores);
  } else {
    size_t widest = 0;
    for (const auto& sample : data.system) widest = std::max(widest, sample.cpu_per_core.size());
    context.compute_cores = static_cast<double>(std::max<size_t>(widest, 1));
  }
  return context;
}

std::vector<const SystemSample*> after_patience(const ProfileData& data, int64_t patience) {
  std::vector<const SystemSample*> kept;
  for (size_t i = static_cast<size_t>(std::max<int64_t>(patience, 0)); i < data.system.size();
       ++i) {
    kept.push_back(&data.system[i]);
  }
  return kept;
}


// The busiest core; the machine-wide value when per-core values are missing.
double busiest_core(const SystemSample& sample) {
  double busiest = kNaN;
  for (const double core : sample.cpu_per_core) {
    if (std::isfinite(core) && !(core <= busiest)) busiest = core;
  }
  return std::isfinite(busiest) ? busiest : sample.cpu;
}

double mean_gpu_utilization(const SystemSample& sample) {
  std::vector<double> values;
  for (const auto& gpu : sample.gpus) values.push_back(gpu.utilization);
  return detail::mean(values).value_or(kNaN);
}



std::string gpu_label(const ProfileData& data, int index) {
  for (const auto& sample : data.system) {
    if (const GpuSample* gpu = find_gpu(sample, index); gpu && !gpu->name.empty()) {
      return fmt::format("GPU {} ({})", index, gpu->name);
    }
  }
  return fmt::format("GPU {}", index);
}

bool usable_step(const StepTiming& step) {
  return std::isfinite(step.total) && step.total > 0;
}

// Share (%) of each step's time spent waiting for data, steps after `skip`.
std::vector<double> data_shares(const ProfileData& data, int64_t skip) {
  std::vector<double> shares;
  for (size_t i = static_cast<size_t>(std::max<int64_t>(skip, 0)); i < data.steps.size(); ++i) {
    const StepTiming& step = data.steps[i];
    if (!usable_step(step) || !std::isfinite(step.data)) continue;
    shares.push_back(std::clamp(step.data / step.total, 0.0, 1.0) * 100);
  }
  return shares;
}

// How busy the loader's decode threads were (%), from the decode time the
// loader reports between its samples; nullopt without two samples or threads.
std::optional<double> decode_busy_percent(const ProfileData& data) {
  if (data.loader.size() < 2 || data.decode_threads <= 0) return std::nullopt;
  const double span = data.loader.back().time - data.loader.front().time;
  if (!(span > 0) || !std::isfinite(span)) return std::nullopt;
  double decode = 0;
  // The first sample's decode time covers an interval before the span.
  for (size_t i = 1; i < data.loader.size(); ++i) {
    if (std::isfinite(data.loader[i].decode_seconds)) decode += data.loader[i].decode_seconds;
  }
  return decode / (span * static_cast<double>(data.decode_threads)) * 100;
}

std::optional<double> mean_queue_depth(const ProfileData& data) {
  std::vector<double> depths;
  for (const auto& sample : data.loader) depths.push_back(static_cast<double>(sample.queue_depth));
  return detail::mean(depths);
}

// Consecutive windows of `size` over `count` values; a short tail joins the
// window before it rather than being judged on a handful of samples.
std::vector<std::pair<size_t, size_t>> windows_of(size_t count, size_t size) {
  std::vector<std::pair<size_t, size_t>> windows;
  size = std::max<size_t>(size, 1);
  for (size_t begin = 0; begin < count; begin += size) {
    windows.emplace_back(begin, std::min(begin + size, count));
  }
  if (windows.size() > 1 && windows.back().second - windows.back().first < size / 2) {
    windows[windows.size() - 2].second = windows.back().second;
    windows.pop_back();
  }
  return windows;
}

// ---------------------------------------------------------------- the rules

class RuleEvaluation {
 public:
  RuleEvaluation(const RuleSpec& spec, const json& overrides) {
    const json& given = overrides.is_object() && overrides.contains(spec.name)
                            ? overrides.at(spec.name)
                            : null_json();
    ResolvedParameters resolved = resolve(spec, given);
    if (!resolved.status.ok()) resolved = resolve(spec, json());  // documented: defaults
    parameters_ = std::move(resolved.values);
    result_.rule = spec.name;
    result_.parameters = parameters_json(parameters_);
  }

  double value(const char* name) const { return parameters_.at(name); }
  int64_t count(const char* name) const { return static_cast<int64_t>(parameters_.at(name)); }
  RuleResult& result() { return result_; }

  RuleResult no_data(const std::string& what) {
    result_.triggered = false;
    result_.violations = 0;
    result_.datapoints = 0;
    result_.message = "no data: " + what;
    result_.recommendation.clear();
    return result_;
  }

 private:
  static const json& null_json() {
    static const json kNull;
    return kNull;
  }
  std::map<std::string, double> parameters_;
  RuleResult result_;
};

std::string no_system_samples() {
  return "no system samples were recorded (the system monitor did not run)";
}

std::string all_within_patience(size_t samples, int64_t patience) {
  return fmt::format("all {} system samples fall within the patience of {} samples", samples,
                     patience);
}

std::string no_gpu_prefix(const ProfileData& data) {
  return fmt::format("no GPU: no GPU samples were recorded{}",
                     data.device.empty() ? "" : fmt::format(" (device '{}')", data.device));
}

// Why a rule reading system samples after its patience has nothing to judge, or nullopt.
// A short run on a CPU-only machine still says first that there is no GPU: that is
// what a user reads the GPU rules for, and it stays true however long the run.
std::optional<std::string> missing_samples(const Context& context,
                                           const std::vector<const SystemSample*>& samples,
                                           int64_t patience) {
  const ProfileData& data = context.data;
  if (data.system.empty()) return no_system_samples();
  if (!samples.empty()) return std::nullopt;
  const std::string reason = all_within_patience(data.system.size(), patience);
  return context.has_gpu ? reason : fmt::format("{}, and {}", no_gpu_prefix(data), reason);
}

RuleResult low_gpu_utilization(const Context& context, RuleEvaluation rule) {
  const ProfileData& data = context.data;
  const double threshold_p95 = rule.value("threshold_p95");
  const double threshold_p5 = rule.value("threshold_p5");
  const int64_t patience = rule.count("patience");
  RuleResult& result = rule.result();
  const auto samples = after_patience(data, patience);
  if (auto missing = missing_samples(context, samples, patience)) return rule.no_data(*missing);

  if (!context.has_gpu) {
    // The CPU equivalent of an underused GPU: compute threads that idle
    // while the step waits for the loader. Advisory only, never triggered.
    std::vector<double> compute_use;
    for (const auto* sample : samples)
      compute_use.push_back(sample->process_cpu / context.compute_cores);
    const auto use_p95 = detail::percentile(compute_use, 95);
    const auto wait = detail::percentile(data_shares(data, kWarmUpSteps), 50);
    result.datapoints = static_cast<int64_t>(samples.size());
    result.message = no_gpu_prefix(data) + ". CPU equivalent: ";
    result.message +=
        use_p95 ? fmt::format("the {:g} compute threads are used {} at p95 (threshold_p95 {})",
                              context.compute_cores, pct(*use_p95), pct(threshold_p95))
                : "no process CPU values were recorded";
    result.message +=
        wait ? fmt::format("; the step waits for data {} of its time (median; data_share {})",
                           pct(*wait), pct(rule.value("data_share")))
             : "; no steps were recorded, so the data wait is unknown";
    if (use_p95 && wait && *use_p95<threshold_p95&& * wait> rule.value("data_share")) {
      result.message += ": the compute cores idle while the step waits for data";
      result.recommendation = fmt::format(
          "feed the compute threads faster: raise the 'threads' spec key or the loader workers "
          "({} decode threads for {} cores) so decoding keeps up; once it does, a larger "
          "'batch_size' gives each step more work",
          data.decode_threads, data.cores);
    }
    return result;
  }

  const size_t window = static_cast<size_t>(rule.count("window"));
  std::vector<std::string> findings, quiet;
  bool underused = false, fluctuating = false;
  for (const int index : context.gpu_indices) {
    std::vector<double> values;
    for (const auto* sample : samples) {
      if (const GpuSample* gpu = find_gpu(*sample, index); gpu && std::isfinite(gpu->utilization)) {
        values.push_back(gpu->utilization);
      }
    }
    if (values.empty()) continue;
    result.datapoints += static_cast<int64_t>(values.size());
    const auto windows = windows_of(values.size(), window);
    int low_windows = 0, bursty_windows = 0;
    double lowest_p95 = kUnbounded, bursty_p95 = 0, bursty_p5 = 0;
    for (const auto& [begin, end] : windows) {
      const std::vector<double> slice(values.begin() + static_cast<long>(begin),
                                      values.begin() + static_cast<long>(end));
      const double p95 = detail::percentile(slice, 95).value_or(kNaN);
      const double p5 = detail::percentile(slice, 5).value_or(kNaN);
      if (p95 < threshold_p95) {
        ++low_windows;
        lowest_p95 = std::min(lowest_p95, p95);
        result.violations +=
            std::count_if(slice.begin(), slice.end(), [&](double v) { return v < threshold_p95; });
      } else if (p95 > threshold_p95 && p5 < threshold_p5) {
        if (bursty_windows++ == 0) {
          bursty_p95 = p95;
          bursty_p5 = p5;
        }
        result.violations +=
            std::count_if(slice.begin(), slice.end(), [&](double v) { return v < threshold_p5; });
      }
    }
    const std::string label = gpu_label(data, index);
    if (low_windows > 0) {
      underused = true;
      findings.push_back(fmt::format(
          "{} is underused in {} of {} windows of up to {} samples (lowest p95 {} < threshold_p95 "
          "{})",
          label, low_windows, windows.size(), window, pct(lowest_p95), pct(threshold_p95)));
    }
    if (bursty_windows > 0) {
      fluctuating = true;
      findings.push_back(fmt::format(
          "{} fluctuates in {} of {} windows (p95 {} but p5 {} < threshold_p5 {})", label,
          bursty_windows, windows.size(), pct(bursty_p95), pct(bursty_p5), pct(threshold_p5)));
    }
    if (low_windows == 0 && bursty_windows == 0) {
      quiet.push_back(fmt::format("{}: utilisation p95 {}, p5 {} over {} samples", label,
                                  pct(detail::percentile(values, 95).value_or(kNaN)),
                                  pct(detail::percentile(values, 5).value_or(kNaN)),
                                  values.size()));
    }
  }
  if (result.datapoints == 0)
    return rule.no_data("every GPU utilisation value is missing or not finite");
  result.triggered = underused || fluctuating;
  std::string message;
  for (const auto& part : findings) message += (message.empty() ? "" : "; ") + part;
  for (const auto& part : quiet) message += (message.empty() ? "" : "; ") + part;
  if (!result.triggered)
    message += fmt::format(" (within threshold_p95 {} and threshold_p5 {})", pct(threshold_p95),
                           pct(threshold_p5));
  result.message = message;
  if (underused) {
    result.recommendation =
        "the GPU has headroom: raise 'batch_size' (scaling the learning rate with it), and check "
        "CPUBottleneck and DataloaderBottleneck, since a GPU starved of data is underused too";
  }
  if (fluctuating) {
    result.recommendation += std::string(result.recommendation.empty() ? "" : "; ") +
                             "the GPU works in bursts: it waits for data or for the host between "
                             "steps; raise the 'threads' spec key or the loader workers, and avoid "
                             "copying losses or metrics to the host every step";
  }
  return result;
}

std::string median_wait_text(std::optional<double> wait, double data_share) {
  return wait ? fmt::format("the step waited for data {} of its time (median; data_share {})",
                            pct(*wait), pct(data_share))
              : "no steps were recorded, so the data wait cannot be judged";
}

RuleResult cpu_bottleneck(const Context& context, RuleEvaluation rule) {
  const ProfileData& data = context.data;
  const double threshold = rule.value("threshold");
  const double gpu_threshold = rule.value("gpu_threshold");
  const double cpu_threshold = rule.value("cpu_threshold");
  const int64_t patience = rule.count("patience");
  RuleResult& result = rule.result();
  const auto samples = after_patience(data, patience);
  if (auto missing = missing_samples(context, samples, patience)) return rule.no_data(*missing);

  for (const auto* sample : samples) {
    const double core = busiest_core(*sample);
    if (!std::isfinite(core)) continue;
    if (context.has_gpu) {
      const double gpu = mean_gpu_utilization(*sample);
      if (!std::isfinite(gpu)) continue;
      ++result.datapoints;
      if (core > threshold && gpu < gpu_threshold) ++result.violations;
    } else {
      ++result.datapoints;
      if (core > threshold) ++result.violations;
    }
  }
  if (result.datapoints == 0) return rule.no_data("no sample has both CPU and GPU values");
  const double share =
      static_cast<double>(result.violations) / static_cast<double>(result.datapoints) * 100;

  if (context.has_gpu) {
    result.triggered = share > cpu_threshold;
    result.message = fmt::format(
        "in {} of {} samples ({}) a core was above {} while the GPU was below {} (cpu_threshold "
        "{})",
        result.violations, result.datapoints, pct(share), pct(threshold), pct(gpu_threshold),
        pct(cpu_threshold));
    if (result.triggered) {
      result.recommendation =
          "the CPU cannot keep the GPU busy: take work off the CPU (cache decoded and resized "
          "images with the feature cache, lighten the CPU augmentation, store images nearer the "
          "training size), give decoding more cores if some are free (the 'threads' spec key or "
          "the loader workers), and check that no other process saturates the CPU";
    }
    return result;
  }

  // CPU only: decode and compute share the cores, so busy cores are only a
  // bottleneck when the step is also left waiting for the decoded batches.
  const double data_share = rule.value("data_share");
  const auto wait = detail::percentile(data_shares(data, kWarmUpSteps), 50);
  result.triggered = share > cpu_threshold && wait && *wait > data_share;
  result.message = fmt::format(
      "{}; judged on the CPU equivalent: a core was above {} in {} of {} samples ({}; "
      "cpu_threshold {}) and {}",
      no_gpu_prefix(data), pct(threshold), result.violations, result.datapoints, pct(share),
      pct(cpu_threshold), median_wait_text(wait, data_share));
  if (const auto busy = decode_busy_percent(data)) {
    result.message += fmt::format("; the {} decode threads were busy {} of the time",
                                  data.decode_threads, pct(*busy));
  }
  if (result.triggered) {
    result.recommendation =
        "decoding saturates the cores and the step waits for it: make decoding cheaper (cache "
        "decoded and resized images with the feature cache, lighten the augmentation, store "
        "images nearer the training size) or move cores from compute to decoding (the 'threads' "
        "spec key or the loader workers)";
  }
  return result;
}

RuleResult io_bottleneck(const Context& context, RuleEvaluation rule) {
  const ProfileData& data = context.data;
  const double threshold = rule.value("threshold");
  const double gpu_threshold = rule.value("gpu_threshold");
  const double io_threshold = rule.value("io_threshold");
  const int64_t patience = rule.count("patience");
  RuleResult& result = rule.result();
  const auto samples = after_patience(data, patience);
  if (auto missing = missing_samples(context, samples, patience)) return rule.no_data(*missing);

  for (const auto* sample : samples) {
    if (!std::isfinite(sample->iowait)) continue;
    if (context.has_gpu) {
      const double gpu = mean_gpu_utilization(*sample);
      if (!std::isfinite(gpu)) continue;
      ++result.datapoints;
      if (sample->iowait > threshold && gpu < gpu_threshold) ++result.violations;
    } else {
      ++result.datapoints;
      if (sample->iowait > threshold) ++result.violations;
    }
  }
  if (result.datapoints == 0) return rule.no_data("no sample has a finite iowait value");
  const double share =
      static_cast<double>(result.violations) / static_cast<double>(result.datapoints) * 100;
  result.triggered = share > io_threshold;
  const auto iowait_p95 = [&] {
    std::vector<double> values;
    for (const auto* sample : samples) values.push_back(sample->iowait);
    return detail::percentile(values, 95).value_or(kNaN);
  }();
  result.message =
      context.has_gpu
          ? fmt::format(
                "in {} of {} samples ({}) iowait was above {} while the GPU was below {} "
                "(io_threshold {}; iowait p95 {})",
                result.violations, result.datapoints, pct(share), pct(threshold),
                pct(gpu_threshold), pct(io_threshold), pct(iowait_p95))
          : fmt::format(
                "{}; judged on iowait alone: above {} in {} of {} samples ({}; "
                "io_threshold {}; iowait p95 {})",
                no_gpu_prefix(data), pct(threshold), result.violations, result.datapoints,
                pct(share), pct(io_threshold), pct(iowait_p95));
  if (result.triggered) {
    result.recommendation =
        "the job waits for storage: put the dataset on a local SSD or leave enough free memory "
        "for the page cache to hold it, use the feature cache, pack many small files into fewer "
        "large ones, or raise the loader workers so reads overlap";
  }
  return result;
}

RuleResult dataloader_bottleneck(const Context& context, RuleEvaluation rule) {
  const ProfileData& data = context.data;
  const double threshold_share = rule.value("threshold_share");
  const int64_t skip_steps = rule.count("skip_steps");
  RuleResult& result = rule.result();
  if (data.steps.empty()) return rule.no_data("no training steps were recorded");
  if (static_cast<int64_t>(data.steps.size()) <= skip_steps) {
    return rule.no_data(fmt::format("all {} steps fall within the skip_steps warm-up of {}",
                                    data.steps.size(), skip_steps));
  }
  const std::vector<double> shares = data_shares(data, skip_steps);
  if (shares.empty()) return rule.no_data("no step after the warm-up has a positive duration");
  std::vector<double> waits;
  for (size_t i = static_cast<size_t>(skip_steps); i < data.steps.size(); ++i) {
    if (usable_step(data.steps[i])) waits.push_back(data.steps[i].data);
  }
  const double median = detail::percentile(shares, 50).value_or(0);
  result.datapoints = static_cast<int64_t>(shares.size());
  result.violations = std::count_if(shares.begin(), shares.end(),
                                    [&](double share) { return share > threshold_share; });
  result.triggered = median > threshold_share;

  const double cores = static_cast<double>(data.cores);
  const double threads = static_cast<double>(data.decode_threads);
  const bool known = data.cores > 0 && data.decode_threads > 0;
  const bool too_few = known && threads < cores * rule.value("min_threads_percent") / 100;
  const bool too_many = known && threads > cores * rule.value("max_threads_percent") / 100;
  const auto depth = mean_queue_depth(data);
  const bool starving = depth && *depth < 0.5;

  result.message = fmt::format(
      "the step waits for data {} of its time (median over {} steps; threshold_share {}): {} of "
      "data wait per step on average; {} decode threads for {} cores",
      pct(median), shares.size(), pct(threshold_share), ms(detail::mean(waits).value_or(0)),
      data.decode_threads, data.cores);
  if (depth) {
    result.message += fmt::format("; mean loader queue depth {:.2f}{}", *depth,
                                  starving ? " (the queue is empty: the trainer starves)" : "");
  }
  if (!result.triggered) {
    if (too_few || too_many) {
      result.message += fmt::format(
          "; note: the decode threads are outside {}-{} of the cores, which is harmless while the "
          "loader keeps up",
          pct(rule.value("min_threads_percent")), pct(rule.value("max_threads_percent")));
    }
    return result;
  }
  if (too_few) {
    result.recommendation = fmt::format(
        "raise the 'threads' spec key or the loader workers: {} decode threads use less than {} "
        "of the {} cores",
        data.decode_threads, pct(rule.value("min_threads_percent")), data.cores);
  } else if (too_many) {
    result.recommendation = fmt::format(
        "use fewer decode threads: {} threads for {} cores oversubscribe the CPU and slow both "
        "decoding and compute (lower the 'threads' spec key or the loader workers)",
        data.decode_threads, data.cores);
  } else {
    result.recommendation =
        "decoding is the limit at a sensible thread count: cache decoded and resized images "
        "(the feature cache), store images nearer the training size, or lighten the CPU "
        "augmentation";
  }
  if (starving) {
    result.recommendation +=
        "; the loader queue is empty on average, so a deeper prefetch will not help until "
        "decoding is faster";
  }
  return result;
}

RuleResult gpu_memory_increase(const Context& context, RuleEvaluation rule) {
  const ProfileData& data = context.data;
  const double increase = rule.value("increase");
  const int64_t patience = rule.count("patience");
  const size_t window = static_cast<size_t>(rule.count("window"));
  RuleResult& result = rule.result();
  if (data.system.empty()) return rule.no_data(no_system_samples());
  if (!context.has_gpu) {
    result.message = no_gpu_prefix(data) + ", so GPU memory growth cannot be judged";
    return result;
  }
  const auto samples = after_patience(data, patience);
  std::vector<std::string> parts;
  for (const int index : context.gpu_indices) {
    std::vector<double> used;
    for (const auto* sample : samples) {
      if (const GpuSample* gpu = find_gpu(*sample, index)) {
        const double percent = gpu_memory_percent(*gpu);
        if (std::isfinite(percent)) used.push_back(percent);
      }
    }
    // Complete windows only: a short tail would make a noisy last average.
    std::vector<double> averages;
    for (size_t begin = 0; begin + window <= used.size(); begin += window) {
      averages.push_back(
          *detail::mean(std::vector<double>(used.begin() + static_cast<long>(begin),
                                            used.begin() + static_cast<long>(begin + window))));
    }
    if (averages.size() < 2) continue;
    int64_t rises = 0;
    size_t largest = 1;
    for (size_t i = 1; i < averages.size(); ++i) {
      ++result.datapoints;
      if (averages[i] - averages[i - 1] > increase) ++rises;
      if (averages[i] - averages[i - 1] > averages[largest] - averages[largest - 1]) largest = i;
    }
    result.violations += rises;
    const std::string label = gpu_label(data, index);
    if (rises > 0) {
      parts.push_back(fmt::format(
          "{}: the mean memory use of a {}-sample window rose by more than {} points {} times in "
          "{} windows (largest {} -> {}); {} -> {} over the run",
          label, window, num(increase), rises, averages.size(), pct(averages[largest - 1]),
          pct(averages[largest]), pct(averages.front()), pct(averages.back())));
    } else {
      parts.push_back(
          fmt::format("{}: mean memory use {} -> {} over {} windows of {} samples; no "
                      "window rose by more than {} points",
                      label, pct(averages.front()), pct(averages.back()), averages.size(), window,
                      num(increase)));
    }
  }
  if (result.datapoints == 0) {
    return rule.no_data(fmt::format(
        "fewer than two complete windows of {} GPU memory samples after the patience of {} "
        "({} samples recorded)",
        window, patience, data.system.size()));
  }
  result.triggered = result.violations > 0;
  for (const auto& part : parts) result.message += (result.message.empty() ? "" : "; ") + part;
  if (result.triggered) {
    result.recommendation =
        "GPU memory keeps growing: look for tensors kept across steps (a loss kept with its "
        "graph, metrics accumulated on the GPU, caches that never evict); growth that stops after "
        "the first steps is the allocator warming up, so raise 'patience' to skip it";
  }
  return result;
}

RuleResult batch_size(const Context& context, RuleEvaluation rule) {
  const ProfileData& data = context.data;
  const double cpu_threshold = rule.value("cpu_threshold_p95");
  const double gpu_threshold = rule.value("gpu_threshold_p95");
  const double memory_threshold = rule.value("gpu_memory_threshold_p95");
  const int64_t patience = rule.count("patience");
  RuleResult& result = rule.result();
  const auto samples = after_patience(data, patience);
  if (auto missing = missing_samples(context, samples, patience)) return rule.no_data(*missing);

  std::vector<double> cpu, gpu, memory;
  for (const auto* sample : samples) {
    double sample_gpu = kNaN, sample_memory = kNaN;
    double sample_cpu = sample->cpu;
    if (context.has_gpu) {
      // The busiest GPU: a larger batch helps only when every GPU is light.
      for (const auto& device : sample->gpus) {
        if (std::isfinite(device.utilization) && !(device.utilization <= sample_gpu)) {
          sample_gpu = device.utilization;
        }
        const double percent = gpu_memory_percent(device);
        if (std::isfinite(percent) && !(percent <= sample_memory)) sample_memory = percent;
      }
    } else {
      sample_cpu = sample->process_cpu / context.compute_cores;
      const double total = sample->memory_used + sample->memory_available;
      if (total > 0) sample_memory = sample->memory_used / total * 100;
    }
    cpu.push_back(sample_cpu);
    gpu.push_back(sample_gpu);
    memory.push_back(sample_memory);
    if (!std::isfinite(sample_cpu) || !std::isfinite(sample_memory)) continue;
    if (context.has_gpu && !std::isfinite(sample_gpu)) continue;
    ++result.datapoints;
    if (sample_cpu < cpu_threshold && sample_memory < memory_threshold &&
        (!context.has_gpu || sample_gpu < gpu_threshold)) {
      ++result.violations;
    }
  }
  const auto cpu_p95 = detail::percentile(cpu, 95);
  const auto gpu_p95 = detail::percentile(gpu, 95);
  const auto memory_p95 = detail::percentile(memory, 95);
  const auto shown = [](std::optional<double> value) { return value ? pct(*value) : "unknown"; };

  if (context.has_gpu) {
    if (!cpu_p95 || !gpu_p95 || !memory_p95) {
      return rule.no_data("CPU, GPU utilisation or GPU memory values are missing");
    }
    result.triggered =
        *cpu_p95 < cpu_threshold && *gpu_p95 < gpu_threshold && *memory_p95 < memory_threshold;
    result.message = fmt::format(
        "p95 over {} samples: CPU {} (cpu_threshold_p95 {}), GPU utilisation {} "
        "(gpu_threshold_p95 {}), GPU memory {} (gpu_memory_threshold_p95 {})",
        samples.size(), shown(cpu_p95), pct(cpu_threshold), shown(gpu_p95), pct(gpu_threshold),
        shown(memory_p95), pct(memory_threshold));
  } else {
    if (!cpu_p95 || !memory_p95)
      return rule.no_data("process CPU or system memory values are missing");
    result.triggered = *cpu_p95 < cpu_threshold && *memory_p95 < memory_threshold;
    result.message = fmt::format(
        "{}; judged on process CPU per compute thread and system memory instead: p95 over {} "
        "samples: process CPU {} of {:g} threads (cpu_threshold_p95 {}), system memory {} "
        "(gpu_memory_threshold_p95 {})",
        no_gpu_prefix(data), samples.size(), shown(cpu_p95), context.compute_cores,
        pct(cpu_threshold), shown(memory_p95), pct(memory_threshold));
  }
  if (result.triggered) {
    result.recommendation =
        "the machine is lightly used: raise 'batch_size' (scaling the learning rate with it) so "
        "each step does more work; if DataloaderBottleneck fired, fix the loader first, since a "
        "starved step looks idle too";
  }
  return result;
}

using Phase = StepPhase;

std::string phase_advice(const std::string& phase) {
  if (phase == "data") {
    return "the slow steps wait for data: look for loader stalls (cache misses, slow storage, the "
           "queue refilling at epoch starts) and raise the loader workers or warm the cache";
  }
  if (phase == "callbacks") {
    return "the slow steps run callbacks: checkpoints, evaluation or logging every N steps; make "
           "them less frequent or move the work off the step";
  }
  if (phase == "sync") {
    return "the slow steps wait for the other ranks: a slower rank (see StragglerRank) or a slow link between "
           "hosts; check the network and each host's load";
  }
  if (phase == "copy") {
    return "the slow steps copy to the device longer: check for contention on the host-to-device "
           "link or a batch that is not in pinned memory";
  }
  return fmt::format(
      "the slow steps spend longer in {}: look for inputs of varying size, memory allocation "
      "growing, or other processes competing for the CPU or GPU",
      phase);
}

RuleResult step_outlier(const Context& context, RuleEvaluation rule) {
  const ProfileData& data = context.data;
  const double k = rule.value("stddev");
  const int64_t n_outliers = rule.count("n_outliers");
  const int64_t skip_steps = rule.count("skip_steps");
  RuleResult& result = rule.result();
  if (data.steps.empty()) return rule.no_data("no training steps were recorded");
  std::vector<const StepTiming*> steps;
  for (size_t i = static_cast<size_t>(skip_steps); i < data.steps.size(); ++i) {
    if (std::isfinite(data.steps[i].total) && data.steps[i].total >= 0)
      steps.push_back(&data.steps[i]);
  }
  if (steps.empty()) {
    return rule.no_data(fmt::format(
        "no step with a valid duration after the skip_steps warm-up of {} ({} steps recorded)",
        skip_steps, data.steps.size()));
  }
  std::vector<double> totals;
  for (const auto* step : steps) totals.push_back(step->total);
  const double average = *detail::mean(totals);
  const double sigma = *detail::standard_deviation(totals);
  const double threshold = average + k * sigma;
  std::vector<const StepTiming*> outliers;
  for (const auto* step : steps) {
    if (step->total > threshold) outliers.push_back(step);
  }
  std::sort(outliers.begin(), outliers.end(),
            [](const StepTiming* a, const StepTiming* b) { return a->total > b->total; });
  result.datapoints = static_cast<int64_t>(steps.size());
  result.violations = static_cast<int64_t>(outliers.size());
  result.triggered = result.violations > n_outliers;
  result.message = fmt::format(
      "{} of {} steps took longer than {} (mean {} + {}·σ, σ {}; n_outliers {})", outliers.size(),
      steps.size(), ms(threshold), ms(average), num(k), ms(sigma), n_outliers);
  if (!outliers.empty()) {
    result.message += "; slowest:";
    std::map<std::string, int> biggest_counts;
    for (size_t i = 0; i < outliers.size(); ++i) {
      const Phase& phase = biggest_phase(*outliers[i]);
      ++biggest_counts[phase.name];
      if (i < 3) {
        result.message +=
            fmt::format("{} step {} {} ({} {})", i == 0 ? "" : ",", outliers[i]->step,
                        ms(outliers[i]->total), phase.name, ms(outliers[i]->*phase.field));
      }
    }
    if (result.triggered) {
      const auto dominant =
          std::max_element(biggest_counts.begin(), biggest_counts.end(),
                           [](const auto& a, const auto& b) { return a.second < b.second; });
      result.recommendation =
          fmt::format("{} of the {} outliers are dominated by '{}': {}", dominant->second,
                      outliers.size(), dominant->first, phase_advice(dominant->first));
    }
  }
  return result;
}

// Ranks wait for each other at every allreduce, so step totals are alike; a
// straggler shows in its busy time (data, forward, backward), which the others
// spend waiting. Judged on medians over steps, so a few slow steps do not count.
RuleResult straggler_rank(const Context& context, RuleEvaluation rule) {
  const ProfileData& data = context.data;
  const double threshold = rule.value("threshold");
  const int64_t skip_steps = rule.count("skip_steps");
  RuleResult& result = rule.result();
  std::vector<std::vector<double>> busy;  // [rank][step]
  for (size_t i = static_cast<size_t>(skip_steps); i < data.steps.size(); ++i) {
    const auto& ranks = data.steps[i].rank_busy;
    if (ranks.size() < 2) continue;
    if (busy.size() < ranks.size()) busy.resize(ranks.size());
    for (size_t rank = 0; rank < ranks.size(); ++rank) {
      if (std::isfinite(ranks[rank]) && ranks[rank] >= 0) busy[rank].push_back(ranks[rank]);
    }
  }
  if (busy.empty()) return rule.no_data("one process: no ranks to compare (the job was not data-parallel)");
  std::vector<double> medians;
  for (const auto& steps : busy) medians.push_back(steps.empty() ? 0 : *detail::percentile(steps, 50));
  const double typical = *detail::percentile(medians, 50);
  const auto slowest = static_cast<size_t>(std::max_element(medians.begin(), medians.end()) - medians.begin());
  const double excess = typical > 0 ? (medians[slowest] / typical - 1) * 100 : 0;
  result.datapoints = static_cast<int64_t>(busy.front().size());
  result.violations = 0;
  for (const double step_busy : busy[slowest]) {
    if (typical > 0 && (step_busy / typical - 1) * 100 > threshold) ++result.violations;
  }
  result.triggered = excess > threshold;
  result.message = fmt::format("{} ranks; median busy time per step {} (rank {}, the slowest: {}, {}% above)",
                               busy.size(), ms(typical), slowest, ms(medians[slowest]), num(excess));
  if (result.triggered) {
    result.recommendation = fmt::format(
        "rank {} holds the others back: every rank waits for it at each gradient allreduce. Check that host's "
        "load (other processes, fewer cores, CPU frequency), its disk for the data, or start fewer ranks there",
        slowest);
  }
  return result;
}

RuleResult max_initialization_time(const Context& context, RuleEvaluation rule) {
  const ProfileData& data = context.data;
  const double threshold = rule.value("threshold");
  RuleResult& result = rule.result();
  if (!(data.job_start > 0) || !std::isfinite(data.job_start)) {
    return rule.no_data("the job's start time was not recorded");
  }
  const std::string recommendation =
      "initialisation is slow: check the dataset scan and validation (a large folder or network "
      "storage), the feature cache being built (it is reused by the next run), and model weights "
      "loading";
  if (data.first_step_start > 0 && std::isfinite(data.first_step_start)) {
    const double seconds = data.first_step_start - data.job_start;
    result.datapoints = 1;
    result.triggered = seconds > threshold * 60;
    result.violations = result.triggered ? 1 : 0;
    result.message = fmt::format(
        "the first step started {:.2f} min ({:.1f} s) after the job started "
        "(threshold {} min)",
        seconds / 60, seconds, num(threshold));
  } else if (data.job_end > data.job_start && std::isfinite(data.job_end)) {
    const double seconds = data.job_end - data.job_start;
    result.datapoints = 1;
    result.triggered = seconds > threshold * 60;
    result.violations = result.triggered ? 1 : 0;
    result.message =
        fmt::format("no training step ran in the job's {:.2f} min ({:.1f} s; threshold {} min)",
                    seconds / 60, seconds, num(threshold));
  } else {
    return rule.no_data("no step ran and the job's end was not recorded");
  }
  if (result.triggered) result.recommendation = recommendation;
  return result;
}

std::string p50_p95(const std::vector<double>& values, const auto& format) {
  const auto p50 = detail::percentile(values, 50);
  const auto p95 = detail::percentile(values, 95);
  if (!p50 || !p95) return "unknown";
  return fmt::format("p50 {} p95 {}", format(*p50), format(*p95));
}

RuleResult overall_system_usage(const Context& context, RuleEvaluation rule) {
  const ProfileData& data = context.data;
  RuleResult& result = rule.result();
  if (data.system.empty()) return rule.no_data(no_system_samples());
  std::vector<double> cpu, process, memory, memory_percent;
  for (const auto& sample : data.system) {
    cpu.push_back(sample.cpu);
    process.push_back(sample.process_cpu);
    memory.push_back(sample.memory_used);
    const double total = sample.memory_used + sample.memory_available;
    memory_percent.push_back(total > 0 ? sample.memory_used / total * 100 : kNaN);
  }
  result.datapoints = static_cast<int64_t>(data.system.size());
  result.message = fmt::format(
      "over {} samples: CPU {}; process CPU {} (% of one core); memory used {} ({} of the "
      "machine)",
      data.system.size(), p50_p95(cpu, pct), p50_p95(process, pct), p50_p95(memory, gib),
      p50_p95(memory_percent, pct));
  for (const int index : context.gpu_indices) {
    std::vector<double> utilization, used;
    for (const auto& sample : data.system) {
      if (const GpuSample* gpu = find_gpu(sample, index)) {
        utilization.push_back(gpu->utilization);
        used.push_back(gpu_memory_percent(*gpu));
      }
    }
    result.message += fmt::format("; {} utilisation {}, memory {}", gpu_label(data, index),
                                  p50_p95(utilization, pct), p50_p95(used, pct));
  }
  if (!context.has_gpu) result.message += "; no GPU";
  return result;
}

RuleResult overall_framework_metrics(const Context& context, RuleEvaluation rule) {
  const ProfileData& data = context.data;
  RuleResult& result = rule.result();
  const bool timed = data.job_start > 0 && std::isfinite(data.job_start);
  if (data.steps.empty() && !timed) {
    return rule.no_data("no training steps and no job times were recorded");
  }
  std::vector<std::string> parts;
  if (timed && data.first_step_start > 0) {
    parts.push_back(fmt::format("initialisation {:.1f} s", data.first_step_start - data.job_start));
  }
  if (data.first_step_start > 0 && data.loop_end > 0) {
    parts.push_back(fmt::format("training loop {:.1f} s", data.loop_end - data.first_step_start));
  }
  if (data.loop_end > 0 && data.job_end > 0) {
    parts.push_back(fmt::format("finalisation {:.1f} s", data.job_end - data.loop_end));
  }
  double total = 0;
  std::array<double, kStepPhases.size()> sums{};
  for (const auto& step : data.steps) {
    if (!usable_step(step)) continue;
    ++result.datapoints;
    total += step.total;
    for (size_t i = 0; i < kStepPhases.size(); ++i) {
      const double value = step.*kStepPhases[i].field;
      if (std::isfinite(value) && value > 0) sums[i] += value;
    }
  }
  if (total > 0) {
    std::string shares;
    double phases = 0;
    for (size_t i = 0; i < kStepPhases.size(); ++i) {
      shares += fmt::format("{}{} {}", shares.empty() ? "" : ", ", kStepPhases[i].name,
                            pct(sums[i] / total * 100));
      phases += sums[i];
    }
    shares += fmt::format(", other {}", pct(std::max(0.0, total - phases) / total * 100));
    parts.push_back(
        fmt::format("{} steps, {:.1f} s in steps: {}", result.datapoints, total, shares));
  } else {
    parts.push_back("no step with a positive duration");
  }
  for (const auto& part : parts) result.message += (result.message.empty() ? "" : "; ") + part;
  return result;
}

}  // namespace

std::vector<std::string> profiler_rule_names() {
  std::vector<std::string> names;
  for (const auto& spec : rule_specs()) names.emplace_back(spec.name);
  return names;
}

json profiler_rule_defaults() {
  json out = json::object();
  for (const auto& spec : rule_specs())
    out[spec.name] = parameters_json(resolve(spec, json()).values);
  return out;
}

Status validate_profiler_rule_overrides(const json& overrides) {
  if (overrides.is_null()) return Status::ok_status();
  if (!overrides.is_object()) {
    return invalid_argument(
        "profiler rule overrides must map rule names to parameter objects, got {}",
        overrides.dump(-1, ' ', false, json::error_handler_t::replace));
  }
  for (const auto& [name, given] : overrides.items()) {
    const RuleSpec* spec = find_rule(name);
    if (!spec) {
      return invalid_argument("unknown profiler rule '{}' (the rules: {})", name,
                              names_of(profiler_rule_names()));
    }
    KENNEL_RETURN_IF_ERROR(resolve(*spec, given).status);
  }
  return Status::ok_status();
}

std::vector<RuleResult> evaluate_profiler_rules(const ProfileData& data, const json& overrides) {
  const Context context = make_context(data);
  using Evaluate = RuleResult (*)(const Context&, RuleEvaluation);
  static const std::map<std::string, Evaluate> kEvaluators = {
      {"LowGPUUtilization", low_gpu_utilization},
      {"CPUBottleneck", cpu_bottleneck},
      {"IOBottleneck", io_bottleneck},
      {"DataloaderBottleneck", dataloader_bottleneck},
      {"GPUMemoryIncrease", gpu_memory_increase},
      {"BatchSize", batch_size},
      {"StepOutlier", step_outlier},
      {"StragglerRank", straggler_rank},
      {"MaxInitializationTime", max_initialization_time},
      {"OverallSystemUsage", overall_system_usage},
      {"OverallFrameworkMetrics", overall_framework_metrics},
  };
  std::vector<RuleResult> results;
  for (const auto& spec : rule_specs()) {
    results.push_back(kEvaluators.at(spec.name)(context, RuleEvaluation(spec, overrides)));
  }
  return results;
}

}  // namespace kennel::profile

#include "kennel/profile/profiler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "kennel/profile/chrome_trace.h"
#include "kennel/profile/profile_report.h"
#include "kennel/profile/profiler_rules.h"
#include "kennel/profile/system_monitor.h"
#include "kennel/util/fs.h"

namespace kennel::profile {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Trace threads: the training loop, then one track per thread LibTorch ran operators on.
constexpr int64_t kLoopTid = 1;
constexpr int64_t kFirstOperatorTid = 100;

Status write_jsonl(const fs::path& path, const std::vector<json>& lines) {
  std::string text;
  for (const auto& line : lines) text += line.dump() + "\n";
  return write_file_atomic(path, text);
}

ChromeTrace build_trace(const ProfileData& data, const std::vector<OperatorEvent>& operators) {
  ChromeTrace trace;
  const double origin = data.job_start;
  auto us = [origin](double unix_seconds) { return (unix_seconds - origin) * 1e6; };
  trace.set_thread_name(kLoopTid, "training loop", 0);
  if (data.first_step_start > origin) {
    trace.add_span({"initialisation", "job", kLoopTid, 0, us(data.first_step_start), nullptr, 3});
  }
  for (const StepTiming& step : data.steps) {
    const double end = step.start + step.total;
    trace.add_span({fmt::format("step {}", step.step), "step", kLoopTid, us(step.start), step.total * 1e6,
                    json{{"epoch", step.epoch}, {"batch_size", step.batch_size}}, 2});
    // Phases in the order they run; callbacks (before forward, after backward, and the previous
    // step's end) are drawn as one block after backward.
    double at = step.start;
    const std::pair<const char*, double> phases[] = {{"data wait", step.data},   {"host-to-device", step.copy},
                                                     {"forward", step.forward},  {"backward", step.backward},
                                                     {"rank sync", step.sync},   {"callbacks", step.callbacks},
                                                     {"optimizer", step.optimizer}};
    for (const auto& [name, seconds] : phases) {
      const double length = std::min(seconds, end - at);
      if (length <= 0) continue;
      trace.add_span({name, "phase", kLoopTid, us(at), length * 1e6, nullptr, 1});
      at += length;
    }
  }
  if (data.loop_end > 0 && data.job_end > data.loop_end) {
    trace.add_span({"finalisation", "job", kLoopTid, us(data.loop_end), (data.job_end - data.loop_end) * 1e6,
                    nullptr, 3});
  }
  std::map<uint64_t, int64_t> operator_tids;
  for (const OperatorEvent& event : operators) {
    auto [found, inserted] =
        operator_tids.emplace(event.thread, kFirstOperatorTid + static_cast<int64_t>(operator_tids.size()));
    if (inserted) {
      trace.set_thread_name(found->second, fmt::format("operators (thread {})", operator_tids.size()),
                            static_cast<int>(found->second));
    }
    trace.add_span({event.name, "operator", found->second, us(event.start), event.duration * 1e6, nullptr, 0});
  }
  for (const SystemSample& sample : data.system) {
    const double compute = std::max<double>(1, static_cast<double>(data.compute_threads));
    trace.add_counter({"CPU %", us(sample.time), {{"all cores", sample.cpu}, {"iowait", sample.iowait}}});
    trace.add_counter({"process CPU % of its threads", us(sample.time), {{"process", sample.process_cpu / compute}}});
    trace.add_counter({"memory MiB", us(sample.time),
                       {{"process RSS", sample.process_rss / 1048576.0}, {"system used", sample.memory_used / 1048576.0}}});
    for (const GpuSample& gpu : sample.gpus) {
      trace.add_counter({fmt::format("GPU {} %", gpu.index), us(sample.time),
                         {{"utilization", gpu.utilization},
                          {"memory", gpu.memory_total > 0 ? 100 * gpu.memory_used / gpu.memory_total : 0}}});
    }
  }
  for (const LoaderSample& sample : data.loader) {
    trace.add_counter({"loader ready batches", us(sample.time), {{"ready", static_cast<double>(sample.queue_depth)}}});
  }
  return trace;
}

}  // namespace

Result<ProfilerSpec> parse_profiler_spec(const json& object, const std::string& origin) {
  if (!object.is_object()) return invalid_argument("{}: a profiler spec must be a mapping", origin);
  ProfilerSpec spec;
  auto number = [&](const json& value, const std::string& field, double lo, double hi) -> Result<double> {
    double parsed = std::nan("");
    if (value.is_number()) {
      parsed = value.get<double>();
    } else if (value.is_string()) {
      char* end = nullptr;
      const std::string text = value.get<std::string>();
      parsed = std::strtod(text.c_str(), &end);
      if (text.empty() || end != text.c_str() + text.size()) parsed = std::nan("");
    }
    if (!(parsed >= lo && parsed <= hi)) {
      return invalid_argument("{}: profiler field '{}' must be a number in [{}, {}], got {}", origin, field, lo, hi,
                              value.dump());
    }
    return parsed;
  };
  auto boolean = [&](const json& value, const std::string& field) -> Result<bool> {
    if (value.is_boolean()) return value.get<bool>();
    if (value.is_string() && (value == "true" || value == "false")) return value == "true";
    return invalid_argument("{}: profiler field '{}' must be true or false, got {}", origin, field, value.dump());
  };
  for (const auto& [key, value] : object.items()) {
    if (key == "interval_ms") {
      auto ms = number(value, key, 100, 60000);
      if (!ms.ok()) return ms.status();
      spec.interval_seconds = *ms / 1000;
    } else if (key == "system" || key == "framework") {
      auto on = boolean(value, key);
      if (!on.ok()) return on.status();
      (key == "system" ? spec.system : spec.framework) = *on;
    } else if (key == "operators") {
      if (value.is_boolean() && !value.get<bool>()) {
        spec.operators_num_steps = 0;
        continue;
      }
      if (!value.is_object()) {
        return invalid_argument("{}: profiler field 'operators' must be {{start_step, num_steps}} or false", origin);
      }
      for (const auto& [field, setting] : value.items()) {
        if (field != "start_step" && field != "num_steps") {
          return invalid_argument("{}: unknown field 'operators.{}' (use start_step, num_steps)", origin, field);
        }
        auto n = number(setting, "operators." + field, 0, 1e9);
        if (!n.ok()) return n.status();
        (field == "start_step" ? spec.operators_start_step : spec.operators_num_steps) = static_cast<int64_t>(*n);
      }
    } else if (key == "trace_max_mb") {
      auto mb = number(value, key, 1, 4096);
      if (!mb.ok()) return mb.status();
      spec.trace_max_megabytes = static_cast<int64_t>(*mb);
    } else if (key == "rules") {
      Status valid = validate_profiler_rule_overrides(value);
      if (!valid.ok()) return valid.with_context(origin);
      spec.rules = value;
    } else {
      return invalid_argument(
          "{}: unknown profiler field '{}' (use interval_ms, system, framework, operators, trace_max_mb, rules)",
          origin, key);
    }
  }
  return spec;
}

Result<std::unique_ptr<ProfilerSession>> ProfilerSession::start(const ProfilerSpec& spec, const fs::path& profile_dir,
                                                                ProfiledJob job,
                                                                ProfilerHook::LoaderProbe loader_probe) {
  KENNEL_RETURN_IF_ERROR(kennel::create_directories(profile_dir));
  std::unique_ptr<ProfilerSession> session(new ProfilerSession());
  session->spec_ = spec;
  session->dir_ = profile_dir;
  session->job_ = std::move(job);
  if (spec.system) {
    std::error_code ignored;
    fs::remove(profile_dir / "system.jsonl", ignored);  // a resumed job profiles its new run
    auto monitor = SystemMonitor::start(profile_dir / "system.jsonl", spec.interval_seconds);
    if (!monitor.ok()) return monitor.status();
    session->monitor_ = std::move(*monitor);
  }
  ProfilerHookConfig hook;
  hook.framework = spec.framework;
  hook.operators_start_step = spec.operators_start_step;
  hook.operators_num_steps = spec.operators_num_steps;
  session->hook_ = std::make_shared<ProfilerHook>(hook, std::move(loader_probe));
  return session;
}

ProfilerSession::~ProfilerSession() {
  if (!finished_) {
    auto ignored = finish();
    (void)ignored;
  }
}

void ProfilerSession::mark_loop_end() {
  if (loop_end_ == 0) loop_end_ = unix_now();  // the first call wins: a failure path may call it again
}

Result<json> ProfilerSession::finish() {
  if (finished_) return artifact_;
  finished_ = true;
  ProfileData data;
  data.job = job_.name;
  data.device = job_.device;
  data.cores = job_.cores;
  data.decode_threads = job_.decode_threads;
  data.compute_threads = job_.compute_threads;
  data.job_start = job_.start;
  data.steps = hook_->steps();
  data.loader = hook_->loader();
  data.first_step_start = data.steps.empty() ? 0 : data.steps.front().start;
  data.loop_end = loop_end_ > 0 ? loop_end_ : unix_now();
  if (monitor_) {
    Status stopped = monitor_->stop();
    if (!stopped.ok()) spdlog::warn("profiler: {}", stopped.message());
    data.system = monitor_->samples();
  }
  data.job_end = unix_now();

  const std::vector<RuleResult> rules = evaluate_profiler_rules(data, spec_.rules);
  const std::vector<OperatorStat> operators = operator_stats(hook_->operator_events());
  json summary = profile_summary_json(data, rules, to_json(operators));
  if (!hook_->operator_note().empty()) summary["operator_note"] = hook_->operator_note();

  std::vector<json> step_lines;
  for (const auto& step : data.steps) step_lines.push_back(to_json(step));
  KENNEL_RETURN_IF_ERROR(write_jsonl(dir_ / "steps.jsonl", step_lines));
  TraceWriteOptions trace_options;
  trace_options.max_bytes = spec_.trace_max_megabytes << 20;
  auto trace = build_trace(data, hook_->operator_events()).write(dir_ / "trace.json", trace_options);
  if (!trace.ok()) return trace.status();
  if (!trace->warning.empty()) {
    spdlog::warn("profiler: {} (raise trace_max_mb in the profiler spec to keep them)", trace->warning);
    summary["trace_warning"] = trace->warning;
  }
  summary["trace"] = trace->path.string();
  KENNEL_RETURN_IF_ERROR(write_file_atomic(dir_ / "summary.json", summary.dump(2) + "\n"));
  KENNEL_RETURN_IF_ERROR(write_file_atomic(dir_ / "report.html", render_profile_report(summary)));

  json triggered = json::object();
  for (const auto& rule : rules) triggered[rule.rule] = rule.triggered;
  artifact_ = {{"dir", dir_.string()},
               {"report", (dir_ / "report.html").string()},
               {"trace", trace->path.string()},
               {"rules", triggered}};
  return artifact_;
}

}  // namespace kennel::profile

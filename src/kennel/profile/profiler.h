// The profiler of a training job: its spec (`--profiler default|off|SPEC`),
// and the session the job runs it through — a system monitor thread
// (system_monitor.h), the trainer hook (profiler_hook.h), and at the end the
// rules (profiler_rules.h), the Chrome trace, the summary and the HTML report
// under the job's profile/ folder:
//   system.jsonl   one SystemSample per interval (written as they come)
//   steps.jsonl    one StepTiming per training step
//   trace.json     Chrome trace (trace.json.gz when large): init / steps /
//                  phases / finalisation spans, operator spans of the window,
//                  system and loader counter tracks
//   summary.json   what the report shows (profile_report.h), read by `kennel profile`
//   report.html    self-contained report
// Thread-safety: a session is started, hooked and finished on the job's thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "kennel/profile/profiler_hook.h"
#include "kennel/util/status.h"

namespace kennel::profile {

class SystemMonitor;

struct ProfilerSpec {
  double interval_seconds = 0.5;   // system monitor, 0.1 .. 60
  bool system = true;              // the system monitor
  bool framework = true;           // step phases and loader samples
  int64_t operators_start_step = 5;  // operator window: a few steps after warm-up
  int64_t operators_num_steps = 3;   // 0: no operator trace
  int64_t trace_max_megabytes = 256;
  nlohmann::json rules = nlohmann::json::object();  // per-rule parameter overrides
};

// A spec file's object: interval_ms, system, framework, operators {start_step,
// num_steps}, trace_max_mb, rules {Rule: {param: value}}. Errors name the field.
Result<ProfilerSpec> parse_profiler_spec(const nlohmann::json& object, const std::string& origin);

struct ProfiledJob {
  std::string name;
  std::string device;
  int64_t cores = 0, decode_threads = 0, compute_threads = 0;
  double start = 0;  // Unix seconds when the job began (before the model was built)
};

class ProfilerSession {
 public:
  static Result<std::unique_ptr<ProfilerSession>> start(const ProfilerSpec& spec,
                                                        const std::filesystem::path& profile_dir, ProfiledJob job,
                                                        ProfilerHook::LoaderProbe loader_probe);
  ~ProfilerSession();

  std::shared_ptr<ProfilerHook> hook() const { return hook_; }
  void mark_loop_end();  // the training loop returned
  // Stops the monitor and writes everything; returns the registry artifact
  // {dir, report, trace, rules: {name: triggered}}. Idempotent.
  Result<nlohmann::json> finish();

 private:
  ProfilerSession() = default;

  ProfilerSpec spec_;
  std::filesystem::path dir_;
  ProfiledJob job_;
  std::unique_ptr<SystemMonitor> monitor_;
  std::shared_ptr<ProfilerHook> hook_;
  double loop_end_ = 0;
  bool finished_ = false;
  nlohmann::json artifact_;
};

}  // namespace kennel::profile

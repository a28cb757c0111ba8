// The profiler's data model: what the system monitor samples, what the step
// timer records, and what the profiler rules and the report read. Plain
// values (no torch, no I/O): the monitor (system_monitor.h) and the trainer
// hook (profiler_hook.h) fill them; rules (profiler_rules.h) and the report
// (profile_report.h) consume them. Thread-safety: values, no shared state.
//
// Units: times are seconds; `time`/`start` fields are Unix-epoch seconds
// (system_clock) so system samples and steps share one clock; utilisations are
// percentages 0..100 (process CPU may exceed 100: it is summed over cores).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kennel::profile {

// A missing reading in samples and reports.
inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
inline constexpr double kMiB = 1024.0 * 1024;
inline constexpr double kGiB = kMiB * 1024;

struct GpuSample {
  int index = 0;
  std::string name;
  double utilization = 0;  // % of the interval a kernel ran (NVML)
  double memory_used = 0;  // bytes
  double memory_total = 0;  // bytes
};

// One sample of the whole machine and this process, over the interval that
// ends at `time`. Rates are per second over that interval.
struct SystemSample {
  double time = 0;
  double interval = 0;                // seconds since the previous sample
  std::vector<double> cpu_per_core;   // % busy (user+nice+system+irq+softirq+steal) per core
  double cpu = 0;                     // % busy of all cores together
  double iowait = 0;                  // % of all cores' time waiting for I/O
  double process_cpu = 0;             // % of one core used by this process (200 = two cores busy)
  double process_rss = 0;             // bytes
  double memory_used = 0;             // bytes (MemTotal - MemAvailable)
  double memory_available = 0;        // bytes
  double disk_read = 0, disk_write = 0;  // bytes/s, all block devices
  double net_receive = 0, net_transmit = 0;  // bytes/s, all interfaces but lo
  std::vector<GpuSample> gpus;        // empty: no GPU (or no NVML)
};

// The GPU of `sample` with NVML index `index`, or nullptr.
inline const GpuSample* find_gpu(const SystemSample& sample, int index) {
  for (const auto& gpu : sample.gpus) {
    if (gpu.index == index) return &gpu;
  }
  return nullptr;
}
// Memory used as % of the GPU's total; NaN when the total is unknown.
inline double gpu_memory_percent(const GpuSample& gpu) {
  if (!(gpu.memory_total > 0) || !std::isfinite(gpu.memory_total)) return kNaN;
  return gpu.memory_used / gpu.memory_total * 100;
}

// One training step, from the trainer's StepPhases.
struct StepTiming {
  int64_t step = 0;   // 0-based global train step
  int64_t epoch = 0;
  int64_t batch_size = 0;
  double start = 0;   // Unix seconds
  double total = 0;   // the whole step
  double data = 0, copy = 0, forward = 0, backward = 0, optimizer = 0, callbacks = 0;
  double sync = 0;  // data parallelism: waiting for the other ranks (gradients not averaged during backward)
  // Data parallelism: each rank's busy time this step (before it waits for the others), by rank.
  std::vector<double> rank_busy;
};

// A StepTiming's phases in the order they run, with the names the summary,
// the rules and the report use.
struct StepPhase {
  const char* name;
  double StepTiming::*field;
};
inline constexpr std::array<StepPhase, 7> kStepPhases = {{{"data", &StepTiming::data},
                                                          {"copy", &StepTiming::copy},
                                                          {"forward", &StepTiming::forward},
                                                          {"backward", &StepTiming::backward},
                                                          {"sync", &StepTiming::sync},
                                                          {"optimizer", &StepTiming::optimizer},
                                                          {"callbacks", &StepTiming::callbacks}}};

// The phase that took the longest in `step` (non-finite values ignored; the first phase when all are).
const StepPhase& biggest_phase(const StepTiming& step);

// The data loader's view over the run (for DataloaderBottleneck).
struct LoaderSample {
  double time = 0;
  int64_t queue_depth = 0;      // decoded batches waiting for the trainer
  double decode_seconds = 0;    // decode+transform time spent since the previous sample, all workers
};

// Everything the rules and the report need about one profiled job.
struct ProfileData {
  std::string job;
  std::string device;           // "cpu", "cuda:0"
  int64_t cores = 0;            // logical CPUs the job may use
  int64_t decode_threads = 0;   // loader workers
  int64_t compute_threads = 0;  // intra-op threads
  double job_start = 0;         // process start of the job (Unix seconds)
  double first_step_start = 0;  // 0: no step ran
  double loop_end = 0;          // the training loop ended
  double job_end = 0;           // everything written
  std::vector<SystemSample> system;
  std::vector<StepTiming> steps;
  std::vector<LoaderSample> loader;
};

nlohmann::json to_json(const GpuSample& sample);
nlohmann::json to_json(const SystemSample& sample);
nlohmann::json to_json(const StepTiming& step);
nlohmann::json to_json(const LoaderSample& sample);
// Inverse of to_json (missing fields keep their defaults; wrong types: nullopt).
std::optional<SystemSample> system_sample_from_json(const nlohmann::json& json);
std::optional<StepTiming> step_timing_from_json(const nlohmann::json& json);
std::optional<LoaderSample> loader_sample_from_json(const nlohmann::json& json);

// A profiler rule's verdict, in the cloud profiler's report terms.
struct RuleResult {
  std::string rule;
  bool triggered = false;
  int64_t violations = 0;   // datapoints that broke the rule
  int64_t datapoints = 0;   // datapoints the rule looked at
  nlohmann::json parameters = nlohmann::json::object();
  std::string message;         // what it saw, with numbers ("the GPU ..." / "no GPU: ...")
  std::string recommendation;  // what a person can do about it (empty when nothing to do)
};

nlohmann::json to_json(const RuleResult& result);

}  // namespace kennel::profile

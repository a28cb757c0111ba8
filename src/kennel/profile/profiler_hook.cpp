#include "kennel/profile/profiler_hook.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>

#include <spdlog/spdlog.h>
#include <torch/csrc/autograd/profiler_kineto.h>

namespace kennel::profile {

namespace profiler = torch::autograd::profiler;
namespace impl = torch::profiler::impl;

namespace {

double seconds_of(std::chrono::time_point<std::chrono::system_clock> t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

double steady_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

nlohmann::json to_json(const std::vector<OperatorStat>& stats) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& stat : stats) {
    out.push_back({{"name", stat.name}, {"calls", stat.calls}, {"self_ms", stat.self_ms}, {"total_ms", stat.total_ms}});
  }
  return out;
}

std::vector<OperatorStat> operator_stats(const std::vector<OperatorEvent>& events, size_t top) {
  std::vector<const OperatorEvent*> sorted;
  for (const auto& event : events) sorted.push_back(&event);
  std::sort(sorted.begin(), sorted.end(), [](const OperatorEvent* a, const OperatorEvent* b) {
    if (a->thread != b->thread) return a->thread < b->thread;
    if (a->start != b->start) return a->start < b->start;
    return a->duration > b->duration;
  });
  std::map<std::string, OperatorStat> by_name;
  struct Open {
    const OperatorEvent* event;
    double children = 0;
  };
  std::vector<Open> stack;
  auto close = [&](const Open& open) {
    OperatorStat& stat = by_name[open.event->name];
    stat.name = open.event->name;
    ++stat.calls;
    stat.total_ms += open.event->duration * 1e3;
    stat.self_ms += std::max(0.0, open.event->duration - open.children) * 1e3;
  };
  for (const OperatorEvent* event : sorted) {
    while (!stack.empty() && (stack.back().event->thread != event->thread ||
                              stack.back().event->start + stack.back().event->duration <= event->start)) {
      close(stack.back());
      stack.pop_back();
    }
    if (!stack.empty()) stack.back().children += event->duration;
    stack.push_back({event});
  }
  while (!stack.empty()) {
    close(stack.back());
    stack.pop_back();
  }
  std::vector<OperatorStat> out;
  for (auto& [name, stat] : by_name) out.push_back(std::move(stat));
  std::sort(out.begin(), out.end(), [](const OperatorStat& a, const OperatorStat& b) { return a.self_ms > b.self_ms; });
  if (out.size() > top) out.resize(top);
  return out;
}

ProfilerHook::ProfilerHook(ProfilerHookConfig config, LoaderProbe loader_probe)
    : config_(config), loader_probe_(std::move(loader_probe)) {
  unix_minus_steady_ = seconds_of(std::chrono::system_clock::now()) - steady_now();
}

ProfilerHook::~ProfilerHook() {
  if (recording_operators_) stop_operators();
}

void ProfilerHook::on_before_forward(train::Trainer& trainer, const train::TrainBatch&) {
  const int64_t step = trainer.state().step;
  if (config_.operators_num_steps > 0 && step == config_.operators_start_step && !recording_operators_) {
    start_operators(step);
  }
}

void ProfilerHook::on_step_end(train::Trainer& trainer, const train::StepResult& result) {
  if (config_.framework) {
    const train::StepPhases& phases = result.phases;
    StepTiming timing;
    timing.step = result.step - 1;  // StepResult counts from 1
    timing.epoch = result.epoch;
    timing.batch_size = result.batch_size;
    timing.start = phases.start + unix_minus_steady_;
    timing.total = result.seconds;
    timing.data = phases.data;
    timing.copy = phases.copy;
    timing.forward = phases.forward;
    timing.backward = phases.backward;
    timing.optimizer = phases.optimizer;
    timing.callbacks = phases.callbacks;
    timing.sync = phases.sync;
    timing.rank_busy = result.replica_busy_seconds;
    steps_.push_back(timing);
    if (loader_probe_) {
      LoaderSample sample = loader_probe_();
      const double total = sample.decode_seconds;
      sample.decode_seconds = std::max(0.0, total - last_decode_seconds_);
      last_decode_seconds_ = total;
      loader_.push_back(sample);
    }
  }
  if (recording_operators_ && trainer.state().step >= config_.operators_start_step + config_.operators_num_steps) {
    stop_operators();
  }
}

void ProfilerHook::on_train_end(train::Trainer&, const train::TrainOutcome&) {
  if (recording_operators_) stop_operators();
  if (config_.operators_num_steps > 0 && operator_events_.empty() && operator_note_.empty()) {
    operator_note_ = fmt::format("training ended before step {} where the operator window starts",
                                 config_.operators_start_step);
  }
}

void ProfilerHook::start_operators(int64_t step) {
  try {
    const impl::ProfilerConfig config(impl::ProfilerState::KINETO, /*report_input_shapes=*/false,
                                      /*profile_memory=*/false, /*with_stack=*/false, /*with_flops=*/false,
                                      /*with_modules=*/false);
    const std::set<impl::ActivityType> activities = {impl::ActivityType::CPU};
    profiler::prepareProfiler(config, activities);
    profiler::enableProfiler(config, activities);
    recording_operators_ = true;
    spdlog::debug("profiler: recording operators from step {}", step);
  } catch (const std::exception& error) {
    operator_note_ = fmt::format("LibTorch's profiler could not start: {}", error.what());
    spdlog::warn("profiler: {}", operator_note_);
  }
}

void ProfilerHook::stop_operators() {
  recording_operators_ = false;
  try {
    const auto result = profiler::disableProfiler();
    if (!result) return;
    for (const auto& event : result->events()) {
      if (event.deviceType() != c10::DeviceType::CPU) continue;
      operator_events_.push_back({event.name(), event.startThreadId(), static_cast<double>(event.startUs()) * 1e-6,
                                  static_cast<double>(event.durationUs()) * 1e-6});
    }
    if (operator_events_.empty()) operator_note_ = "LibTorch's profiler recorded no operator events";
  } catch (const std::exception& error) {
    operator_note_ = fmt::format("LibTorch's profiler failed: {}", error.what());
    spdlog::warn("profiler: {}", operator_note_);
  }
}

}  // namespace kennel::profile

#include "kennel/profile/profile_record.h"

#include <cmath>

namespace kennel::profile {

using nlohmann::json;

namespace {

// Reads `key` into `out` when present; false when present with the wrong type.
template <typename T>
bool read(const json& object, const char* key, T& out) {
  const auto found = object.find(key);
  if (found == object.end() || found->is_null()) return true;
  try {
    out = found->get<T>();
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

}  // namespace

const StepPhase& biggest_phase(const StepTiming& step) {
  const StepPhase* biggest = &kStepPhases[0];
  for (const StepPhase& phase : kStepPhases) {
    const double value = step.*phase.field;
    if (std::isfinite(value) && !(value <= step.*biggest->field)) biggest = &phase;
  }
  return *biggest;
}

json to_json(const GpuSample& sample) {
  return {{"index", sample.index},
          {"name", sample.name},
          {"utilization", sample.utilization},
          {"memory_used", sample.memory_used},
          {"memory_total", sample.memory_total}};
}

json to_json(const SystemSample& sample) {
  json gpus = json::array();
  for (const auto& gpu : sample.gpus) gpus.push_back(to_json(gpu));
  return {{"time", sample.time},
          {"interval", sample.interval},
          {"cpu_per_core", sample.cpu_per_core},
          {"cpu", sample.cpu},
          {"iowait", sample.iowait},
          {"process_cpu", sample.process_cpu},
          {"process_rss", sample.process_rss},
          {"memory_used", sample.memory_used},
          {"memory_available", sample.memory_available},
          {"disk_read", sample.disk_read},
          {"disk_write", sample.disk_write},
          {"net_receive", sample.net_receive},
          {"net_transmit", sample.net_transmit},
          {"gpus", gpus}};
}

json to_json(const StepTiming& step) {
  json out = {{"step", step.step},       {"epoch", step.epoch},         {"batch_size", step.batch_size},
              {"start", step.start},     {"total", step.total},         {"data", step.data},
              {"copy", step.copy},       {"forward", step.forward},     {"backward", step.backward},
              {"optimizer", step.optimizer}, {"callbacks", step.callbacks}};
  if (step.sync > 0 || !step.rank_busy.empty()) {
    out["sync"] = step.sync;
    out["rank_busy"] = step.rank_busy;
  }
  return out;
}

json to_json(const LoaderSample& sample) {
  return {{"time", sample.time}, {"queue_depth", sample.queue_depth}, {"decode_seconds", sample.decode_seconds}};
}

json to_json(const RuleResult& result) {
  return {{"rule", result.rule},
          {"triggered", result.triggered},
          {"violations", result.violations},
          {"datapoints", result.datapoints},
          {"parameters", result.parameters},
          {"message", result.message},
          {"recommendation", result.recommendation}};
}

std::optional<SystemSample> system_sample_from_json(const json& object) {
  if (!object.is_object()) return std::nullopt;
  SystemSample sample;
  bool ok = read(object, "time", sample.time) && read(object, "interval", sample.interval) &&
            read(object, "cpu_per_core", sample.cpu_per_core) && read(object, "cpu", sample.cpu) &&
            read(object, "iowait", sample.iowait) && read(object, "process_cpu", sample.process_cpu) &&
            read(object, "process_rss", sample.process_rss) && read(object, "memory_used", sample.memory_used) &&
            read(object, "memory_available", sample.memory_available) &&
            read(object, "disk_read", sample.disk_read) && read(object, "disk_write", sample.disk_write) &&
            read(object, "net_receive", sample.net_receive) && read(object, "net_transmit", sample.net_transmit);
  if (!ok) return std::nullopt;
  if (const auto gpus = object.find("gpus"); gpus != object.end() && gpus->is_array()) {
    for (const auto& item : *gpus) {
      GpuSample gpu;
      if (!item.is_object() || !read(item, "index", gpu.index) || !read(item, "name", gpu.name) ||
          !read(item, "utilization", gpu.utilization) || !read(item, "memory_used", gpu.memory_used) ||
          !read(item, "memory_total", gpu.memory_total)) {
        return std::nullopt;
      }
      sample.gpus.push_back(std::move(gpu));
    }
  }
  return sample;
}

std::optional<StepTiming> step_timing_from_json(const json& object) {
  if (!object.is_object()) return std::nullopt;
  StepTiming step;
  bool ok = read(object, "step", step.step) && read(object, "epoch", step.epoch) &&
            read(object, "batch_size", step.batch_size) && read(object, "start", step.start) &&
            read(object, "total", step.total) && read(object, "data", step.data) && read(object, "copy", step.copy) &&
            read(object, "forward", step.forward) && read(object, "backward", step.backward) &&
            read(object, "optimizer", step.optimizer) && read(object, "callbacks", step.callbacks) &&
            read(object, "sync", step.sync) && read(object, "rank_busy", step.rank_busy);
  if (!ok) return std::nullopt;
  return step;
}

std::optional<LoaderSample> loader_sample_from_json(const json& object) {
  if (!object.is_object()) return std::nullopt;
  LoaderSample sample;
  if (!read(object, "time", sample.time) || !read(object, "queue_depth", sample.queue_depth) ||
      !read(object, "decode_seconds", sample.decode_seconds)) {
    return std::nullopt;
  }
  return sample;
}

}  // namespace kennel::profile

#include "kennel/util/loop_instruction_set.h"

#include <array>
#include <atomic>

#include "kennel/util/cpu_features.h"

namespace kennel {

namespace {

struct SetEntry {
  InstructionSet set;
  const char* name;
  bool (*runs_here)(const CpuFeatures&);
};

constexpr std::array<SetEntry, 3> kSets = {{
    {InstructionSet::kAvx512, "AVX-512", [](const CpuFeatures& cpu) { return cpu.avx512_core; }},
    {InstructionSet::kAvx2, "AVX2", [](const CpuFeatures& cpu) { return cpu.avx2 && cpu.fma; }},
    {InstructionSet::kBaseline, "baseline x86-64", [](const CpuFeatures&) { return true; }},
}};

std::atomic<InstructionSet>& chosen_set() {
  static std::atomic<InstructionSet> chosen = [] {
    for (const SetEntry& entry : kSets) {
      if (entry.runs_here(host_cpu_features())) return entry.set;
    }
    return InstructionSet::kBaseline;
  }();
  return chosen;
}

}  // namespace

InstructionSet loop_instruction_set() {
  return chosen_set().load(std::memory_order_relaxed);
}

const char* instruction_set_name(InstructionSet set) {
  return kSets[static_cast<size_t>(set)].name;
}

bool choose_loop_instruction_set(const std::string& name) {
  for (const SetEntry& entry : kSets) {
    if (entry.name == name && entry.runs_here(host_cpu_features())) {
      chosen_set().store(entry.set);
      return true;
    }
  }
  return false;
}

}  // namespace kennel

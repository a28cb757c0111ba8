#include "kennel/util/blas_kernels.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>

#include <fmt/format.h>

namespace kennel {

namespace {

constexpr const char* kFallbackVariable = "KENNEL_OPENBLAS_FALLBACK";

// OpenBLAS's x86-64 cores without AVX2: what it falls back to on a model it does not know.
constexpr std::array<std::string_view, 15> kPreAvx2Cores = {
    "prescott", "core2",   "penryn",    "dunnington", "nehalem",    "atom",       "opteron",  "opteron(sse3)",
    "barcelona", "nano",   "bobcat",    "sandybridge", "bulldozer", "piledriver", "steamroller"};

std::string lower(std::string_view text) {
  std::string result(text);
  std::transform(result.begin(), result.end(), result.begin(), [](unsigned char c) { return std::tolower(c); });
  return result;
}

}  // namespace

std::string fitting_openblas_core(const CpuFeatures& cpu) {
  if (cpu.avx512_core && cpu.avx512_bf16) return "Cooperlake";
  if (cpu.avx512_core) return "SkylakeX";
  if (cpu.avx2 && cpu.fma) return "Haswell";
  return "";
}

std::string openblas_core_override(std::string_view loaded, const CpuFeatures& cpu) {
  const std::string name = lower(loaded);
  const bool pre_avx2 = std::find(kPreAvx2Cores.begin(), kPreAvx2Cores.end(), name) != kPreAvx2Cores.end();
  return pre_avx2 ? fitting_openblas_core(cpu) : "";
}

std::string loaded_openblas_core() {
  using CoreName = char* (*)();
  auto core_name = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (core_name == nullptr) return "";
  const char* name = core_name();
  return name == nullptr ? "" : name;
}

void refit_openblas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;
  const std::string loaded = loaded_openblas_core();
  const std::string wanted = openblas_core_override(loaded, host_cpu_features());
  if (wanted.empty()) return;
  setenv("OPENBLAS_CORETYPE", wanted.c_str(), 1);
  setenv(kFallbackVariable, loaded.c_str(), 1);
  execv("/proc/self/exe", argv);
  // Not re-executed: this process keeps the kernels that loaded, and says so in its report.
  unsetenv("OPENBLAS_CORETYPE");
}

std::string describe_blas_kernels() {
  const std::string loaded = loaded_openblas_core();
  if (loaded.empty()) return "not OpenBLAS";
  const char* requested = std::getenv("OPENBLAS_CORETYPE");
  const char* fallback = std::getenv(kFallbackVariable);
  if (requested != nullptr && fallback != nullptr) {
    return fmt::format("OpenBLAS {} kernels (set by kennel: OpenBLAS had chosen {} for this CPU)", loaded, fallback);
  }
  if (requested != nullptr) return fmt::format("OpenBLAS {} kernels (OPENBLAS_CORETYPE set by the caller)", loaded);
  const std::string wanted = openblas_core_override(loaded, host_cpu_features());
  if (!wanted.empty()) {
    return fmt::format("OpenBLAS {} kernels (slow on this CPU: {} would fit; kennel could not re-execute with it)",
                       loaded, wanted);
  }
  return fmt::format("OpenBLAS {} kernels", loaded);
}

}  // namespace kennel

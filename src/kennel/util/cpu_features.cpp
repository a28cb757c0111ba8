#include "kennel/util/cpu_features.h"

#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include <fmt/format.h>

namespace kennel {

namespace {
std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// "key<tabs>: value" -> value, when the line's key is `key`.
bool field_value(std::string_view line, std::string_view key, std::string_view& value) {
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos || trim(line.substr(0, colon)) != key) return false;
  value = trim(line.substr(colon + 1));
  return true;
}
}  // namespace

std::string CpuFeatures::describe() const {
  std::vector<std::string> units;
  if (amx_bf16) units.push_back("amx_bf16");
  if (amx_int8) units.push_back("amx_int8");
  if (avx512_bf16) units.push_back("avx512_bf16");
  if (avx512_vnni) units.push_back("avx512_vnni");
  if (avx_vnni && !avx512_vnni) units.push_back("avx_vnni");
  if (avx512f && units.empty()) units.push_back("avx512f");
  if (avx2 && units.empty()) units.push_back("avx2");
  std::string text = model_name;
  if (!readable) return text + " (no CPU flags readable)";
  text += " (" + (units.empty() ? std::string("no AVX2/AVX-512") : fmt::format("{}", fmt::join(units, ", ")));
  if (!amx_bf16) text += "; no AMX";
  return text + ")";
}

CpuFeatures parse_cpuinfo(std::string_view text) {
  CpuFeatures features;
  features.model_name = "unknown CPU";
  bool have_model = false;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    std::string_view value;
    if (!have_model && field_value(line, "model name", value)) {
      features.model_name = std::string(value);
      have_model = true;
    } else if (!features.readable && field_value(line, "flags", value)) {
      std::set<std::string> flags;
      std::istringstream words{std::string(value)};
      for (std::string word; words >> word;) flags.insert(word);
      features.readable = true;
      features.avx2 = flags.count("avx2") > 0;
      features.fma = flags.count("fma") > 0;
      features.avx512f = flags.count("avx512f") > 0;
      features.avx512_core = features.avx512f && flags.count("avx512bw") > 0 && flags.count("avx512vl") > 0 &&
                             flags.count("avx512dq") > 0 && flags.count("avx512cd") > 0;
      features.avx512_bf16 = flags.count("avx512_bf16") > 0;
      features.avx512_vnni = flags.count("avx512_vnni") > 0;
      features.avx_vnni = flags.count("avx_vnni") > 0;
      features.amx_bf16 = flags.count("amx_bf16") > 0;
      features.amx_int8 = flags.count("amx_int8") > 0;
    }
    if (have_model && features.readable) break;
  }
  return features;
}

const CpuFeatures& host_cpu_features() {
  static const CpuFeatures features = [] {
    std::ifstream in("/proc/cpuinfo");
    std::stringstream text;
    text << in.rdbuf();
    return parse_cpuinfo(text.str());
  }();
  return features;
}

PrecisionChoice choose_precision(const std::string& requested, const CpuFeatures& cpu) {
  if (requested != "auto") return {requested, requested == "fp32" || requested == "bf16" || requested == "fp16"
                                                   ? fmt::format("{} as asked", requested)
                                                   : std::string(),
                                    ""};
  if (cpu.native_bf16()) {
    return {"bf16", fmt::format("auto: {} has native bf16 ({}); fp32 master weights, bf16 compute",
                                cpu.model_name, cpu.amx_bf16 ? "AMX" : "avx512_bf16"),
            ""};
  }
  return {"fp32", fmt::format("auto: {} has no native bf16 (neither AMX nor avx512_bf16{}); fp32", cpu.model_name,
                              cpu.readable ? "" : ", no CPU flags readable"),
          ""};
}

PrecisionCheck check_stored_precision(const std::string& stored, bool was_auto, const CpuFeatures& cpu) {
  if (stored != "bf16" || cpu.native_bf16()) return {stored, ""};
  if (was_auto) {
    return {"fp32", fmt::format("bf16 was chosen automatically on a CPU with native bf16, but this CPU ({}) has none: "
                                "running fp32 instead (the weights are fp32; only the compute changes)",
                                cpu.describe())};
  }
  return {"bf16", fmt::format("bf16 was asked for explicitly, but this CPU ({}) has no native bf16: running bf16 "
                              "emulated, which is slower than fp32 (pass --precision fp32 or auto to avoid it)",
                              cpu.describe())};
}

PrecisionChoice choose_inference_precision(const std::string& requested, const std::string& model_precision,
                                           bool model_was_auto, const CpuFeatures& cpu) {
  if (requested != "auto") return choose_precision(requested, cpu);
  if (model_precision == "fp32" && !model_was_auto) {
    return {"fp32", "auto: the model was trained at fp32 as asked (pass --precision bf16 to override)", ""};
  }
  if (model_precision == "bf16" && !cpu.native_bf16()) {
    const PrecisionCheck check = check_stored_precision("bf16", /*was_auto=*/true, cpu);
    return {check.precision, "auto: this CPU has no native bf16", "the model was trained at bf16; " + check.warning};
  }
  return choose_precision("auto", cpu);
}

}  // namespace kennel

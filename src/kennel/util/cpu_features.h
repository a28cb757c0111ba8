// What this CPU can compute natively, read from /proc/cpuinfo at run time,
// and the precision `--precision auto` picks from it. Machines differ from
// one run to the next (Intel with AMX, AMD EPYC with avx512_bf16 and no AMX,
// older CPUs with neither), so nothing here is decided at build time.
// Owns: the flag parsing, the host's cached features, the auto rule and the
// check that a stored bf16 choice still suits this host. Thread-safe (the
// host's features are read once, under a static initialiser).
#pragma once

#include <string>
#include <string_view>

namespace kennel {

struct CpuFeatures {
  std::string model_name;  // "AMD EPYC 9654 96-Core Processor"; "unknown CPU" when unreadable
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512_core = false;  // avx512f with bw, vl, dq and cd: Skylake-SP's set, what AVX-512 kernels assume
  bool avx512_bf16 = false;  // bf16 dot products (Cooper Lake, Zen 4 and later)
  bool avx512_vnni = false;  // int8 dot products
  bool avx_vnni = false;     // the same on 256-bit registers (Alder Lake, Zen 5)
  bool amx_bf16 = false;     // Intel AMX tiles (Sapphire Rapids and later)
  bool amx_int8 = false;
  bool readable = false;     // whether a flags line was found at all

  // bf16 matmuls and convolutions run on dedicated units (AMX or avx512_bf16).
  bool native_bf16() const { return amx_bf16 || avx512_bf16; }
  // int8 dot products run in one instruction (VNNI or AMX); oneDNN's int8 kernels need 7-bit
  // activations without them (vpmaddubsw saturates).
  bool native_int8() const { return amx_int8 || avx512_vnni || avx_vnni; }
  // "AMD EPYC ... (avx512_bf16, avx512_vnni; no AMX)": for logs and benchmarks.
  std::string describe() const;
};

// Parses the text of /proc/cpuinfo (the first processor's "model name" and "flags").
CpuFeatures parse_cpuinfo(std::string_view text);
// This host's features (read once; a missing /proc/cpuinfo gives readable = false).
const CpuFeatures& host_cpu_features();

// The outcome of resolving a precision request: what runs, and why (one line for the log).
struct PrecisionChoice {
  std::string precision;  // fp32 | bf16 | fp16
  std::string reason;
  std::string warning;    // non-empty when the caller should warn (what was stored cannot run as it was)
};

// fp32 and bf16 (and fp16 on CUDA) are taken as asked; "auto" becomes bf16
// where `cpu` has native bf16 and fp32 elsewhere. Any other value is returned
// unchanged with an empty reason (the caller validates and names its field).
PrecisionChoice choose_precision(const std::string& requested, const CpuFeatures& cpu);

// A precision stored when a job or model was made (`stored`), checked
// against this host: bf16 on a CPU without native bf16 is emulated and slow.
// When the stored value came from "auto" (`was_auto`), the answer is fp32 and
// a warning saying so; an explicit bf16 is kept, with a warning that it is slow.
// `warning` is empty when the stored precision suits the host.
struct PrecisionCheck {
  std::string precision;
  std::string warning;
};
PrecisionCheck check_stored_precision(const std::string& stored, bool was_auto, const CpuFeatures& cpu);

// Inference of a saved model (serve, transform, evaluate): fp32/bf16 as asked. "auto" keeps
// an fp32 that training was explicitly asked for (`model_precision` "fp32", `model_was_auto`
// false: numbers that someone pinned); otherwise it follows this CPU, and says so in
// `warning` when the model was trained at bf16 and this CPU has no native bf16 (fp32 then).
PrecisionChoice choose_inference_precision(const std::string& requested, const std::string& model_precision,
                                           bool model_was_auto, const CpuFeatures& cpu);

}  // namespace kennel

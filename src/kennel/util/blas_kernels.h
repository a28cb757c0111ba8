// OpenBLAS's kernels, fitted to this CPU. OpenBLAS picks its kernels once,
// when it loads, from the CPU's family and model; a build older than the CPU
// does not know the model and falls back to Prescott's SSE3 kernels (Debian's
// 0.3.21 on a 2-core Xeon of model 207 with AVX-512 and AMX: fp32 GEMM at
// 31 GFLOP/s, 196 with its SkylakeX kernels). LibTorch's fp32 matrix products
// run on it (linear layers, the frozen backbone's head, convolve()'s matrix
// products); its convolutions run on oneDNN, which detects the CPU itself.
// OPENBLAS_CORETYPE is OpenBLAS's only override and is read at load time,
// before main(): kennel re-executes itself once with it set.
// Owns: the rule (a function of the CPU's flags and the loaded kernels'
// name), the re-execution and the line that reports it. Thread-safety: call
// refit_openblas_kernels() before any thread starts.
#pragma once

#include <string>
#include <string_view>

#include "kennel/util/cpu_features.h"

namespace kennel {

// OpenBLAS's name for the best kernels `cpu` runs: "Cooperlake" (AVX-512 with bf16), "SkylakeX"
// (AVX-512), "Haswell" (AVX2 and FMA), or "" (nothing beyond SSE/AVX).
std::string fitting_openblas_core(const CpuFeatures& cpu);

// The kernels to ask for when OpenBLAS loaded `loaded` (openblas_get_corename()) on `cpu`: the
// fitting ones when `loaded` is a pre-AVX2 core (the fallback for models OpenBLAS does not know)
// and `cpu` runs AVX2 or better; "" otherwise (`loaded` suits the CPU, or is not a name this rule
// knows: a newer OpenBLAS's own choice is left alone).
std::string openblas_core_override(std::string_view loaded, const CpuFeatures& cpu);

// The name of the kernels the loaded BLAS runs (openblas_get_corename()); "" when it is not OpenBLAS.
std::string loaded_openblas_core();

// First thing in main(): when OPENBLAS_CORETYPE is unset and openblas_core_override() names
// kernels, sets it (and KENNEL_OPENBLAS_FALLBACK to the name that had loaded, for the report) and
// re-executes this program with the same arguments. Returns when there is nothing to do or the
// re-execution fails (the program then runs on the kernels that loaded).
void refit_openblas_kernels(char** argv);

// For logs and `kennel system`: "OpenBLAS Cooperlake kernels (set by kennel: OpenBLAS had chosen
// Prescott for this CPU)", "OpenBLAS SkylakeX kernels", "OpenBLAS Haswell kernels (OPENBLAS_CORETYPE
// set by the caller)", or "not OpenBLAS".
std::string describe_blas_kernels();

}  // namespace kennel

// The BLAS kernel rule (util/blas_kernels.h): which OpenBLAS kernels a CPU's
// flags call for, and when the kernels OpenBLAS loaded are its fallback for a
// model it does not know.
#include "kennel/util/blas_kernels.h"

#include <gtest/gtest.h>

namespace kennel {
namespace {

// /proc/cpuinfo of the 2-core KVM Xeon (model 207) where Debian's OpenBLAS 0.3.21 loaded Prescott, trimmed.
constexpr const char* kXeonWithAmx =
    "model name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx avx2 avx512f "
    "avx512dq avx512cd avx512bw avx512vl avx_vnni avx512_bf16 avx512_vnni amx_bf16 amx_tile amx_int8\n";
constexpr const char* kSkylakeSp =
    "model name\t: Intel(R) Xeon(R) Gold 6148\nflags\t\t: sse sse2 avx fma avx2 avx512f avx512dq avx512cd "
    "avx512bw avx512vl\n";
constexpr const char* kAvx512fOnly = "model name\t: Knights Landing\nflags\t\t: avx fma avx2 avx512f avx512cd\n";
constexpr const char* kHaswell = "model name\t: Intel(R) Core(TM) i7-4770\nflags\t\t: sse sse2 avx fma avx2\n";
constexpr const char* kSseOnly = "model name\t: Intel(R) Core(TM)2 Duo\nflags\t\t: sse sse2 ssse3\n";

TEST(FittingOpenblasCore, TheBestKernelsTheFlagsAllow) {
  EXPECT_EQ(fitting_openblas_core(parse_cpuinfo(kXeonWithAmx)), "Cooperlake");
  EXPECT_EQ(fitting_openblas_core(parse_cpuinfo(kSkylakeSp)), "SkylakeX");
  // AVX-512 kernels assume Skylake-SP's whole set (bw, vl, dq, cd), not avx512f alone.
  EXPECT_EQ(fitting_openblas_core(parse_cpuinfo(kAvx512fOnly)), "Haswell");
  EXPECT_EQ(fitting_openblas_core(parse_cpuinfo(kHaswell)), "Haswell");
  EXPECT_EQ(fitting_openblas_core(parse_cpuinfo(kSseOnly)), "");
}

TEST(OpenblasCoreOverride, APreAvx2FallbackOnABetterCpuIsReplaced) {
  EXPECT_EQ(openblas_core_override("Prescott", parse_cpuinfo(kXeonWithAmx)), "Cooperlake");
  EXPECT_EQ(openblas_core_override("prescott", parse_cpuinfo(kSkylakeSp)), "SkylakeX");
  EXPECT_EQ(openblas_core_override("Sandybridge", parse_cpuinfo(kHaswell)), "Haswell");
  EXPECT_EQ(openblas_core_override("Nehalem", parse_cpuinfo(kSkylakeSp)), "SkylakeX");
}

TEST(OpenblasCoreOverride, OpenblassOwnChoiceIsLeftAloneOtherwise) {
  // Kernels that use AVX2 or better are OpenBLAS knowing the CPU (Zen 4 reports Zen or SkylakeX).
  EXPECT_EQ(openblas_core_override("Haswell", parse_cpuinfo(kXeonWithAmx)), "");
  EXPECT_EQ(openblas_core_override("Zen", parse_cpuinfo(kXeonWithAmx)), "");
  EXPECT_EQ(openblas_core_override("SkylakeX", parse_cpuinfo(kXeonWithAmx)), "");
  // A name this rule does not know (a newer OpenBLAS's) is not second-guessed.
  EXPECT_EQ(openblas_core_override("SapphireRapids", parse_cpuinfo(kXeonWithAmx)), "");
  // Nothing better to ask for, and no BLAS at all.
  EXPECT_EQ(openblas_core_override("Core2", parse_cpuinfo(kSseOnly)), "");
  EXPECT_EQ(openblas_core_override("", parse_cpuinfo(kXeonWithAmx)), "");
}

}  // namespace
}  // namespace kennel

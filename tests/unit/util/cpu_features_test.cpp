// CPU flags -> native bf16 -> the precision `auto` picks, and the warnings a
// host without native bf16 gives for a job or model that was made with it.
#include <gtest/gtest.h>

#include "kennel/util/cpu_features.h"

namespace kennel {
namespace {

constexpr const char* kEpycGenoa =
    "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654 96-Core Processor\n"
    "flags\t\t: fpu vme avx2 avx512f avx512_vnni avx512_bf16 vaes\n\n"
    "processor\t: 1\nmodel name\t: AMD EPYC 9654 96-Core Processor\nflags\t\t: fpu\n";
constexpr const char* kSapphireRapids =
    "model name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 "
    "amx_tile amx_int8\n";
constexpr const char* kSkylake = "model name\t: Intel(R) Xeon(R) Gold 6148\nflags\t\t: avx2 avx512f avx512bw\n";

TEST(CpuFeaturesTest, ReadsTheFirstProcessorsModelAndFlags) {
  const CpuFeatures cpu = parse_cpuinfo(kEpycGenoa);
  EXPECT_TRUE(cpu.readable);
  EXPECT_EQ(cpu.model_name, "AMD EPYC 9654 96-Core Processor");
  EXPECT_TRUE(cpu.avx512_bf16 && cpu.avx512_vnni && cpu.avx2 && cpu.avx512f);
  EXPECT_FALSE(cpu.amx_bf16);
  EXPECT_TRUE(cpu.native_bf16());
  EXPECT_EQ(cpu.describe(), "AMD EPYC 9654 96-Core Processor (avx512_bf16, avx512_vnni; no AMX)");
  EXPECT_TRUE(parse_cpuinfo(kSapphireRapids).amx_bf16);
  EXPECT_TRUE(parse_cpuinfo(kSapphireRapids).amx_int8);
  EXPECT_FALSE(parse_cpuinfo(kSkylake).native_bf16());
}

TEST(CpuFeaturesTest, AFlagMustMatchWholeNotAsAPrefix) {
  // "avx512_bf16x" is no flag Linux prints; only the exact word counts.
  EXPECT_FALSE(parse_cpuinfo("flags : avx512_bf16x amx_bf16_extra\n").native_bf16());
}

TEST(CpuFeaturesTest, UnreadableCpuInfoMeansNoNativeBf16) {
  const CpuFeatures cpu = parse_cpuinfo("");
  EXPECT_FALSE(cpu.readable);
  EXPECT_FALSE(cpu.native_bf16());
  EXPECT_EQ(choose_precision("auto", cpu).precision, "fp32");
  EXPECT_NE(choose_precision("auto", cpu).reason.find("no CPU flags readable"), std::string::npos);
}

TEST(CpuFeaturesTest, AutoPicksBf16OnlyWithNativeBf16AndSaysWhy) {
  const PrecisionChoice epyc = choose_precision("auto", parse_cpuinfo(kEpycGenoa));
  EXPECT_EQ(epyc.precision, "bf16");
  EXPECT_NE(epyc.reason.find("avx512_bf16"), std::string::npos) << epyc.reason;
  const PrecisionChoice spr = choose_precision("auto", parse_cpuinfo(kSapphireRapids));
  EXPECT_EQ(spr.precision, "bf16");
  EXPECT_NE(spr.reason.find("AMX"), std::string::npos) << spr.reason;
  const PrecisionChoice skylake = choose_precision("auto", parse_cpuinfo(kSkylake));
  EXPECT_EQ(skylake.precision, "fp32");
  EXPECT_NE(skylake.reason.find("no native bf16"), std::string::npos) << skylake.reason;
  // Explicit values are kept whatever the CPU.
  EXPECT_EQ(choose_precision("bf16", parse_cpuinfo(kSkylake)).precision, "bf16");
  EXPECT_EQ(choose_precision("fp32", parse_cpuinfo(kEpycGenoa)).precision, "fp32");
}

TEST(CpuFeaturesTest, StoredBf16OnAHostWithoutItRunsFp32WhenItCameFromAuto) {
  const CpuFeatures skylake = parse_cpuinfo(kSkylake);
  const PrecisionCheck from_auto = check_stored_precision("bf16", /*was_auto=*/true, skylake);
  EXPECT_EQ(from_auto.precision, "fp32");
  EXPECT_NE(from_auto.warning.find("running fp32 instead"), std::string::npos) << from_auto.warning;
  const PrecisionCheck explicit_bf16 = check_stored_precision("bf16", /*was_auto=*/false, skylake);
  EXPECT_EQ(explicit_bf16.precision, "bf16");
  EXPECT_NE(explicit_bf16.warning.find("emulated"), std::string::npos) << explicit_bf16.warning;
  EXPECT_TRUE(check_stored_precision("bf16", true, parse_cpuinfo(kEpycGenoa)).warning.empty());
  EXPECT_TRUE(check_stored_precision("fp32", true, skylake).warning.empty());
}

TEST(CpuFeaturesTest, InferenceOfABf16ModelOnAHostWithoutItWarnsAndRunsFp32) {
  const PrecisionChoice choice = choose_inference_precision("auto", "bf16", true, parse_cpuinfo(kSkylake));
  EXPECT_EQ(choice.precision, "fp32");
  EXPECT_NE(choice.warning.find("trained at bf16"), std::string::npos) << choice.warning;
  // fp32 from auto on another host: this host's rule; fp32 asked for explicitly: kept.
  EXPECT_EQ(choose_inference_precision("auto", "fp32", true, parse_cpuinfo(kEpycGenoa)).precision, "bf16");
  EXPECT_EQ(choose_inference_precision("auto", "fp32", false, parse_cpuinfo(kEpycGenoa)).precision, "fp32");
  EXPECT_EQ(choose_inference_precision("bf16", "fp32", false, parse_cpuinfo(kEpycGenoa)).precision, "bf16");
  EXPECT_EQ(choose_inference_precision("auto", "", false, parse_cpuinfo(kEpycGenoa)).precision, "bf16");
  EXPECT_TRUE(choose_inference_precision("auto", "", false, parse_cpuinfo(kSkylake)).warning.empty());
}

}  // namespace
}  // namespace kennel

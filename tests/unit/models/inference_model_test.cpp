// The precision rule of models/inference_model.h, clause by clause.
#include <gtest/gtest.h>

#include "kennel/models/inference_model.h"

namespace kennel::models {
namespace {

CpuFeatures cpu(bool bf16, bool vnni) {
  CpuFeatures features;
  features.model_name = "Test CPU";
  features.readable = true;
  features.avx512f = true;
  features.avx512_bf16 = bf16;
  features.avx512_vnni = vnni;
  return features;
}

QuantizationRecord calibrated(double agreement) {
  QuantizationRecord record;
  record.ranges["input"] = {-1, 1};
  record.check.split = "valid";
  record.check.images = 400;
  record.check.agreement = agreement;
  return record;
}

ModelInfo trained_by_auto() {
  ModelInfo info;
  info.precision = "bf16";
  info.precision_auto = true;
  return info;
}

TEST(ChooseModelPrecisionTest, ExplicitInt8NeedsACalibratedModel) {
  auto choice = choose_model_precision("int8", trained_by_auto(), std::nullopt, 0.98, cpu(true, true));
  ASSERT_FALSE(choice.ok());
  EXPECT_EQ(choice.status().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(choice.status().message().find("kennel quantize"), std::string::npos);
}

TEST(ChooseModelPrecisionTest, ExplicitInt8BelowTheAgreementThresholdIsRefusedWithTheFigures) {
  auto choice = choose_model_precision("int8", trained_by_auto(), calibrated(0.95), 0.98, cpu(true, true));
  ASSERT_FALSE(choice.ok());
  EXPECT_NE(choice.status().message().find("0.9500"), std::string::npos) << choice.status().message();
  EXPECT_NE(choice.status().message().find("--int8-min-agreement 0.98"), std::string::npos);
  // Told to accept it: runs.
  choice = choose_model_precision("int8", trained_by_auto(), calibrated(0.95), 0.9, cpu(true, true));
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->precision, "int8");
  EXPECT_TRUE(choice->warning.empty());
}

TEST(ChooseModelPrecisionTest, ExplicitInt8WithoutVnniWarns) {
  auto choice = choose_model_precision("int8", trained_by_auto(), calibrated(0.99), 0.98, cpu(false, false));
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->precision, "int8");
  EXPECT_NE(choice->warning.find("VNNI"), std::string::npos);
}

TEST(ChooseModelPrecisionTest, AutoRunsACalibratedModelAtInt8WhereTheCpuHasVnni) {
  auto choice = choose_model_precision("auto", trained_by_auto(), calibrated(0.99), 0.98, cpu(true, true));
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->precision, "int8");
  EXPECT_NE(choice->reason.find("auto"), std::string::npos);
  EXPECT_TRUE(choice->warning.empty());
}

TEST(ChooseModelPrecisionTest, AutoFallsBackAndSaysWhy) {
  // No VNNI: bf16 where native, with a warning naming the CPU.
  auto choice = choose_model_precision("auto", trained_by_auto(), calibrated(0.99), 0.98, cpu(true, false));
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->precision, "bf16");
  EXPECT_NE(choice->warning.find("neither VNNI nor AMX"), std::string::npos) << choice->warning;
  // Below the threshold: the figures in the warning.
  choice = choose_model_precision("auto", trained_by_auto(), calibrated(0.9), 0.98, cpu(true, true));
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->precision, "bf16");
  EXPECT_NE(choice->warning.find("0.9000"), std::string::npos) << choice->warning;
}

TEST(ChooseModelPrecisionTest, AutoOnAnUncalibratedModelAndExplicitFloatsAreUnchanged) {
  auto choice = choose_model_precision("auto", trained_by_auto(), std::nullopt, 0.98, cpu(true, true));
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->precision, "bf16");
  EXPECT_TRUE(choice->warning.empty());
  choice = choose_model_precision("fp32", trained_by_auto(), calibrated(0.99), 0.98, cpu(true, true));
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->precision, "fp32");
}

TEST(ChooseModelPrecisionTest, UnknownPrecisionIsNamed) {
  auto choice = choose_model_precision("int4", trained_by_auto(), std::nullopt, 0.98, cpu(true, true));
  ASSERT_FALSE(choice.ok());
  EXPECT_NE(choice.status().message().find("'int4'"), std::string::npos);
  EXPECT_NE(choice.status().message().find("int8"), std::string::npos);
}

}  // namespace
}  // namespace kennel::models

// quantization.json round-trips, and a malformed one names its field.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "kennel/models/quantization_record.h"

namespace kennel::models {
namespace {

namespace fs = std::filesystem;

class QuantizationRecordTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("kennel-qrecord-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static QuantizationRecord sample() {
    QuantizationRecord record;
    record.ranges["input"] = {-2.1, 2.6};
    record.ranges["conv1"] = {0, 7.5};
    record.calibration_data = "/data/dogs";
    record.calibration_split = "train";
    record.calibration_images = 256;
    record.seed = 3;
    record.check = {.data = "/data/dogs", .split = "valid", .images = 500, .agreement = 0.994,
                    .accuracy_int8 = 0.81, .accuracy_fp32 = 0.812, .max_logit_difference = 0.4};
    record.cpu = "AMD EPYC (avx512_bf16, avx512_vnni; no AMX)";
    return record;
  }

  void rewrite(const std::function<void(nlohmann::json&)>& change) {
    std::ifstream in(dir_ / kQuantizationFile);
    nlohmann::json json = nlohmann::json::parse(in);
    change(json);
    std::ofstream(dir_ / kQuantizationFile) << json.dump();
  }

  fs::path dir_;
};

TEST_F(QuantizationRecordTest, RoundTrips) {
  ASSERT_TRUE(write_quantization_record(dir_, sample()).ok());
  auto read = read_quantization_record(dir_);
  ASSERT_TRUE(read.ok()) << read.status().to_string();
  ASSERT_TRUE(read->has_value());
  const QuantizationRecord& record = **read;
  EXPECT_EQ(record.ranges.size(), 2u);
  EXPECT_DOUBLE_EQ(record.ranges.at("input").min, -2.1);
  EXPECT_DOUBLE_EQ(record.ranges.at("conv1").max, 7.5);
  EXPECT_EQ(record.calibration_images, 256);
  EXPECT_EQ(record.seed, 3u);
  EXPECT_EQ(record.check.split, "valid");
  EXPECT_DOUBLE_EQ(record.check.agreement, 0.994);
  EXPECT_EQ(record.cpu, sample().cpu);
}

TEST_F(QuantizationRecordTest, AbsentMeansNotCalibrated) {
  auto read = read_quantization_record(dir_);
  ASSERT_TRUE(read.ok());
  EXPECT_FALSE(read->has_value());
}

TEST_F(QuantizationRecordTest, MalformedFieldsAreNamed) {
  ASSERT_TRUE(write_quantization_record(dir_, sample()).ok());
  rewrite([](nlohmann::json& json) { json["ranges"]["conv1"] = {{"min", 3}, {"max", 1}}; });
  auto read = read_quantization_record(dir_);
  ASSERT_FALSE(read.ok());
  EXPECT_NE(read.status().message().find("ranges.conv1"), std::string::npos) << read.status().message();
  EXPECT_NE(read.status().message().find(kQuantizationFile), std::string::npos);

  ASSERT_TRUE(write_quantization_record(dir_, sample()).ok());
  rewrite([](nlohmann::json& json) { json["check"]["agreement"] = 1.5; });
  read = read_quantization_record(dir_);
  ASSERT_FALSE(read.ok());
  EXPECT_NE(read.status().message().find("check.agreement"), std::string::npos) << read.status().message();

  std::ofstream(dir_ / kQuantizationFile) << "{not json";
  read = read_quantization_record(dir_);
  ASSERT_FALSE(read.ok());
  EXPECT_NE(read.status().message().find("kennel quantize"), std::string::npos);
}

}  // namespace
}  // namespace kennel::models

#include "kennel/s3/aws_config_file.h"

#include <gtest/gtest.h>

namespace kennel::s3 {
namespace {

TEST(AwsConfigFileTest, ReadsSectionsValuesAndNestedBlocks) {
  const std::string text =
      "# a comment\n"
      "[default]\n"
      "region = eu-west-1\n"
      "s3 =\n"
      "    addressing_style = path\n"
      "    Endpoint_URL = http://127.0.0.1:9000\n"
      "\n"
      "; another comment\n"
      "[profile ml]\r\n"
      "AWS_Access_Key_Id=AKIDML\r\n"
      "output =   json   \n"
      "[services local]\n"
      "s3 =\n"
      "  endpoint_url = http://minio:9000\n";
  const AwsIniFile file = parse_aws_ini(text, "config").value();
  ASSERT_NE(file.section("default"), nullptr);
  EXPECT_EQ(file.section("default")->get("region"), "eu-west-1");
  EXPECT_EQ(file.section("default")->get_nested("s3", "addressing_style"), "path");
  EXPECT_EQ(file.section("default")->get_nested("s3", "endpoint_url"), "http://127.0.0.1:9000");
  EXPECT_EQ(file.section("default")->get("s3"), std::nullopt);  // an empty value counts as absent
  ASSERT_NE(file.section("profile ml"), nullptr);
  EXPECT_EQ(file.section("profile ml")->get("aws_access_key_id"), "AKIDML");  // keys lower-cased
  EXPECT_EQ(file.section("profile ml")->get("output"), "json");
  EXPECT_EQ(file.section("profile ml")->line, 9);
  EXPECT_EQ(file.section("services local")->get_nested("s3", "endpoint_url"), "http://minio:9000");
  EXPECT_EQ(file.section("ml"), nullptr);
}

TEST(AwsConfigFileTest, ContinuationLinesExtendAValue) {
  const AwsIniFile file = parse_aws_ini("[p]\nnote = first\n  second\n", "f").value();
  EXPECT_EQ(file.section("p")->get("note"), "first\nsecond");
}

TEST(AwsConfigFileTest, ErrorsNameTheFileAndLine) {
  const Status before_section = parse_aws_ini("region = x\n", "/h/.aws/config").status();
  EXPECT_EQ(before_section.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(before_section.message().find("/h/.aws/config:1"), std::string::npos);
  const Status no_equals = parse_aws_ini("[default]\n\nregion\n", "cfg").status();
  EXPECT_NE(no_equals.message().find("cfg:3"), std::string::npos);
  EXPECT_EQ(parse_aws_ini("[default\n", "cfg").status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(parse_aws_ini("[d]\n= x\n", "cfg").status().code(), ErrorCode::kInvalidArgument);
}

TEST(AwsConfigFileTest, AMissingFileIsEmptyNotAnError) {
  auto loaded = load_aws_ini("/nonexistent/kennel/aws/config");
  ASSERT_TRUE(loaded.ok());
  EXPECT_FALSE(loaded->has_value());
}

}  // namespace
}  // namespace kennel::s3

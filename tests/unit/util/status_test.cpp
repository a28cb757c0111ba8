#include "kennel/util/status.h"

#include <gtest/gtest.h>

namespace kennel {
namespace {

Result<int> parse_positive(int value) {
  if (value <= 0) return invalid_argument("value must be > 0, got {}", value);
  return value;
}

TEST(StatusTest, OkByDefault) {
  Status status;
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(status.to_string(), "OK");
}

TEST(StatusTest, ContextIsPrefixed) {
  Status status = not_found("file 'x.jpg' is missing");
  EXPECT_EQ(status.with_context("reading dataset").message(), "reading dataset: file 'x.jpg' is missing");
  EXPECT_TRUE(Status().with_context("ignored").ok());
}

TEST(StatusTest, ExitCodesAndHttpStatusesComeFromOneTable) {
  EXPECT_EQ(exit_code_for(ErrorCode::kOk), 0);
  EXPECT_EQ(exit_code_for(ErrorCode::kInvalidArgument), 2);
  EXPECT_EQ(exit_code_for(ErrorCode::kFailedPrecondition), 1);
  EXPECT_EQ(http_status_for(ErrorCode::kInvalidArgument), 400);
  EXPECT_EQ(http_status_for(ErrorCode::kUnavailable), 503);
  EXPECT_EQ(http_status_for(ErrorCode::kInternal), 500);
}

TEST(ResultTest, HoldsValueOrStatus) {
  auto good = parse_positive(3);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 3);
  auto bad = parse_positive(-1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "value must be > 0, got -1");
}

TEST(ResultTest, AccessingAnErrorThrowsWithItsStatus) {
  auto bad = parse_positive(0);
  try {
    (void)bad.value();
    FAIL() << "expected kennel::Error";
  } catch (const Error& error) {
    EXPECT_EQ(error.status().code(), ErrorCode::kInvalidArgument);
  }
}

TEST(ResultTest, OkStatusIsNotAValue) {
  Result<int> result{Status()};
  EXPECT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), ErrorCode::kInternal);
}

}  // namespace
}  // namespace kennel

#include "kennel/s3/retry.h"

#include <curl/curl.h>
#include <gtest/gtest.h>

namespace kennel::s3 {
namespace {

TEST(RetryTest, ConnectionLevelFailuresAreRetried) {
  for (const CURLcode code : {CURLE_COULDNT_CONNECT, CURLE_PARTIAL_FILE, CURLE_OPERATION_TIMEDOUT,
                              CURLE_GOT_NOTHING, CURLE_SEND_ERROR, CURLE_RECV_ERROR}) {
    EXPECT_TRUE(is_retryable_transport_error(code)) << code;
  }
  for (const CURLcode code :
       {CURLE_COULDNT_RESOLVE_HOST, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CONNECT_ERROR,
        CURLE_URL_MALFORMAT, CURLE_WRITE_ERROR, CURLE_ABORTED_BY_CALLBACK}) {
    EXPECT_FALSE(is_retryable_transport_error(code)) << code;
  }
}

TEST(RetryTest, ServerErrorsAndThrottlingAreRetriedClientErrorsAreNot) {
  EXPECT_TRUE(is_retryable_http_status(500, "InternalError"));
  EXPECT_TRUE(is_retryable_http_status(502, ""));
  EXPECT_TRUE(is_retryable_http_status(503, "SlowDown"));
  EXPECT_TRUE(is_retryable_http_status(504, ""));
  EXPECT_TRUE(is_retryable_http_status(429, ""));
  EXPECT_TRUE(is_retryable_http_status(400, "RequestTimeout"));
  EXPECT_TRUE(is_retryable_http_status(200, "InternalError"));  // CompleteMultipartUpload's 200
  EXPECT_FALSE(is_retryable_http_status(501, "NotImplemented"));
  for (const auto& [status, code] :
       std::vector<std::pair<long, std::string>>{{400, "InvalidArgument"},
                                                 {403, "AccessDenied"},
                                                 {403, "SignatureDoesNotMatch"},
                                                 {403, "RequestTimeTooSkewed"},
                                                 {404, "NoSuchKey"},
                                                 {404, "NoSuchBucket"},
                                                 {409, "BucketAlreadyExists"},
                                                 {412, "PreconditionFailed"},
                                                 {416, "InvalidRange"},
                                                 {301, "PermanentRedirect"}}) {
    EXPECT_FALSE(is_retryable_http_status(status, code)) << status << " " << code;
  }
}

TEST(RetryTest, BackoffIsExponentialWithFullJitterAndCapped) {
  const RetryPolicy policy{5, 0.25, 2.0};
  EXPECT_DOUBLE_EQ(backoff_delay_seconds(policy, 1, 0.999999), 0.25 * 0.999999);
  EXPECT_DOUBLE_EQ(backoff_delay_seconds(policy, 2, 0.5), 0.25);
  EXPECT_DOUBLE_EQ(backoff_delay_seconds(policy, 3, 0.5), 0.5);
  EXPECT_DOUBLE_EQ(backoff_delay_seconds(policy, 4, 1.0), 2.0);   // 0.25 * 8 capped at 2
  EXPECT_DOUBLE_EQ(backoff_delay_seconds(policy, 60, 1.0), 2.0);  // no overflow
  EXPECT_DOUBLE_EQ(backoff_delay_seconds(policy, 3, 0.0), 0.0);
}

}  // namespace
}  // namespace kennel::s3

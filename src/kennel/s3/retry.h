// When a failed S3 exchange is worth repeating, and how long to wait first.
//
// Retried: connection-level failures where nothing says the request was wrong
// (libcurl 7 connect refused, 18 partial body, 28 timeout, 52 empty reply,
// 55 send error, 56 receive error / connection reset), HTTP 5xx except 501,
// 429, and S3's throttling / timeout codes whatever their status (SlowDown,
// RequestTimeout, RequestLimitExceeded, Throttling, InternalError).
// Never retried: any other 4xx (a wrong key, a missing bucket, a denied
// request stay wrong), 501 Not Implemented, TLS and DNS failures.
// Waits: exponential back-off with full jitter (AWS's recommendation):
// uniform in [0, min(max_delay, base_delay * 2^(attempt-1))].
// Thread-safety: values and pure functions.
#pragma once

#include <string_view>

namespace kennel::s3 {

struct RetryPolicy {
  // Attempts per request, the first included. 5: about 10 s of waiting in the
  // worst case at the defaults, enough to ride out a throttling burst.
  int max_attempts = 5;
  double base_delay_seconds = 0.25;
  double max_delay_seconds = 20;
};

bool is_retryable_transport_error(int curl_code);
// `s3_error_code` is the <Code> of the error document ("" when none).
bool is_retryable_http_status(long status, std::string_view s3_error_code);

// The wait before attempt `attempt + 1` after `attempt` failed attempts
// (attempt >= 1), given a uniform random number in [0, 1).
double backoff_delay_seconds(const RetryPolicy& policy, int attempt, double uniform01);

}  // namespace kennel::s3

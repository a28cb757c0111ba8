#include "kennel/s3/retry.h"

#include <algorithm>
#include <cmath>

namespace kennel::s3 {

bool is_retryable_transport_error(int curl_code) {
  switch (curl_code) {
    case 7:   // CURLE_COULDNT_CONNECT
    case 18:  // CURLE_PARTIAL_FILE
    case 28:  // CURLE_OPERATION_TIMEDOUT
    case 52:  // CURLE_GOT_NOTHING
    case 55:  // CURLE_SEND_ERROR
    case 56:  // CURLE_RECV_ERROR
      return true;
    default:
      return false;
  }
}

bool is_retryable_http_status(long status, std::string_view s3_error_code) {
  for (const std::string_view code :
       {"SlowDown", "RequestTimeout", "RequestLimitExceeded", "Throttling", "ThrottlingException",
        "InternalError", "ServiceUnavailable"}) {
    if (s3_error_code == code) return true;
  }
  if (status == 429) return true;
  return status >= 500 && status <= 599 && status != 501;
}

double backoff_delay_seconds(const RetryPolicy& policy, int attempt, double uniform01) {
  const double exponent = std::min(attempt - 1, 30);
  const double ceiling =
      std::min(policy.max_delay_seconds, policy.base_delay_seconds * std::pow(2.0, exponent));
  return std::clamp(uniform01, 0.0, 1.0) * std::max(0.0, ceiling);
}

}  // namespace kennel::s3

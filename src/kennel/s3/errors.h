// S3 failures as Kennel Statuses whose messages say what went wrong in the
// user's terms and what to do: which bucket does not exist at which endpoint,
// which profile's secret key is wrong, which region a bucket really is in.
//
//   kNotFound          NoSuchKey, NoSuchBucket, NoSuchUpload, 404
//   kPermissionDenied  AccessDenied, SignatureDoesNotMatch, InvalidAccessKeyId,
//                      ExpiredToken, other 403s, RequestTimeTooSkewed
//   kFailedPrecondition PreconditionFailed (If-Match: the object changed),
//                      a bucket in another region (301/PermanentRedirect, 307)
//   kUnavailable       throttling or 5xx still failing after the last retry
//   kDeadlineExceeded  timeouts after the last retry
//   kUpstreamFailed    anything else the server or the connection did
// Thread-safety: pure functions.
#pragma once

#include "kennel/s3/config.h"
#include "kennel/s3/request.h"
#include "kennel/s3/transport.h"
#include "kennel/util/status.h"

namespace kennel::s3 {

// The Status for an HTTP response that is not a success (or a 200 carrying an
// error document); `attempts` is how many were made.
Status status_for_response(const HttpResponse& response, const S3Request& request,
                           const S3Config& config, int attempts);
// The Status for an exchange that ended without a whole response.
Status status_for_transport_error(const HttpExchange& exchange, const S3Request& request,
                                  const S3Config& config, int attempts);

// "s3://bucket/key" or "bucket 'bucket'", as messages name a request's target.
std::string request_subject(const S3Request& request);

}  // namespace kennel::s3

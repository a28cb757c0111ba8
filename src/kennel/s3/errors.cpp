#include "kennel/s3/errors.h"

#include "kennel/s3/retry.h"
#include "kennel/s3/xml_responses.h"

namespace kennel::s3 {

namespace {

const char* iam_action(const std::string& operation) {
  if (operation == "GetObject" || operation == "HeadObject") return "s3:GetObject";
  if (operation == "ListObjectsV2") return "s3:ListBucket";
  if (operation == "DeleteObject") return "s3:DeleteObject";
  if (operation == "AbortMultipartUpload") return "s3:AbortMultipartUpload";
  return "s3:PutObject";
}

std::string attempts_text(int attempts) {
  return attempts > 1 ? fmt::format(" (after {} attempts)", attempts) : "";
}

// "profile 'ml'" or "the environment", for "the secret key for ... is wrong".
std::string credential_owner(const S3Config& config) {
  if (!config.credentials) return "anonymous requests";
  if (!config.credentials->profile.empty())
    return fmt::format("profile '{}'", config.credentials->profile);
  return "the environment (AWS_SECRET_ACCESS_KEY)";
}

std::string region_hint(const std::string& region, const S3Config& config) {
  return fmt::format(
      "set AWS_REGION={} (or `region = {}` in the profile, or --region {}); Kennel used {} "
      "(from {})",
      region, region, region, config.region, config.region_source);
}

}  // namespace

std::string request_subject(const S3Request& request) {
  if (request.key.empty()) return fmt::format("bucket '{}'", request.bucket);
  return S3Uri{request.bucket, request.key}.text();
}

Status status_for_response(const HttpResponse& response, const S3Request& request,
                           const S3Config& config, int attempts) {
  const auto document = parse_error_document(response.body);
  const std::string code = document ? document->code : "";
  const std::string detail =
      document ? (document->message.empty() ? code : code + ": " + document->message) : "";
  const std::string subject = request_subject(request);
  const std::string endpoint = config.endpoint.text();
  const std::string tried = attempts_text(attempts);
  const long status = response.status;

  if (code == "NoSuchBucket") {
    return not_found(
        "bucket '{}' does not exist at {} (NoSuchBucket): check the bucket name and "
        "the endpoint (from {})",
        request.bucket, endpoint, config.endpoint_source);
  }
  if (code == "NoSuchKey") return not_found("{} does not exist (NoSuchKey)", subject);
  if (code == "NoSuchUpload") {
    return not_found(
        "the multipart upload for {} no longer exists (NoSuchUpload): it was "
        "completed or aborted elsewhere; upload again",
        subject);
  }
  if (status == 404) {
    return not_found(
        "{} was not found at {} (HTTP 404 to {}{}): the key or the bucket '{}' does "
        "not exist",
        subject, endpoint, request.method, detail.empty() ? "" : ", " + detail, request.bucket);
  }
  if (code == "SignatureDoesNotMatch") {
    const std::string fix = !config.credentials ? "check the request"
                            : config.credentials->profile.empty()
                                ? std::string("fix AWS_SECRET_ACCESS_KEY")
                                : "fix aws_secret_access_key in " + config.credentials->source;
    return Status(
        ErrorCode::kPermissionDenied,
        fmt::format("the secret key for {} is wrong (SignatureDoesNotMatch): {} at {} "
                    "computed another signature for access key {}; {}",
                    credential_owner(config), request.operation, endpoint,
                    config.credentials ? config.credentials->masked_access_key_id() : "-", fix));
  }
  if (code == "InvalidAccessKeyId") {
    return Status(ErrorCode::kPermissionDenied,
                  fmt::format("access key {} from {} is not known to {} (InvalidAccessKeyId): "
                              "check aws_access_key_id / AWS_ACCESS_KEY_ID and the endpoint",
                              config.credentials ? config.credentials->masked_access_key_id() : "-",
                              config.credentials ? config.credentials->source : "-", endpoint));
  }
  if (code == "ExpiredToken" || code == "TokenRefreshRequired" || code == "InvalidToken") {
    return Status(ErrorCode::kPermissionDenied,
                  fmt::format("the session token from {} is no longer valid ({}): get new "
                              "temporary credentials",
                              config.credentials ? config.credentials->source : "-", detail));
  }
  if (code == "RequestTimeTooSkewed") {
    return Status(ErrorCode::kPermissionDenied,
                  fmt::format("this machine's clock is more than 15 minutes away from {}'s "
                              "(RequestTimeTooSkewed): set the clock (NTP) and try again",
                              endpoint));
  }
  const std::string redirect_region = !response.header("x-amz-bucket-region").empty()
                                          ? response.header("x-amz-bucket-region")
                                      : document ? document->region
                                                 : "";
  if (code == "PermanentRedirect" || code == "AuthorizationHeaderMalformed" ||
      code == "IllegalLocationConstraintException" || status == 301 || status == 307) {
    if (!redirect_region.empty() && redirect_region != config.region) {
      return failed_precondition("bucket '{}' is in region {}, not {}: {}", request.bucket,
                                 redirect_region, config.region,
                                 region_hint(redirect_region, config));
    }
    return Status(ErrorCode::kUpstreamFailed,
                  fmt::format("{} answered HTTP {} to {} {}{}: the bucket is probably in "
                              "another region or behind another endpoint",
                              endpoint, status, request.method, subject,
                              detail.empty() ? "" : " (" + detail + ")"));
  }
  if (code == "PreconditionFailed" || status == 412) {
    return failed_precondition(
        "{} changed since its ETag was read (PreconditionFailed): list "
        "or fetch it again",
        subject);
  }
  if (code == "AccessDenied" || status == 403) {
    const std::string who = config.credentials
                                ? fmt::format("for {}", config.credentials->describe())
                                : "to anonymous requests (--no-sign-request: the bucket is not "
                                  "public; drop the flag to use credentials)";
    const std::string why =
        detail.empty()
            ? fmt::format(
                  "HTTP 403 to {}, which carries no detail: wrong credentials, "
                  "no {} permission{}",
                  request.method, iam_action(request.operation),
                  request.method == "HEAD" ? ", or a missing key without s3:ListBucket permission"
                                           : "")
            : detail;
    return Status(ErrorCode::kPermissionDenied,
                  fmt::format("access to {} denied {} ({}); the policy must allow {}", subject, who,
                              why, iam_action(request.operation)));
  }
  if (status == 429 || status == 503 || code == "SlowDown") {
    return Status(ErrorCode::kUnavailable,
                  fmt::format("{} is throttling or unavailable: HTTP {} to {} {}{}{}; try "
                              "again later or with fewer parallel transfers",
                              endpoint, status, request.operation, subject,
                              detail.empty() ? "" : " (" + detail + ")", tried));
  }
  if (is_retryable_http_status(status, code)) {
    return Status(
        ErrorCode::kUnavailable,
        fmt::format("{} answered HTTP {} to {} {}{}{}", endpoint, status, request.operation,
                    subject, detail.empty() ? "" : " (" + detail + ")", tried));
  }
  return Status(ErrorCode::kUpstreamFailed,
                fmt::format("{} answered HTTP {} to {} {}{}", endpoint, status, request.operation,
                            subject, detail.empty() ? "" : " (" + detail + ")"));
}

Status status_for_transport_error(const HttpExchange& exchange, const S3Request& request,
                                  const S3Config& config, int attempts) {
  const std::string subject = request_subject(request);
  const std::string endpoint = config.endpoint.text();
  const std::string tried = attempts_text(attempts);
  switch (exchange.transport_error) {
    case 28:  // CURLE_OPERATION_TIMEDOUT
      return Status(ErrorCode::kDeadlineExceeded,
                    fmt::format("{} {} at {} timed out{}: {}", request.operation, subject, endpoint,
                                tried, exchange.transport_message));
    case 6:  // CURLE_COULDNT_RESOLVE_HOST
      return Status(ErrorCode::kUpstreamFailed,
                    fmt::format("cannot resolve the host of {} (from {}): {}", endpoint,
                                config.endpoint_source, exchange.transport_message));
    case 7:  // CURLE_COULDNT_CONNECT
      return Status(ErrorCode::kUpstreamFailed,
                    fmt::format("cannot connect to {} (from {}){}: {}", endpoint,
                                config.endpoint_source, tried, exchange.transport_message));
    case 35:  // CURLE_SSL_CONNECT_ERROR
    case 60:  // CURLE_PEER_FAILED_VERIFICATION
    case 77:  // CURLE_SSL_CACERT_BADFILE
      return Status(ErrorCode::kUpstreamFailed,
                    fmt::format("TLS with {} failed: {}; if the store uses a private CA, point "
                                "--ca-bundle or AWS_CA_BUNDLE at its PEM file{}",
                                endpoint, exchange.transport_message,
                                config.ca_bundle.empty() ? "" : " (now " + config.ca_bundle + ")"));
    default:
      return Status(ErrorCode::kUpstreamFailed,
                    fmt::format("{} {} at {} failed{}: {}", request.operation, subject, endpoint,
                                tried, exchange.transport_message));
  }
}

}  // namespace kennel::s3

#include "kennel/util/status.h"

namespace kennel {

namespace {
struct ErrorCodeInfo {
  ErrorCode code;
  const char* name;
  int exit_code;
  int http_status;
};

// The one table from error kinds to CLI exit codes and HTTP statuses.
constexpr ErrorCodeInfo kErrorCodeTable[] = {
    {ErrorCode::kOk, "ok", 0, 200},
    {ErrorCode::kInvalidArgument, "invalid argument", 2, 400},
    {ErrorCode::kNotFound, "not found", 2, 404},
    {ErrorCode::kAlreadyExists, "already exists", 2, 409},
    {ErrorCode::kPermissionDenied, "permission denied", 2, 403},
    {ErrorCode::kFailedPrecondition, "failed precondition", 1, 400},
    {ErrorCode::kResourceExhausted, "resource exhausted", 1, 413},
    {ErrorCode::kUnavailable, "unavailable", 1, 503},
    {ErrorCode::kCancelled, "cancelled", 1, 499},
    {ErrorCode::kDataLoss, "data loss", 1, 400},
    {ErrorCode::kUnsupportedMediaType, "unsupported media type", 2, 415},
    {ErrorCode::kUpstreamFailed, "upstream failed", 1, 502},
    {ErrorCode::kDeadlineExceeded, "deadline exceeded", 1, 504},
    {ErrorCode::kInternal, "internal error", 1, 500},
};

const ErrorCodeInfo& info_for(ErrorCode code) {
  for (const auto& info : kErrorCodeTable) {
    if (info.code == code) return info;
  }
  return kErrorCodeTable[std::size(kErrorCodeTable) - 1];
}
}  // namespace

const char* error_code_name(ErrorCode code) { return info_for(code).name; }
int exit_code_for(ErrorCode code) { return info_for(code).exit_code; }
int http_status_for(ErrorCode code) { return info_for(code).http_status; }

}  // namespace kennel

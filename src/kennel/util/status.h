// Status and Result<T>: how fallible operations report failure at I/O and
// user-input boundaries.
//
// A Status is an ErrorCode plus a message that names the file, field or value
// and says what to do. Result<T> holds either a value or a non-OK Status; it
// has no empty state and is [[nodiscard]]. Inside a subsystem code may throw
// kennel::Error (which carries a Status); the subsystem's edge converts it back.
// One table (exit_code_for / http_status_for) maps codes to CLI exit codes and
// HTTP statuses. Thread-safety: values, no shared state.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace kennel {

enum class ErrorCode {
  kOk,
  kInvalidArgument,     // the user's input is wrong (a flag, a spec field, a file's content)
  kNotFound,            // a named file, job or key does not exist
  kAlreadyExists,       // refusing to overwrite something the user has
  kPermissionDenied,    // the OS refused access
  kFailedPrecondition,  // the input is well-formed but unusable (e.g. a dataset with no images)
  kResourceExhausted,   // a limit was hit (pixels, bytes, queue)
  kUnavailable,         // try again later (queue full, server starting)
  kCancelled,           // stopped on request
  kDataLoss,            // a file is truncated or corrupt
  kUnsupportedMediaType,  // a request body of a content type Kennel does not read
  kUpstreamFailed,      // a URL Kennel fetched for the user failed (refused, HTTP error, TLS)
  kDeadlineExceeded,    // a fetch or wait ran past its time limit
  kInternal,            // a bug in Kennel
};

const char* error_code_name(ErrorCode code);
// CLI exit code: 2 for usage errors (bad flags, bad input the user must fix
// before anything runs), 1 for a job that ran and failed, 0 for OK.
int exit_code_for(ErrorCode code);
int http_status_for(ErrorCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok_status() { return {}; }
  bool ok() const { return code_ == ErrorCode::kOk; }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // Prefixes the message with what was being done: "reading spec.yaml: <message>".
  Status with_context(const std::string& context) const {
    if (ok()) return *this;
    return {code_, context + ": " + message_};
  }
  std::string to_string() const {
    return ok() ? "OK" : fmt::format("{}: {}", error_code_name(code_), message_);
  }

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

// The exception used inside subsystems; always carries a non-OK Status.
class Error : public std::runtime_error {
 public:
  explicit Error(Status status) : std::runtime_error(status.message()), status_(std::move(status)) {}
  Error(ErrorCode code, const std::string& message) : Error(Status(code, message)) {}
  const Status& status() const { return status_; }

 private:
  Status status_;
};

template <typename... Args>
Status invalid_argument(fmt::format_string<Args...> format, Args&&... args) {
  return {ErrorCode::kInvalidArgument, fmt::format(format, std::forward<Args>(args)...)};
}
template <typename... Args>
Status not_found(fmt::format_string<Args...> format, Args&&... args) {
  return {ErrorCode::kNotFound, fmt::format(format, std::forward<Args>(args)...)};
}
template <typename... Args>
Status failed_precondition(fmt::format_string<Args...> format, Args&&... args) {
  return {ErrorCode::kFailedPrecondition, fmt::format(format, std::forward<Args>(args)...)};
}
template <typename... Args>
Status internal_error(fmt::format_string<Args...> format, Args&&... args) {
  return {ErrorCode::kInternal, fmt::format(format, std::forward<Args>(args)...)};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : storage_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : storage_(std::move(status)) {  // NOLINT: implicit by design
    if (std::get<Status>(storage_).ok()) {
      storage_ = Status(ErrorCode::kInternal, "Result constructed from an OK status");
    }
  }

  bool ok() const { return std::holds_alternative<T>(storage_); }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(storage_);
  }
  // Throwing accessors: a non-OK Result throws kennel::Error with its status.
  T& value() & {
    throw_if_error();
    return std::get<T>(storage_);
  }
  const T& value() const& {
    throw_if_error();
    return std::get<T>(storage_);
  }
  T&& value() && {
    throw_if_error();
    return std::get<T>(std::move(storage_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  void throw_if_error() const {
    if (!ok()) throw Error(std::get<Status>(storage_));
  }
  std::variant<T, Status> storage_;
};

// Returns early with the Status of `expr` when it is not OK.
#define KENNEL_RETURN_IF_ERROR(expr)          \
  do {                                        \
    ::kennel::Status kennel_status_ = (expr); \
    if (!kennel_status_.ok()) return kennel_status_; \
  } while (0)

}  // namespace kennel

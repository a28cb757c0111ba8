// Internals of http_listener.cpp: the bridge to cpp-httplib. httplib parses
// and routes a request read from a Stream; the listener gives it a
// RequestStream over one request already in memory, and the Router exposes
// httplib's protected process_request to the listener.
// Thread-safety: one request on one handler thread.
#pragma once

#include <string>

#include <httplib.h>

#include "kennel/serve/detail/connection.h"

namespace kennel::serve::detail {

class Router final : public httplib::Server {
 public:
  bool handle(httplib::Stream& stream, bool close_connection, bool& connection_closed) {
    return process_request(stream, close_connection, connection_closed, nullptr);
  }
};

// Reads end where the request ends (0 = end of stream, so a body without
// framing is empty, never "until the client closes"). Answers are gathered
// and written in one go when the handler is done (or every 64 KiB), so a
// small answer is one TCP segment; writes give up at the write deadline.
class RequestStream final : public httplib::Stream {
 public:
  RequestStream(Connection& connection, Clock::duration write_timeout)
      : c_(connection), end_(connection.request_end), write_timeout_(write_timeout) {}

  bool is_readable() const override { return position_ < end_; }
  bool is_writable() const override { return !failed_; }
  ssize_t read(char* ptr, size_t size) override;
  ssize_t write(const char* ptr, size_t size) override;
  void get_remote_ip_and_port(std::string& ip, int& port) const override;
  void get_local_ip_and_port(std::string& ip, int& port) const override;
  socket_t socket() const override { return c_.fd; }

  // Sends what is gathered; false once a write has failed.
  bool flush();

 private:
  Connection& c_;
  size_t position_ = 0;
  size_t end_;
  Clock::duration write_timeout_;
  Clock::time_point deadline_{};
  std::string output_;
  bool failed_ = false;
};

}  // namespace kennel::serve::detail

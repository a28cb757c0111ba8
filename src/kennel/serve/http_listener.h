// The endpoint's connections. cpp-httplib's own server holds one pool thread
// per connection for as long as it is open, so a few slow or idle clients
// could occupy every thread. Here one poll() thread accepts, does TLS
// handshakes, holds idle keep-alive connections and reads each request
// whole (head and body, Content-Length or chunked: request_framing.h); only
// a complete request, already in memory, is handed to one of `threads`
// handler threads, which routes it through httplib (register the handlers
// on routes()) and writes the answer. A client that connects and waits,
// trickles its headers or body, or keeps a connection idle holds no thread.
//
// Limits, each answered over HTTP (JSON body, Connection: close) and told to
// the rejection observer (`status`, `reason`) for /metrics:
//   max_connections        more are answered 503 at once (plain HTTP; closed under TLS)
//   header_timeout_seconds head not complete this long after its first byte: 408
//   body_timeout_seconds   body not complete this long after the head: 408
//   max_header_bytes       431
//   max_body_bytes         a larger declared or chunked body: 413 before it is read
//   max_buffered_bytes     bodies being read wait (unread) while requests in
//                          memory add up to more; their deadline still runs
//   idle_timeout_seconds   an idle keep-alive connection is closed silently
//   write_timeout_seconds  a client that does not read its answer is dropped
// Ambiguous framing (Content-Length and Transfer-Encoding, ...) is a 400.
//
// Thread-safety: start()/stop()/wait() from the owning thread; stop() also
// from a signal-watching thread. Handlers run on the handler threads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "kennel/util/status.h"

namespace httplib {
class Server;
}

namespace kennel::serve {

struct ListenerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;   // 0 = any free port
  int threads = 32;  // requests handled at once
  int max_connections = 256;
  double header_timeout_seconds = 10;
  double body_timeout_seconds = 30;
  double idle_timeout_seconds = 5;
  double write_timeout_seconds = 30;
  int64_t max_header_bytes = 64 << 10;
  int64_t max_body_bytes = 6ll << 20;
  int64_t max_buffered_bytes = 256ll << 20;
  int max_requests_per_connection = 1000;  // then Connection: close
  // PEM files; both or neither. With them the listener speaks only TLS (1.2+).
  std::filesystem::path tls_cert;
  std::filesystem::path tls_key;

  // kInvalidArgument naming the option.
  Status validate() const;
};

class HttpListener {
 public:
  // Told about every request answered by the listener itself (408, 413, 431,
  // 400 framing, 503 too many connections), with a short snake_case reason.
  using RejectionObserver = std::function<void(int status, const std::string& reason)>;

  explicit HttpListener(ListenerOptions options);
  ~HttpListener();
  HttpListener(const HttpListener&) = delete;
  HttpListener& operator=(const HttpListener&) = delete;

  // Where handlers, loggers and error handlers are registered (before start()).
  httplib::Server& routes();
  void set_rejection_observer(RejectionObserver observer);

  // Loads the TLS files, binds and starts the threads. kInvalidArgument for
  // bad options or TLS files (naming them), kUnavailable when the address
  // cannot be bound (naming it).
  Status start();
  int port() const;
  // Stops accepting, closes connections that are not in a handler, lets
  // handlers finish and answer. Idempotent.
  void stop();
  // Blocks until every thread has finished after stop().
  void wait();

  // The number of connections open now (tests, /metrics).
  int open_connections() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kennel::serve

// Internals of http_listener.cpp: one client connection's state and its
// non-blocking I/O (plain TCP or TLS through OpenSSL), the TLS context, and
// the listening socket. Not an interface for anything but the listener.
// Thread-safety: a Connection belongs to one thread at a time (the poller,
// or the handler thread it was handed to).
#pragma once

#include <openssl/ssl.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "kennel/serve/request_framing.h"
#include "kennel/util/status.h"

namespace kennel::serve::detail {

using Clock = std::chrono::steady_clock;

enum class Phase {
  kHandshake,  // TLS handshake
  kHead,       // reading the request line and headers
  kBody,       // reading the body
  kIdle,       // keep-alive: waiting for the next request
  kHandler,    // a handler thread has it
  kLinger,     // answered and shut down for writing; reading what is left, then close
};

struct Connection {
  int fd = -1;
  SSL* ssl = nullptr;
  std::string remote_ip;
  std::string local_ip;
  int remote_port = 0;
  int local_port = 0;

  Phase phase = Phase::kHead;
  Clock::time_point deadline;
  std::string buffer;   // received and not yet consumed; a request starts at 0
  size_t head_end = 0;  // just past the head's CRLFCRLF; 0 while incomplete
  size_t head_scanned = 0;
  RequestFraming framing;
  size_t request_end = 0;   // just past the whole request; 0 while incomplete
  bool want_write = false;  // TLS must write before it can read on
  bool peer_closed = false;
  bool close_after_handler = false;
  int requests = 0;
  int64_t accounted = 0;  // bytes of `buffer` counted in the listener's budget

  void start_next_request() {
    buffer.erase(0, std::min(request_end, buffer.size()));
    // An idle connection must not keep the room its last 6 MB body needed.
    if (buffer.capacity() > (64 << 10) && buffer.size() < (16 << 10)) std::string(buffer).swap(buffer);
    head_end = head_scanned = request_end = 0;
    framing = RequestFraming{};
  }
};

enum class ReadResult { kData, kWouldBlock, kClosed, kError };

// Appends what can be read now without waiting, at most `limit` bytes, to
// the buffer; sets peer_closed at end of stream or on an error, want_write
// when TLS must write first.
ReadResult read_available(Connection& c, size_t limit);

// Waits until `fd` has one of `events`; false at `deadline` or on an error.
bool wait_for(int fd, short events, Clock::time_point deadline);

// Writes all of `data` before `deadline` (a past deadline: one attempt that
// does not wait). False when the client is gone or too slow.
bool write_all(Connection& c, std::string_view data, Clock::time_point deadline);

struct TlsContextDeleter {
  void operator()(SSL_CTX* context) const { SSL_CTX_free(context); }
};
using TlsContext = std::unique_ptr<SSL_CTX, TlsContextDeleter>;

// A TLS 1.2+ server context from PEM files. kInvalidArgument naming the flag
// and file: unreadable, not PEM, key not matching the certificate, or a key
// that every user of the machine may read.
Result<TlsContext> make_tls_context(const std::filesystem::path& cert,
                                    const std::filesystem::path& key);

struct ListeningSocket {
  int fd = -1;   // non-blocking, close-on-exec
  int port = 0;  // the one bound (port 0 asks for any)
};
// Binds host:port with SO_REUSEADDR (never SO_REUSEPORT, which would let a
// second server share the port) and listens. kUnavailable naming the address.
Result<ListeningSocket> listen_on(const std::string& host, int port);

}  // namespace kennel::serve::detail

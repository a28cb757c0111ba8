#include "kennel/serve/http_listener.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "kennel/serve/detail/connection.h"
#include "kennel/serve/detail/request_stream.h"
#include "kennel/serve/request_framing.h"

namespace kennel::serve {

namespace {

using detail::Clock;
using detail::Connection;
using detail::listen_on;
using detail::make_tls_context;
using detail::Phase;
using detail::read_available;
using detail::ReadResult;
using detail::RequestStream;
using detail::Router;
using detail::TlsContext;
using detail::write_all;

Clock::duration seconds(double value) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(value));
}

const char* reason_phrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 400:
      return "Bad Request";
    case 408:
      return "Request Timeout";
    case 413:
      return "Payload Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

}  // namespace

// ---- options ---------------------------------------------------------------------

Status ListenerOptions::validate() const {
  auto positive = [](double value) { return std::isfinite(value) && value > 0; };
  if (port < 0 || port > 65535)
    return invalid_argument("--port must be in [0, 65535], got {}", port);
  if (threads < 1 || threads > 1024) {
    return invalid_argument("--http-threads must be in [1, 1024], got {}", threads);
  }
  // httplib refuses sockets numbered at or above FD_SETSIZE (1024).
  if (max_connections < 1 || max_connections > 900) {
    return invalid_argument("--max-connections must be in [1, 900], got {}", max_connections);
  }
  if (!positive(header_timeout_seconds)) {
    return invalid_argument("--header-timeout must be > 0 seconds, got {}", header_timeout_seconds);
  }
  if (!positive(body_timeout_seconds)) {
    return invalid_argument("--body-timeout must be > 0 seconds, got {}", body_timeout_seconds);
  }
  if (!positive(idle_timeout_seconds)) {
    return invalid_argument("--idle-timeout must be > 0 seconds, got {}", idle_timeout_seconds);
  }
  if (!positive(write_timeout_seconds)) {
    return invalid_argument("write_timeout_seconds must be > 0, got {}", write_timeout_seconds);
  }
  if (max_header_bytes < 1024) {
    return invalid_argument("max_header_bytes must be >= 1024, got {}", max_header_bytes);
  }
  if (max_body_bytes < 1) return invalid_argument("--max-body must be > 0, got {}", max_body_bytes);
  if (max_buffered_bytes < max_body_bytes + max_header_bytes) {
    return invalid_argument(
        "max_buffered_bytes ({}) must hold at least one largest request (--max-body {} plus {} "
        "bytes of headers)",
        max_buffered_bytes, max_body_bytes, max_header_bytes);
  }
  if (max_requests_per_connection < 1) {
    return invalid_argument("max_requests_per_connection must be >= 1, got {}",
                            max_requests_per_connection);
  }
  if (tls_cert.empty() != tls_key.empty()) {
    return invalid_argument("--tls-cert and --tls-key go together: give both, or neither");
  }
  return {};
}

// ---- the listener -------------------------------------------------------------------

class HttpListener::Impl {
 public:
  explicit Impl(ListenerOptions options) : options_(std::move(options)) {
    router_.set_keep_alive_timeout(static_cast<time_t>(std::ceil(options_.idle_timeout_seconds)));
    router_.set_keep_alive_max_count(static_cast<size_t>(options_.max_requests_per_connection));
    router_.set_payload_max_length(static_cast<size_t>(options_.max_body_bytes));
  }
  ~Impl() {
    stop();
    wait();
    if (listen_fd_ >= 0) ::close(listen_fd_);
    if (wake_fd_ >= 0) ::close(wake_fd_);
  }

  Router router_;
  RejectionObserver observer_;

  Status start();
  int port() const { return port_; }
  void stop() {
    stopping_ = true;
    wake();
  }
  void wait() {
    if (poller_.joinable()) poller_.join();
    {
      std::lock_guard lock(queue_mutex_);
      workers_stop_ = true;
    }
    queue_ready_.notify_all();
    for (auto& worker : workers_) {
      if (worker.joinable()) worker.join();
    }
    workers_.clear();
    // Only after an abnormal poller exit is anything left here; close it.
    for (auto& c : queue_) close(*c);
    queue_.clear();
    for (auto& c : returned_) close(*c);
    returned_.clear();
  }
  int open_connections() const { return open_.load(); }

 private:
  using Owned = std::unique_ptr<Connection>;

  void wake() {
    if (wake_fd_ < 0) return;
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t written = ::write(wake_fd_, &one, sizeof(one));
  }

  void poll_loop();
  void accept_new(std::vector<Owned>& connections);
  // Reads and advances one connection; false once it is closed or handed over.
  bool service(Owned& c, bool readable);
  bool advance(Owned& c);
  bool dispatch(Owned& c);
  void reject(Connection& c, int status, const char* reason, const std::string& detail);
  void linger(Connection& c);
  void close(Connection& c);
  void account(Connection& c);
  void take_returned(std::vector<Owned>& connections);

  void worker_loop();
  void handle(Owned c);

  const ListenerOptions options_;
  TlsContext tls_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> open_{0};
  std::atomic<int64_t> buffered_{0};
  int lingering_ = 0;
  int in_handlers_ = 0;  // poller-only count of connections handed over and not yet returned
  std::thread poller_;
  std::vector<std::thread> workers_;

  std::mutex queue_mutex_;
  std::condition_variable queue_ready_;
  std::deque<Owned> queue_;  // complete requests waiting for a handler thread
  bool workers_stop_ = false;

  std::mutex returned_mutex_;
  std::vector<Owned> returned_;  // from handler threads back to the poller
};

Status HttpListener::Impl::start() {
  KENNEL_RETURN_IF_ERROR(options_.validate());
  std::signal(SIGPIPE, SIG_IGN);  // a client gone mid-answer is an error return, not a crash
  if (!options_.tls_cert.empty()) {
    auto context = make_tls_context(options_.tls_cert, options_.tls_key);
    if (!context.ok()) return context.status();
    tls_ = std::move(context).value();
  }
  auto listening = listen_on(options_.host, options_.port);
  if (!listening.ok()) return listening.status();
  listen_fd_ = listening->fd;
  port_ = listening->port;
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) return internal_error("eventfd failed: {}", std::strerror(errno));
  for (int i = 0; i < options_.threads; ++i) workers_.emplace_back([this] { worker_loop(); });
  poller_ = std::thread([this] { poll_loop(); });
  return {};
}

void HttpListener::Impl::account(Connection& c) {
  const auto size = static_cast<int64_t>(c.buffer.size());
  buffered_ += size - c.accounted;
  c.accounted = size;
}

void HttpListener::Impl::close(Connection& c) {
  if (c.ssl) {
    if (!c.peer_closed && c.phase != Phase::kHandshake) SSL_shutdown(c.ssl);  // best effort
    SSL_free(c.ssl);
    c.ssl = nullptr;
  }
  if (c.fd >= 0) ::close(c.fd);
  c.fd = -1;
  if (c.phase == Phase::kLinger) --lingering_;
  c.buffer.clear();
  c.buffer.shrink_to_fit();
  account(c);
  --open_;
}

void HttpListener::Impl::linger(Connection& c) {
  // Closing with unread bytes would make the kernel send a reset that can
  // overtake the answer; read and drop them for a moment first.
  if (c.ssl) {
    SSL_shutdown(c.ssl);
  } else {
    ::shutdown(c.fd, SHUT_WR);
  }
  c.phase = Phase::kLinger;
  c.deadline = Clock::now() + std::chrono::seconds(1);
  c.buffer.clear();
  account(c);
  ++lingering_;
}

void HttpListener::Impl::reject(Connection& c, int status, const char* reason,
                                const std::string& detail) {
  const std::string kind = status == 408   ? "request timeout"
                           : status == 413 ? "payload too large"
                           : status == 431 ? "headers too large"
                           : status == 503 ? "unavailable"
                                           : "bad request";
  const std::string body = nlohmann::json{{"error", kind}, {"detail", detail}}.dump() + "\n";
  std::string answer = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n"
      "Connection: close\r\n{}\r\n{}",
      status, reason_phrase(status), body.size(), status == 503 ? "Retry-After: 1\r\n" : "", body);
  // One attempt without waiting: the answer is small and the socket buffer empty.
  write_all(c, answer, Clock::time_point{});
  if (observer_) observer_(status, reason);
  if (lingering_ >= 64) {
    close(c);
  } else {
    linger(c);
  }
}

void HttpListener::Impl::accept_new(std::vector<Owned>& connections) {
  for (int accepted = 0; accepted < 64; ++accepted) {
    sockaddr_storage peer{};
    socklen_t length = sizeof(peer);
    const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &length,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      return;  // EAGAIN, or out of descriptors: the rest wait in the backlog
    }
    ++open_;
    auto c = std::make_unique<Connection>();
    c->fd = fd;
    const int yes = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
    char host[NI_MAXHOST] = {};
    char service[NI_MAXSERV] = {};
    if (::getnameinfo(reinterpret_cast<sockaddr*>(&peer), length, host, sizeof(host), service,
                      sizeof(service), NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
      c->remote_ip = host;
      c->remote_port = std::atoi(service);
    }
    sockaddr_storage local{};
    socklen_t local_length = sizeof(local);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_length) == 0 &&
        ::getnameinfo(reinterpret_cast<sockaddr*>(&local), local_length, host, sizeof(host),
                      service, sizeof(service), NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
      c->local_ip = host;
      c->local_port = std::atoi(service);
    }
    c->deadline = Clock::now() + seconds(options_.header_timeout_seconds);
    if (open_ - lingering_ > options_.max_connections) {
      if (tls_) {
        close(*c);  // no handshake for a connection that will be refused anyway
      } else {
        reject(*c, 503, "too_many_connections",
               fmt::format("the server has {} connections open (--max-connections): retry shortly",
                           options_.max_connections));
        if (c->fd >= 0) connections.push_back(std::move(c));
      }
      continue;
    }
    if (tls_) {
      c->ssl = SSL_new(tls_.get());
      if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
        close(*c);
        continue;
      }
      SSL_set_accept_state(c->ssl);
      c->phase = Phase::kHandshake;
    }
    connections.push_back(std::move(c));
  }
}

bool HttpListener::Impl::dispatch(Owned& c) {
  c->phase = Phase::kHandler;
  ++in_handlers_;
  {
    std::lock_guard lock(queue_mutex_);
    queue_.push_back(std::move(c));
  }
  queue_ready_.notify_one();
  return false;
}

// Moves a connection with bytes in its buffer as far as they allow.
bool HttpListener::Impl::advance(Owned& c) {
  Connection& conn = *c;
  if (conn.phase == Phase::kIdle && !conn.buffer.empty()) {
    conn.phase = Phase::kHead;
    conn.deadline = Clock::now() + seconds(options_.header_timeout_seconds);
  }
  if (conn.phase == Phase::kHead) {
    const auto head_end = find_head_end(conn.buffer, conn.head_scanned);
    if (!head_end) {
      if (static_cast<int64_t>(conn.buffer.size()) > options_.max_header_bytes) {
        reject(conn, 431, "headers_too_large",
               fmt::format("the request line and headers are larger than {} bytes",
                           options_.max_header_bytes));
        return true;
      }
      conn.head_scanned = conn.buffer.size() < 3 ? 0 : conn.buffer.size() - 3;
      return true;
    }
    if (static_cast<int64_t>(*head_end) > options_.max_header_bytes) {
      reject(conn, 431, "headers_too_large",
             fmt::format("the request line and headers are larger than {} bytes",
                         options_.max_header_bytes));
      return true;
    }
    auto framing = parse_framing(std::string_view(conn.buffer).substr(0, *head_end));
    if (!framing.ok()) {
      reject(conn, 400, "malformed_http", framing.status().message());
      return true;
    }
    conn.framing = *framing;
    conn.head_end = *head_end;
    const auto max_body = static_cast<uint64_t>(options_.max_body_bytes);
    if (conn.framing.body == RequestFraming::Body::kNone) {
      conn.request_end = conn.head_end;
      return dispatch(c);
    }
    if (conn.framing.body == RequestFraming::Body::kLength &&
        conn.framing.content_length > max_body) {
      reject(conn, 413, "payload_too_large",
             fmt::format("the request body ({} bytes) is larger than the server's --max-body limit "
                         "of {} bytes",
                         conn.framing.content_length, max_body));
      return true;
    }
    if (conn.framing.expects_continue) {
      // Answered here, so httplib must not answer it again.
      conn.buffer.erase(conn.framing.expect_line_begin,
                        conn.framing.expect_line_end - conn.framing.expect_line_begin);
      conn.head_end -= conn.framing.expect_line_end - conn.framing.expect_line_begin;
      account(conn);
      write_all(conn, "HTTP/1.1 100 Continue\r\n\r\n", Clock::now() + std::chrono::seconds(1));
    }
    conn.phase = Phase::kBody;
    conn.deadline = Clock::now() + seconds(options_.body_timeout_seconds);
    if (conn.framing.body == RequestFraming::Body::kLength) {
      conn.buffer.reserve(conn.head_end + conn.framing.content_length);  // one allocation, not doublings
    }
  }
  if (conn.phase == Phase::kBody) {
    const std::string_view body = std::string_view(conn.buffer).substr(conn.head_end);
    if (conn.framing.body == RequestFraming::Body::kLength) {
      if (body.size() < conn.framing.content_length) return true;
      conn.request_end = conn.head_end + conn.framing.content_length;
      return dispatch(c);
    }
    size_t end = 0;
    switch (scan_chunked_body(body, static_cast<uint64_t>(options_.max_body_bytes),
                              static_cast<uint64_t>(options_.max_header_bytes), end)) {
      case ChunkedScan::kIncomplete:
        return true;
      case ChunkedScan::kComplete:
        conn.request_end = conn.head_end + end;
        return dispatch(c);
      case ChunkedScan::kMalformed:
        reject(conn, 400, "malformed_http", "the chunked request body is malformed");
        return true;
      case ChunkedScan::kTooLarge:
        reject(conn, 413, "payload_too_large",
               fmt::format("the chunked request body is larger than the server's --max-body limit "
                           "of {} bytes",
                           options_.max_body_bytes));
        return true;
    }
  }
  return true;
}

bool HttpListener::Impl::service(Owned& c, bool readable) {
  Connection& conn = *c;
  const auto now = Clock::now();
  if (conn.phase == Phase::kHandshake && readable) {
    ERR_clear_error();
    const int result = SSL_do_handshake(conn.ssl);
    if (result == 1) {
      conn.phase = Phase::kHead;
      conn.want_write = false;
    } else {
      const int error = SSL_get_error(conn.ssl, result);
      if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) {
        conn.peer_closed = true;
        close(conn);
        return false;
      }
      conn.want_write = error == SSL_ERROR_WANT_WRITE;
    }
  }
  if (readable && conn.phase != Phase::kHandshake) {
    size_t limit = 256 << 10;
    if (conn.phase == Phase::kHead || conn.phase == Phase::kIdle) {
      limit = static_cast<size_t>(options_.max_header_bytes) + 1;
    } else if (conn.phase == Phase::kBody) {
      const bool over_budget =
          buffered_.load() > options_.max_buffered_bytes && conn.buffer.size() > conn.head_end;
      if (over_budget) limit = 0;
      if (conn.framing.body == RequestFraming::Body::kLength) {
        const size_t needed = conn.head_end + conn.framing.content_length - conn.buffer.size();
        limit = std::min(limit, needed);
      }
    }
    if (limit > 0) {
      const ReadResult read = read_available(conn, limit);
      account(conn);
      if (conn.phase == Phase::kLinger) {
        conn.buffer.clear();
        account(conn);
        if (read == ReadResult::kClosed || read == ReadResult::kError) {
          close(conn);
          return false;
        }
        return true;
      }
      if (read == ReadResult::kClosed || read == ReadResult::kError) {
        close(conn);  // the client left before its request was complete
        return false;
      }
      if (!advance(c)) return false;  // handed to a handler
      if (c->phase == Phase::kLinger) return true;
    }
  }
  if (now >= conn.deadline) {
    switch (conn.phase) {
      case Phase::kHead:
        if (conn.buffer.empty()) {
          close(conn);  // connected and never said anything
        } else {
          reject(conn, 408, "header_timeout",
                 fmt::format("the request headers did not arrive within {} s (--header-timeout)",
                             options_.header_timeout_seconds));
        }
        return conn.fd >= 0;
      case Phase::kBody:
        reject(conn, 408, "body_timeout",
               fmt::format("the request body did not arrive within {} s (--body-timeout)",
                           options_.body_timeout_seconds));
        return conn.fd >= 0;
      default:
        close(conn);  // idle keep-alive, handshake, or done lingering
        return false;
    }
  }
  return true;
}

void HttpListener::Impl::take_returned(std::vector<Owned>& connections) {
  std::vector<Owned> returned;
  {
    std::lock_guard lock(returned_mutex_);
    returned.swap(returned_);
  }
  for (auto& c : returned) {
    --in_handlers_;
    if (c->close_after_handler || stopping_) {
      if (!c->buffer.empty() && !c->peer_closed) {
        linger(*c);
        connections.push_back(std::move(c));
      } else {
        close(*c);
      }
      continue;
    }
    c->phase = Phase::kIdle;
    c->deadline = Clock::now() + seconds(options_.idle_timeout_seconds);
    if (!c->buffer.empty() && !advance(c)) continue;  // a pipelined request, handed over again
    connections.push_back(std::move(c));
  }
}

void HttpListener::Impl::poll_loop() {
  std::vector<Owned> connections;
  std::vector<pollfd> entries;
  bool listening = true;
  while (true) {
    take_returned(connections);
    if (stopping_) {
      if (listening) {
        ::close(listen_fd_);
        listen_fd_ = -1;
        listening = false;
      }
      for (auto& c : connections) close(*c);
      connections.clear();
      if (in_handlers_ == 0) break;
    }
    entries.clear();
    entries.push_back({wake_fd_, POLLIN, 0});
    if (listening) entries.push_back({listen_fd_, POLLIN, 0});
    const size_t first_connection = entries.size();
    auto next_deadline = Clock::now() + std::chrono::seconds(1);
    bool decrypted_waiting = false;
    for (const auto& c : connections) {
      short events = c->want_write ? POLLOUT : POLLIN;
      const bool over_budget = c->phase == Phase::kBody &&
                               buffered_.load() > options_.max_buffered_bytes &&
                               c->buffer.size() > c->head_end;
      if (over_budget) events = 0;
      entries.push_back({c->fd, events, 0});
      next_deadline = std::min(next_deadline, c->deadline);
      if (c->ssl && SSL_pending(c->ssl) > 0) decrypted_waiting = true;
    }
    const auto wait_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(next_deadline - Clock::now()).count();
    const int timeout =
        decrypted_waiting ? 0 : static_cast<int>(std::clamp<int64_t>(wait_ms + 1, 0, 1000));
    const int ready = ::poll(entries.data(), entries.size(), timeout);
    if (ready < 0 && errno != EINTR) break;
    if (entries[0].revents & POLLIN) {
      uint64_t ignored = 0;
      [[maybe_unused]] const ssize_t n = ::read(wake_fd_, &ignored, sizeof(ignored));
    }
    const size_t count = connections.size();
    for (size_t i = 0; i < count; ++i) {
      const short revents = entries[first_connection + i].revents;
      const bool readable =
          revents != 0 || (connections[i]->ssl && SSL_pending(connections[i]->ssl) > 0);
      if (!service(connections[i], readable)) connections[i].reset();
    }
    std::erase_if(connections, [](const Owned& c) { return c == nullptr || c->fd < 0; });
    if (listening && (entries[1].revents & POLLIN)) accept_new(connections);
  }
  for (auto& c : connections) close(*c);
}

void HttpListener::Impl::worker_loop() {
  while (true) {
    Owned c;
    {
      std::unique_lock lock(queue_mutex_);
      queue_ready_.wait(lock, [this] { return workers_stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      c = std::move(queue_.front());
      queue_.pop_front();
    }
    handle(std::move(c));
  }
}

void HttpListener::Impl::handle(Owned c) {
  ++c->requests;
  const bool close_after =
      stopping_ || c->peer_closed || c->requests >= options_.max_requests_per_connection;
  bool connection_closed = false;
  bool answered = false;
  {
    RequestStream stream(*c, seconds(options_.write_timeout_seconds));
    try {
      answered = router_.handle(stream, close_after, connection_closed);
    } catch (...) {
      answered = false;  // httplib's exception handler answers what it can; never a dead thread
    }
    answered = stream.flush() && answered;
  }
  // The request is over whether or not its handler read all of it.
  c->start_next_request();
  account(*c);
  c->close_after_handler = !answered || connection_closed || close_after;
  {
    std::lock_guard lock(returned_mutex_);
    returned_.push_back(std::move(c));
  }
  wake();
}

// ---- the public face ------------------------------------------------------------------

HttpListener::HttpListener(ListenerOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
HttpListener::~HttpListener() = default;
httplib::Server& HttpListener::routes() {
  return impl_->router_;
}
void HttpListener::set_rejection_observer(RejectionObserver observer) {
  impl_->observer_ = std::move(observer);
}
Status HttpListener::start() {
  return impl_->start();
}
int HttpListener::port() const {
  return impl_->port();
}
void HttpListener::stop() {
  impl_->stop();
}
void HttpListener::wait() {
  impl_->wait();
}
int HttpListener::open_connections() const {
  return impl_->open_connections();
}

}  // namespace kennel::serve

#include "kennel/serve/detail/connection.h"

#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace kennel::serve::detail {

// ---- TLS ---------------------------------------------------------------------

namespace {

std::string openssl_errors() {
  std::string out;
  while (const unsigned long code = ERR_get_error()) {
    char text[256];
    ERR_error_string_n(code, text, sizeof(text));
    out += (out.empty() ? "" : "; ") + std::string(text);
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

}  // namespace

Result<TlsContext> make_tls_context(const std::filesystem::path& cert,
                                    const std::filesystem::path& key) {
  struct stat info {};
  if (::stat(key.c_str(), &info) == 0 && (info.st_mode & S_IROTH)) {
    return invalid_argument(
        "--tls-key '{}' is readable by every user of this machine: run `chmod o-r {}` (or "
        "chmod 600)",
        key.string(), key.string());
  }
  ERR_clear_error();
  TlsContext context(SSL_CTX_new(TLS_server_method()));
  if (!context) return internal_error("cannot create a TLS context: {}", openssl_errors());
  SSL_CTX_set_min_proto_version(context.get(), TLS1_2_VERSION);
  SSL_CTX_set_mode(context.get(),
                   SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (SSL_CTX_use_certificate_chain_file(context.get(), cert.c_str()) != 1) {
    return invalid_argument("--tls-cert '{}' is not a readable PEM certificate (chain): {}",
                            cert.string(), openssl_errors());
  }
  if (SSL_CTX_use_PrivateKey_file(context.get(), key.c_str(), SSL_FILETYPE_PEM) != 1) {
    return invalid_argument("--tls-key '{}' is not a readable PEM private key: {}", key.string(),
                            openssl_errors());
  }
  if (SSL_CTX_check_private_key(context.get()) != 1) {
    return invalid_argument("--tls-key '{}' does not belong to the certificate in --tls-cert '{}'",
                            key.string(), cert.string());
  }
  return context;
}

// ---- one connection ------------------------------------------------------------

// Appends what can be read now, at most `limit` bytes, to the buffer.
ReadResult read_available(Connection& c, size_t limit) {
  char chunk[16 << 10];
  bool got = false;
  size_t total = 0;
  while (total < limit) {
    const size_t want = std::min(sizeof(chunk), limit - total);
    if (c.ssl) {
      size_t n = 0;
      ERR_clear_error();
      const int result = SSL_read_ex(c.ssl, chunk, want, &n);
      if (result == 1) {
        c.buffer.append(chunk, n);
        total += n;
        got = true;
        continue;
      }
      switch (SSL_get_error(c.ssl, result)) {
        case SSL_ERROR_WANT_READ:
          c.want_write = false;
          return got ? ReadResult::kData : ReadResult::kWouldBlock;
        case SSL_ERROR_WANT_WRITE:
          c.want_write = true;
          return got ? ReadResult::kData : ReadResult::kWouldBlock;
        case SSL_ERROR_ZERO_RETURN:
          c.peer_closed = true;
          return got ? ReadResult::kData : ReadResult::kClosed;
        default:
          c.peer_closed = true;
          return got ? ReadResult::kData : ReadResult::kError;
      }
    }
    const ssize_t n = ::recv(c.fd, chunk, want, MSG_DONTWAIT);
    if (n > 0) {
      c.buffer.append(chunk, static_cast<size_t>(n));
      total += static_cast<size_t>(n);
      got = true;
      continue;
    }
    if (n == 0) {
      c.peer_closed = true;
      return got ? ReadResult::kData : ReadResult::kClosed;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return got ? ReadResult::kData : ReadResult::kWouldBlock;
    }
    c.peer_closed = true;
    return got ? ReadResult::kData : ReadResult::kError;
  }
  return ReadResult::kData;
}

bool wait_for(int fd, short events, Clock::time_point deadline) {
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd entry{fd, events, 0};
    const int ready = ::poll(&entry, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (ready > 0) return (entry.revents & events) != 0;
    if (ready < 0 && errno != EINTR) return false;
  }
}

// Writes everything before `deadline` (0 timeout: one non-blocking attempt). False on failure.
bool write_all(Connection& c, std::string_view data, Clock::time_point deadline) {
  size_t done = 0;
  while (done < data.size()) {
    short wanted = POLLOUT;
    if (c.ssl) {
      size_t n = 0;
      ERR_clear_error();
      const int result = SSL_write_ex(c.ssl, data.data() + done, data.size() - done, &n);
      if (result == 1) {
        done += n;
        continue;
      }
      const int error = SSL_get_error(c.ssl, result);
      if (error == SSL_ERROR_WANT_READ) {
        wanted = POLLIN;
      } else if (error != SSL_ERROR_WANT_WRITE) {
        return false;
      }
    } else {
      const ssize_t n =
          ::send(c.fd, data.data() + done, data.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        done += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return false;
    }
    if (!wait_for(c.fd, wanted, deadline)) return false;
  }
  return true;
}

Result<ListeningSocket> listen_on(const std::string& host_name, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string port_text = std::to_string(port);
  const char* host = host_name.empty() ? nullptr : host_name.c_str();
  if (const int error = ::getaddrinfo(host, port_text.c_str(), &hints, &found); error != 0) {
    return Status(ErrorCode::kUnavailable,
                  fmt::format("cannot listen on {}:{}: {}: choose another --host", host_name, port,
                              gai_strerror(error)));
  }
  std::string why = "no address";
  ListeningSocket listening;
  for (addrinfo* candidate = found; candidate; candidate = candidate->ai_next) {
    const int fd =
        ::socket(candidate->ai_family, candidate->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                 candidate->ai_protocol);
    if (fd < 0) continue;
    // SO_REUSEADDR restarts cleanly; SO_REUSEPORT (httplib's default) would let a
    // second server bind the same port and silently take a share of its connections.
    const int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    if (::bind(fd, candidate->ai_addr, candidate->ai_addrlen) == 0 && ::listen(fd, 511) == 0) {
      sockaddr_storage bound{};
      socklen_t length = sizeof(bound);
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length);
      listening.port =
          ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
      listening.fd = fd;
      break;
    }
    why = std::strerror(errno);
    ::close(fd);
  }
  ::freeaddrinfo(found);
  if (listening.fd < 0) {
    return Status(ErrorCode::kUnavailable,
                  fmt::format("cannot listen on {}:{} ({}): choose another --port or --host",
                              host_name, port, why));
  }
  return listening;
}

}  // namespace kennel::serve::detail

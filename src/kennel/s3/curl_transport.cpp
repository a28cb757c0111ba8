// The libcurl HttpTransport (transport.h).
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "kennel/s3/transport.h"
#include "kennel/util/text.h"

namespace kennel::s3 {

std::string HttpResponse::header(const std::string& lower_case_name) const {
  const auto found = headers.find(lower_case_name);
  return found == headers.end() ? "" : found->second;
}

namespace {

constexpr size_t kErrorBodyLimit = 64 << 10;

long milliseconds(double seconds) {
  // libcurl reads 0 as "no limit": never round a tiny positive timeout down to it.
  if (seconds <= 0) return 0;
  return static_cast<long>(std::max(1.0, std::min(seconds * 1000, 1e12)));
}


std::string_view trim_header_value(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r' ||
                           text.back() == '\n')) {
    text.remove_suffix(1);
  }
  return text;
}

// The state of one exchange, shared with libcurl's callbacks.
struct Exchange {
  CURL* curl = nullptr;
  const RequestBody* body = nullptr;
  uint64_t sent = 0;  // bytes of the body handed to libcurl
  BodySink* sink = nullptr;
  bool headers_announced = false;
  HttpExchange result;
  std::string read_error;
  const ConnectionCheck* connection_check = nullptr;
};

// libcurl calls this for every connection it opens, after DNS.
curl_socket_t open_checked_socket(void* user, curlsocktype /*purpose*/, curl_sockaddr* address) {
  auto* exchange = static_cast<Exchange*>(user);
  const unsigned char* bytes = nullptr;
  if (address->family == AF_INET) {
    bytes = reinterpret_cast<const unsigned char*>(
        &reinterpret_cast<const sockaddr_in*>(&address->addr)->sin_addr);
  } else if (address->family == AF_INET6) {
    bytes = reinterpret_cast<const unsigned char*>(
        &reinterpret_cast<const sockaddr_in6*>(&address->addr)->sin6_addr);
  } else {
    exchange->result.refused_connection = "not an IP address";
    return CURL_SOCKET_BAD;
  }
  std::string refusal = (*exchange->connection_check)(address->family, bytes);
  if (!refusal.empty()) {
    if (exchange->result.refused_connection.empty()) {
      exchange->result.refused_connection = std::move(refusal);
    }
    return CURL_SOCKET_BAD;
  }
  return ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto* exchange = static_cast<Exchange*>(user);
  const size_t n = size * count;
  const std::string_view line(data, n);
  if (line.rfind("HTTP/", 0) == 0) {
    // A new status line (after 100 Continue, or the first): start over.
    exchange->result.response.headers.clear();
    return n;
  }
  const size_t colon = line.find(':');
  if (colon != std::string_view::npos) {
    exchange->result.response.headers[ascii_lower(trim_header_value(line.substr(0, colon)))] =
        std::string(trim_header_value(line.substr(colon + 1)));
  }
  return n;
}

size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto* exchange = static_cast<Exchange*>(user);
  const size_t n = size * count;
  HttpResponse& response = exchange->result.response;
  curl_easy_getinfo(exchange->curl, CURLINFO_RESPONSE_CODE, &response.status);
  if (!is_success(response.status) || !exchange->sink) {
    if (!is_success(response.status)) {
      const size_t room = kErrorBodyLimit - std::min(kErrorBodyLimit, response.body.size());
      response.body.append(data, std::min(n, room));
      return n;  // the rest of an oversized error body is read and dropped
    }
    response.body.append(data, n);
    return n;
  }
  if (!exchange->headers_announced) {
    exchange->headers_announced = true;
    if (!exchange->sink->on_headers(response)) {
      exchange->result.sink_refused = true;
      return 0;  // anything but n aborts the transfer
    }
  }
  if (!exchange->sink->on_data(std::string_view(data, n))) {
    exchange->result.sink_refused = true;
    return 0;
  }
  return n;
}

size_t on_read(char* buffer, size_t size, size_t count, void* user) {
  auto* exchange = static_cast<Exchange*>(user);
  const RequestBody& body = *exchange->body;
  const uint64_t left = body.size() - exchange->sent;
  const size_t n = static_cast<size_t>(std::min<uint64_t>(left, size * count));
  if (n == 0) return 0;
  if (!body.from_file()) {
    std::memcpy(buffer, body.bytes.data() + exchange->sent, n);
    exchange->sent += n;
    return n;
  }
  const ssize_t got = ::pread(body.fd, buffer, n, static_cast<off_t>(body.offset + exchange->sent));
  if (got <= 0) {
    exchange->read_error = got == 0 ? "the file became shorter while it was being uploaded"
                                    : std::string("reading the file: ") + std::strerror(errno);
    return CURL_READFUNC_ABORT;
  }
  exchange->sent += static_cast<uint64_t>(got);
  return static_cast<size_t>(got);
}

int on_seek(void* user, curl_off_t offset, int origin) {
  auto* exchange = static_cast<Exchange*>(user);
  if (origin != SEEK_SET || offset < 0 || static_cast<uint64_t>(offset) > exchange->body->size()) {
    return CURL_SEEKFUNC_CANTSEEK;
  }
  exchange->sent = static_cast<uint64_t>(offset);
  return CURL_SEEKFUNC_OK;
}

class CurlTransport final : public HttpTransport {
 public:
  explicit CurlTransport(TransportOptions options) : options_(std::move(options)) {}
  ~CurlTransport() override {
    for (CURL* curl : idle_) curl_easy_cleanup(curl);
  }

  HttpExchange perform(const HttpRequest& request, BodySink* sink) override {
    CURL* curl = borrow();
    if (!curl) {
      HttpExchange failed;
      failed.transport_error = CURLE_FAILED_INIT;
      failed.transport_message = "curl_easy_init failed";
      return failed;
    }
    Exchange exchange;
    exchange.curl = curl;
    exchange.body = &request.body;
    exchange.sink = sink;
    std::array<char, CURL_ERROR_SIZE> error_buffer{};

    curl_slist* headers = nullptr;
    std::vector<std::string> lines;
    lines.reserve(request.headers.size() + 2);
    for (const HttpHeader& header : request.headers) {
      lines.push_back(header.name + ": " + header.value);
    }
    // No "Expect: 100-continue" round trip, and no Accept header nobody signs.
    lines.emplace_back("Expect:");
    lines.emplace_back("Accept:");
    for (const std::string& line : lines) headers = curl_slist_append(headers, line.c_str());

    curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer.data());
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);  // keys may hold '.' and '..' segments
    curl_easy_setopt(curl, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
    curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "kennel");
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                     milliseconds(options_.connect_timeout_seconds));
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, milliseconds(options_.total_timeout_seconds));
    if (options_.stall_timeout_seconds > 0) {
      curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
      curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME,
                       std::max(1L, static_cast<long>(options_.stall_timeout_seconds)));
    }
    if (!options_.ca_bundle.empty())
      curl_easy_setopt(curl, CURLOPT_CAINFO, options_.ca_bundle.c_str());
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &exchange);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &exchange);
    if (options_.connection_check) {
      exchange.connection_check = &options_.connection_check;
      curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, &open_checked_socket);
      curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, &exchange);
    }

    if (request.method == "HEAD") {
      curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    } else if (request.method != "GET") {
      // Every other method sends a body (possibly empty), so Content-Length is always set.
      curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE,
                       static_cast<curl_off_t>(request.body.size()));
      curl_easy_setopt(curl, CURLOPT_READFUNCTION, &on_read);
      curl_easy_setopt(curl, CURLOPT_READDATA, &exchange);
      curl_easy_setopt(curl, CURLOPT_SEEKFUNCTION, &on_seek);
      curl_easy_setopt(curl, CURLOPT_SEEKDATA, &exchange);
      if (request.method != "PUT") {
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
      }
    }

    const CURLcode code = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &exchange.result.response.status);
    if (code != CURLE_OK) {
      exchange.result.transport_error = static_cast<int>(code);
      exchange.result.transport_message =
          !exchange.result.refused_connection.empty() ? exchange.result.refused_connection
          : !exchange.read_error.empty()              ? exchange.read_error
          : error_buffer[0]                           ? error_buffer.data()
                                                      : curl_easy_strerror(code);
    } else if (sink && is_success(exchange.result.response.status) && !exchange.headers_announced) {
      // An empty 2xx body: the sink still hears about the response.
      exchange.headers_announced = true;
      if (!sink->on_headers(exchange.result.response)) exchange.result.sink_refused = true;
    }
    curl_slist_free_all(headers);
    give_back(curl);
    return std::move(exchange.result);
  }

 private:
  CURL* borrow() {
    {
      std::lock_guard lock(mutex_);
      if (!idle_.empty()) {
        CURL* curl = idle_.back();
        idle_.pop_back();
        return curl;
      }
    }
    return curl_easy_init();
  }

  void give_back(CURL* curl) {
    // reset() keeps the handle's connection cache: the next request reuses the connection.
    curl_easy_reset(curl);
    std::lock_guard lock(mutex_);
    if (idle_.size() < kMaxIdleHandles) {
      idle_.push_back(curl);
      return;
    }
    curl_easy_cleanup(curl);
  }

  static constexpr size_t kMaxIdleHandles = 64;
  const TransportOptions options_;
  std::mutex mutex_;
  std::vector<CURL*> idle_;
};

}  // namespace

Result<std::unique_ptr<HttpTransport>> make_curl_transport(const TransportOptions& options) {
  static std::once_flag once;
  static CURLcode init_result = CURLE_OK;
  std::call_once(once, [] { init_result = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (init_result != CURLE_OK) {
    return internal_error("curl_global_init failed: {}", curl_easy_strerror(init_result));
  }
  return std::unique_ptr<HttpTransport>(std::make_unique<CurlTransport>(options));
}

}  // namespace kennel::s3

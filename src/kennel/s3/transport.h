// One HTTP exchange at a time, and nothing else: no signing, no retries, no
// S3 knowledge. S3Client builds and signs requests and decides about retries;
// the transport only moves bytes. It is an interface so that tests can stand
// in a scripted server (a 503, then a connection reset, then the body) and
// check the client's retry and resume logic without a network.
//
// The libcurl transport keeps a small pool of easy handles (each with its own
// connection cache, so kept-alive connections are reused across calls) and is
// safe to call from many threads at once: each call borrows one handle.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kennel/s3/sigv4.h"
#include "kennel/util/status.h"

namespace kennel::s3 {

// A request body: bytes in memory, or a byte range of an open file (streamed,
// re-read from `offset` on every attempt).
struct RequestBody {
  std::string_view bytes;  // in memory; the caller keeps it alive during perform()
  int fd = -1;             // or a file
  uint64_t offset = 0;
  uint64_t length = 0;

  bool from_file() const { return fd >= 0; }
  uint64_t size() const { return from_file() ? length : bytes.size(); }
};

struct HttpRequest {
  std::string method;  // GET, HEAD, PUT, POST, DELETE
  std::string url;     // sent as is (PATH_AS_IS: '.' and '..' segments of keys are kept)
  std::vector<HttpHeader> headers;  // Host and Authorization included
  RequestBody body;
};

// A 2xx status.
inline bool is_success(long status) { return status >= 200 && status < 300; }

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // names lower-case; the last value wins
  // The body, unless a sink took a 2xx body. Error bodies are kept up to 64 KiB.
  std::string body;

  std::string header(const std::string& lower_case_name) const;
};

// Where a 2xx body goes while it arrives (downloads to files, capped reads).
class BodySink {
 public:
  virtual ~BodySink() = default;
  // Called once with the status and headers, before any byte of a 2xx body.
  // Returning false aborts the transfer (the exchange then reports sink_refused).
  virtual bool on_headers(const HttpResponse& response) { return true; }
  virtual bool on_data(std::string_view chunk) = 0;

  // Why on_headers() or on_data() returned false, for the caller to report.
  Status refusal;
};

struct HttpExchange {
  // 0 when a whole HTTP response arrived; else the libcurl error code
  // (7 connect refused, 18 partial body, 28 timeout, 52 empty reply,
  // 55/56 send/receive error, 60 untrusted TLS certificate, ...).
  int transport_error = 0;
  std::string transport_message;
  bool sink_refused = false;  // the sink returned false
  // Why TransportOptions::connection_check refused the address (transport_error
  // is then 7); a refusal is final, never retried.
  std::string refused_connection;
  HttpResponse response;      // status 0 when nothing arrived

  bool completed() const { return transport_error == 0; }
};

class HttpTransport {
 public:
  virtual ~HttpTransport() = default;
  // Performs one exchange; never retries, never follows redirects. A 2xx body
  // goes to `sink` when one is given, else into response.body.
  virtual HttpExchange perform(const HttpRequest& request, BodySink* sink) = 0;
};

// Decides about every connection before its socket exists (after DNS, so the
// address is the one really connected to): "" allows it, anything else is the
// reason it is refused. `family` is AF_INET or AF_INET6 and `address` points at
// the 4 or 16 bytes of the address in network order.
using ConnectionCheck = std::function<std::string(int family, const unsigned char* address)>;

struct TransportOptions {
  double connect_timeout_seconds = 10;
  // The whole exchange; 0 = no limit (a large object takes as long as it takes:
  // stalls are caught by stall_timeout_seconds instead).
  double total_timeout_seconds = 0;
  // Abort (curl error 28, retried) when fewer than 1 byte/s flows this long.
  double stall_timeout_seconds = 60;
  std::string ca_bundle;  // PEM file; empty = the system's CA store
  // Empty: every address is allowed. serve/ puts its SSRF address policy here.
  ConnectionCheck connection_check;
};

// The libcurl transport. kInternal when libcurl cannot be initialised.
Result<std::unique_ptr<HttpTransport>> make_curl_transport(const TransportOptions& options);

}  // namespace kennel::s3

// Fetching the bytes behind a URL a client gave us: `http(s)://` and `s3://`
// through libcurl, `file://` below one allowed root. The endpoint calls this
// for `{"url": ...}` requests, and `kennel predict`/`transform` for URL inputs.
//
// Safety first, because the URL comes from whoever can reach the endpoint:
// every connection's address (redirect hops included) is checked by the
// AddressPolicy (address_policy.h) in libcurl's open-socket callback, after
// DNS and before the socket exists, so a refused address never gets a packet
// and a name that resolves differently the second time gains nothing. By
// default only public unicast addresses are reached; allowed_networks
// (`--allow-network`) opens ranges, denied_networks closes more. Redirects
// are limited; bodies are capped at max_bytes while downloading; `file://`
// paths are resolved (symlinks, `..`) and must stay inside file_root.
//
// The S3 endpoint named by the operator's configuration (s3_endpoint or
// AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL) is trusted: its connections skip
// the built-in non-public ranges (a MinIO on 127.0.0.1 or 10.x works) but
// not denied_networks. A client chooses only the bucket and key of an
// s3:// URL, never the host, and S3 redirects are not followed.
//
// s3://bucket/key is signed with AWS SigV4 (libcurl's CURLOPT_AWS_SIGV4) from
// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY [/ AWS_SESSION_TOKEN] and
// AWS_REGION (or AWS_DEFAULT_REGION, else us-east-1); s3_endpoint (or
// AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL) points it at an S3-compatible store
// with path-style addressing (`<endpoint>/<bucket>/<key>`).
//
// Errors (Status codes; the server maps them to HTTP through status.h):
//   kInvalidArgument   malformed URL, unsupported scheme, file:// without a root
//   kPermissionDenied  the address is denied, or a file:// path escapes the root
//   kNotFound          file:// file missing, or HTTP 404 from upstream
//   kResourceExhausted the body is larger than max_bytes
//   kUpstreamFailed    DNS failure, connection refused, TLS error, HTTP >= 400,
//                      too many redirects
//   kDeadlineExceeded  connect or total timeout, or the caller's deadline
// Messages name the URL (credentials in it are not echoed); a refused address
// names the range it fell in and the `--allow-network` that would open it.
//
// Thread-safety: fetch() may be called from many threads at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "kennel/serve/address_policy.h"
#include "kennel/util/status.h"

namespace kennel::serve {

struct FetchOptions {
  double connect_timeout_seconds = 5;  // per connection attempt
  double total_timeout_seconds = 20;   // the whole transfer, redirects included
  int max_redirects = 3;
  int64_t max_bytes = 20ll << 20;  // larger bodies are cut off and refused
  // file:// URLs are served only from below this folder; empty refuses file:// entirely.
  std::filesystem::path file_root;
  // CIDR networks opened although not public (a metadata address opens
  // only when named exactly, as x.x.x.x/32), and networks refused on top of
  // the non-public ones; allowed wins over denied. See address_policy.h.
  std::vector<std::string> allowed_networks;
  std::vector<std::string> denied_networks;
  // HOST:PORT:ADDRESS pins, as curl's --resolve: HOST resolves to ADDRESS
  // without DNS. Lets tests play a DNS server; the address is checked as any.
  std::vector<std::string> pinned_hosts;
  // PEM file of CA certificates for https:// (a private CA); empty = the system's.
  std::filesystem::path ca_bundle;
  // S3: empty = AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else https://s3.<region>.amazonaws.com.
  std::string s3_endpoint;
  std::string s3_region;  // empty = AWS_REGION / AWS_DEFAULT_REGION, else us-east-1

  // kInvalidArgument naming the field: a malformed CIDR, non-positive limits.
  Status validate() const;
};

class UrlFetcher {
 public:
  using Clock = std::chrono::steady_clock;
  virtual ~UrlFetcher() = default;
  // The body of `url`, or a Status as listed above.
  Result<std::string> fetch(const std::string& url) { return fetch(url, Clock::time_point::max()); }
  // The same, but kDeadlineExceeded once `deadline` passes (a request's
  // deadline across all its URLs), whichever of it and total_timeout_seconds comes first.
  virtual Result<std::string> fetch(const std::string& url, Clock::time_point deadline) = 0;
};

// The real fetcher (libcurl). Fails with options.validate()'s status.
Result<std::unique_ptr<UrlFetcher>> make_url_fetcher(const FetchOptions& options);

}  // namespace kennel::serve

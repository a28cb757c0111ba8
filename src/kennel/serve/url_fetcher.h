// Fetching the bytes behind a URL a client gave us: `http(s)://` and `s3://`
// through libcurl, `file://` below one allowed root. The endpoint calls this
// for `{"url": ...}` requests, and `kennel predict`/`transform` for URL inputs.
//
// Safety first, because the URL comes from whoever can reach the endpoint:
// every connection's resolved address (redirect hops included) is checked
// against a deny-list of networks before connecting — by default link-local
// 169.254.0.0/16 (cloud metadata lives there) and fd00:ec2::254 — with an
// allow-list that overrides it; redirects are limited; bodies are capped at
// max_bytes while downloading; `file://` paths are resolved (symlinks, `..`)
// and must stay inside file_root.
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
//   kDeadlineExceeded  connect or total timeout
// Messages name the URL (credentials in it are not echoed).
//
// Thread-safety: fetch() may be called from many threads at once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "kennel/util/status.h"

namespace kennel::serve {

struct FetchOptions {
  double connect_timeout_seconds = 5;  // per connection attempt
  double total_timeout_seconds = 20;   // the whole transfer, redirects included
  int max_redirects = 3;
  int64_t max_bytes = 20ll << 20;  // larger bodies are cut off and refused
  // file:// URLs are served only from below this folder; empty refuses file:// entirely.
  std::filesystem::path file_root;
  // CIDR networks never connected to, and exceptions that override them.
  std::vector<std::string> denied_networks = {"169.254.0.0/16", "fd00:ec2::254/128"};
  std::vector<std::string> allowed_networks;
  // S3: empty = AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else https://s3.<region>.amazonaws.com.
  std::string s3_endpoint;
  std::string s3_region;  // empty = AWS_REGION / AWS_DEFAULT_REGION, else us-east-1

  // kInvalidArgument naming the field: a malformed CIDR, non-positive limits.
  Status validate() const;
};

class UrlFetcher {
 public:
  virtual ~UrlFetcher() = default;
  // The body of `url`, or a Status as listed above.
  virtual Result<std::string> fetch(const std::string& url) = 0;
};

// The real fetcher (libcurl). Fails with options.validate()'s status.
Result<std::unique_ptr<UrlFetcher>> make_url_fetcher(const FetchOptions& options);

// True when `address` (IPv4 or IPv6 text) falls in `cidr` ("10.0.0.0/8",
// "fd00:ec2::254/128"); exposed for tests. kInvalidArgument for a bad CIDR or address.
Result<bool> address_in_network(const std::string& address, const std::string& cidr);

}  // namespace kennel::serve

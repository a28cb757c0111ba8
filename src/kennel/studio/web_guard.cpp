#include "kennel/studio/web_guard.h"
#include "kennel/util/text.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

namespace kennel::studio {

namespace {


// The host:port of an origin or URL ("http://localhost:8070/jobs" -> "localhost:8070"), or "" when
// the scheme is not http (Studio serves plain HTTP on loopback) or the text is malformed.
std::string http_authority(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.size() <= kScheme.size() || ascii_lower(url.substr(0, kScheme.size())) != kScheme) return "";
  url.remove_prefix(kScheme.size());
  const size_t end = url.find_first_of("/?#");
  const std::string_view authority = url.substr(0, end);
  if (authority.find('@') != std::string_view::npos) return "";  // user info is never ours
  return ascii_lower(authority);
}

// "name:8070" and "[::1]:8070" have a port; "name" and "[::1]" do not.
bool has_port(const std::string& name) {
  const size_t colon = name.rfind(':');
  if (colon == std::string::npos) return false;
  if (name.front() == '[') return name.find(']') < colon;
  return name.find(':') == colon;
}

}  // namespace

WebGuard::WebGuard(int port, const std::vector<std::string>& extra_hosts, std::string csrf_token)
    : csrf_token_(std::move(csrf_token)) {
  for (const char* name : {"127.0.0.1", "localhost", "[::1]"})
    hosts_.push_back(fmt::format("{}:{}", name, port));
  for (const auto& host : extra_hosts) {
    const std::string name = ascii_lower(host);
    if (!name.empty()) hosts_.push_back(has_port(name) ? name : fmt::format("{}:{}", name, port));
  }
}

bool WebGuard::host_allowed(std::string_view host) const {
  const std::string wanted = ascii_lower(host);
  return std::find(hosts_.begin(), hosts_.end(), wanted) != hosts_.end();
}

bool WebGuard::origin_allowed(std::string_view origin) const {
  const std::string authority = http_authority(origin);
  return !authority.empty() && host_allowed(authority);
}

Status WebGuard::check(const GuardRequest& request) const {
  if (!host_allowed(request.host)) {
    return Status(
        ErrorCode::kPermissionDenied,
        fmt::format("Host '{}' is not one of this server's names (a DNS-rebinding page looks like "
                    "this): open it as http://{}, or start `kennel studio --allow-host NAME`",
                    request.host, hosts_.front()));
  }
  if (!request.origin.empty() && !origin_allowed(request.origin)) {
    return Status(
        ErrorCode::kPermissionDenied,
        fmt::format(
            "requests from the origin '{}' are refused: only Studio's own pages may call it",
            request.origin));
  }
  const bool api = request.path.starts_with("/api/") || request.path.starts_with("/files/");
  if (api && request.sec_fetch_site == "cross-site") {
    return Status(ErrorCode::kPermissionDenied, "cross-site requests to Studio's API are refused");
  }
  if (request.method == "GET" || request.method == "HEAD") return {};
  // A state-changing request must say where it comes from, and prove it with the page's token.
  const bool same_origin = !request.origin.empty()
                               ? origin_allowed(request.origin)
                               : !request.referer.empty() && origin_allowed(request.referer);
  if (!same_origin) {
    return Status(ErrorCode::kPermissionDenied,
                  fmt::format("{} {} without an Origin of this server is refused", request.method,
                              request.path));
  }
  if (request.csrf_token.size() != csrf_token_.size() || csrf_token_.empty() ||
      CRYPTO_memcmp(request.csrf_token.data(), csrf_token_.data(), csrf_token_.size()) != 0) {
    return Status(ErrorCode::kPermissionDenied,
                  fmt::format("{} {} without the page's CSRF token (header X-Kennel-CSRF) is "
                              "refused: reload the page",
                              request.method, request.path));
  }
  return {};
}

std::string random_token() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1)
    throw Error(internal_error("the OS's random number generator failed"));
  std::string out;
  for (unsigned char byte : bytes) out += fmt::format("{:02x}", byte);
  return out;
}

bool is_loopback_host(std::string_view host) {
  std::string name = ascii_lower(host);
  if (name == "localhost") return true;
  if (name.size() > 2 && name.front() == '[' && name.back() == ']')
    name = name.substr(1, name.size() - 2);
  in_addr v4{};
  if (::inet_pton(AF_INET, name.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  return ::inet_pton(AF_INET6, name.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

}  // namespace kennel::studio

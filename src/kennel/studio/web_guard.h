// The checks every Studio request passes before a handler runs. A localhost
// page with a Stop button can otherwise be driven by any web site the user
// visits: through cross-site requests (answered by the Origin check and the
// CSRF token) or through DNS rebinding, where an attacker's name resolves to
// 127.0.0.1 and the browser treats the attacker's page as same-origin
// (answered by the Host allowlist).
//
//   Host      must be one of the server's own names (127.0.0.1:PORT,
//             localhost:PORT, [::1]:PORT, plus --allow-host ones): else 403.
//   Origin    when present, must be http://<an allowed host>: else 403.
//             Sec-Fetch-Site "cross-site" is refused the same way for the API.
//   POST      must carry an Origin (or, failing that, a Referer) of an allowed
//             host AND the header X-Kennel-CSRF equal to the server's token,
//             which only its own pages know (it is random per start).
//
// Thread-safety: immutable after construction.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "kennel/util/status.h"

namespace kennel::studio {

struct GuardRequest {
  std::string method{};  // "GET", "POST", ...
  std::string path{};
  std::string host{};            // the Host header
  std::string origin{};          // the Origin header ("" when absent)
  std::string referer{};         // the Referer header
  std::string sec_fetch_site{};  // the Sec-Fetch-Site header
  std::string csrf_token{};      // the X-Kennel-CSRF header
};

class WebGuard {
 public:
  // `port`: the port the server listens on; `extra_hosts`: further names it
  // answers to ("studio.example:8070" or "studio.example" for any port).
  WebGuard(int port, const std::vector<std::string>& extra_hosts, std::string csrf_token);

  // OK, or kPermissionDenied saying which check refused the request.
  Status check(const GuardRequest& request) const;

  const std::string& csrf_token() const { return csrf_token_; }
  bool host_allowed(std::string_view host) const;
  bool origin_allowed(std::string_view origin) const;

 private:
  std::vector<std::string> hosts_;  // lower case, "name:port"
  std::string csrf_token_;
};

// 32 random bytes as hex, from the OS's CSPRNG.
std::string random_token();

// Is this an address that only this machine can reach (127.0.0.0/8, ::1, localhost)?
bool is_loopback_host(std::string_view host);

}  // namespace kennel::studio

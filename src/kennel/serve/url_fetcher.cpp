#include "kennel/serve/url_fetcher.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <string_view>
#include <system_error>

#include "kennel/serve/detail/s3_fetch.h"
#include "kennel/util/fs.h"
#include "kennel/util/text.h"

namespace kennel::serve {

namespace {

// ---- URL text ------------------------------------------------------------------


bool is_sensitive_query_name(std::string_view name) {
  const std::string lowered = ascii_lower(name);
  for (const char* word : {"sig", "token", "credential", "secret", "pass", "key"}) {
    if (lowered.find(word) != std::string::npos) return true;
  }
  return false;
}

// The URL as messages show it: no user:password@, no values of query
// parameters that look like signatures or tokens (pre-signed URLs), no
// control characters (log injection), and not unboundedly long.
std::string display_url(const std::string& url) {
  std::string shown = url;
  const size_t scheme_end = shown.find("://");
  if (scheme_end != std::string::npos) {
    const size_t authority = scheme_end + 3;
    const size_t authority_end = std::min(shown.find_first_of("/?#", authority), shown.size());
    const size_t at = shown.rfind('@', authority_end == 0 ? 0 : authority_end - 1);
    if (at != std::string::npos && at >= authority) shown.erase(authority, at + 1 - authority);
  }
  const size_t query = shown.find('?');
  if (query != std::string::npos) {
    const size_t fragment = std::min(shown.find('#', query), shown.size());
    std::string rebuilt = shown.substr(0, query + 1);
    size_t start = query + 1;
    while (start <= fragment) {
      const size_t end = std::min(shown.find('&', start), fragment);
      const std::string_view pair = std::string_view(shown).substr(start, end - start);
      const size_t equals = pair.find('=');
      if (equals != std::string_view::npos && is_sensitive_query_name(pair.substr(0, equals))) {
        rebuilt += std::string(pair.substr(0, equals)) + "=REDACTED";
      } else {
        rebuilt += pair;
      }
      if (end < fragment) rebuilt += '&';
      start = end + 1;
    }
    shown = rebuilt + shown.substr(fragment);
  }
  std::string clean;
  for (const char c : shown) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7F) {
      clean += fmt::format("%{:02X}", byte);
    } else {
      clean += c;
    }
  }
  constexpr size_t kMaxShown = 300;
  if (clean.size() > kMaxShown) clean = clean.substr(0, kMaxShown) + "...";
  return clean;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> percent_decode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;
    const int high = hex_value(text[i + 1]);
    const int low = hex_value(text[i + 2]);
    if (high < 0 || low < 0) return std::nullopt;
    out += static_cast<char>(high * 16 + low);
    i += 2;
  }
  return out;
}

bool is_region_name(std::string_view region) {
  for (const char c : region) {
    const auto byte = static_cast<unsigned char>(c);
    if (!std::islower(byte) && !std::isdigit(byte) && c != '-') return false;
  }
  return true;
}

bool is_http_url(std::string_view url) {
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return false;
  const std::string scheme = ascii_lower(url.substr(0, scheme_end));
  return scheme == "http" || scheme == "https";
}

// ---- one libcurl transfer ----------------------------------------------------

// Error bodies are kept only this far; the rest is not downloaded.
constexpr size_t kErrorBodyLimit = 8 << 10;

struct Transfer {
  CURL* curl = nullptr;
  const AddressPolicy* policy = nullptr;
  uint64_t max_bytes = 0;
  std::string body;
  bool too_large = false;
  bool error_body_cut = false;
  // Set by the open-socket callback when it refuses an address.
  std::string refused_address;
  std::optional<AddressRefusal> refusal;
  std::string refused_url;  // empty unless the refused connection was for a redirect
};

bool is_success(long http_status) {
  return http_status >= 200 && http_status < 300;
}

size_t write_body(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  const size_t n = size * count;
  long http_status = 0;
  curl_easy_getinfo(transfer->curl, CURLINFO_RESPONSE_CODE, &http_status);
  if (!is_success(http_status)) {
    const size_t room = kErrorBodyLimit - std::min(kErrorBodyLimit, transfer->body.size());
    transfer->body.append(data, std::min(n, room));
    if (n > room) {
      transfer->error_body_cut = true;
      return 0;  // anything but n aborts the transfer
    }
    return n;
  }
  if (transfer->body.size() + n > transfer->max_bytes) {
    transfer->too_large = true;
    return 0;
  }
  transfer->body.append(data, n);
  return n;
}

// libcurl calls this for every connection it opens, after DNS and for each
// redirect hop, so the address checked is the one actually connected to (no
// DNS-rebinding gap between a check and the connect).
curl_socket_t open_checked_socket(void* user, curlsocktype /*purpose*/, curl_sockaddr* address) {
  auto* transfer = static_cast<Transfer*>(user);
  IpAddress ip;
  if (address->family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&address->addr);
    std::memcpy(ip.bytes.data(), &v4->sin_addr, 4);
  } else if (address->family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&address->addr);
    ip.v6 = true;
    std::memcpy(ip.bytes.data(), &v6->sin6_addr, 16);
  } else {
    return CURL_SOCKET_BAD;  // only IP sockets are expected; anything else is refused
  }
  if (auto refusal = transfer->policy->refusal(ip)) {
    if (transfer->refused_address.empty()) {
      transfer->refused_address = ip.to_string();
      transfer->refusal = std::move(refusal);
      // The effective URL is libcurl's normalised spelling (0x7f000001 becomes
      // 127.0.0.1), so it is named only when a redirect led here.
      long redirects = 0;
      char* url = nullptr;
      curl_easy_getinfo(transfer->curl, CURLINFO_REDIRECT_COUNT, &redirects);
      curl_easy_getinfo(transfer->curl, CURLINFO_EFFECTIVE_URL, &url);
      if (redirects > 0 && url) transfer->refused_url = display_url(url);
    }
    return CURL_SOCKET_BAD;
  }
  return ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

long milliseconds(double seconds) {
  // curl reads 0 as "no limit": never round a tiny positive timeout down to it.
  return static_cast<long>(std::max(1.0, std::min(seconds * 1000, 1e12)));
}

struct CurlHandle {
  CURL* curl = curl_easy_init();
  curl_slist* headers = nullptr;
  ~CurlHandle() {
    curl_slist_free_all(headers);
    if (curl) curl_easy_cleanup(curl);
  }
};

// One http(s) fetch.
struct RequestSpec {
  std::string url;        // what libcurl fetches
  std::string shown_url;  // what messages name
  bool follow_redirects = true;
  UrlFetcher::Clock::time_point deadline = UrlFetcher::Clock::time_point::max();
};

// ---- the fetcher -------------------------------------------------------------

class CurlUrlFetcher final : public UrlFetcher {
 public:
  CurlUrlFetcher(FetchOptions options, AddressPolicy policy)
      : options_(std::move(options)), policy_(std::move(policy)), s3_(options_, policy_) {
    curl_slist* list = nullptr;
    for (const std::string& pin : options_.pinned_hosts) list = curl_slist_append(list, pin.c_str());
    pinned_hosts_.reset(list);
  }

  using UrlFetcher::fetch;
  Result<std::string> fetch(const std::string& url, Clock::time_point deadline) override {
    const std::string shown = display_url(url);
    const size_t scheme_end = url.find("://");
    if (scheme_end == std::string::npos) {
      return invalid_argument("'{}' is not a URL: expected http://, https://, s3:// or file://",
                              shown);
    }
    const std::string scheme = ascii_lower(std::string_view(url).substr(0, scheme_end));
    if (scheme == "http" || scheme == "https") {
      RequestSpec spec;
      spec.url = url;
      spec.shown_url = shown;
      spec.deadline = deadline;
      return perform(spec);
    }
    if (scheme == "s3") return s3_.fetch(url, shown, deadline);
    if (scheme == "file") return fetch_file(url, shown);
    return invalid_argument(
        "{}: unsupported URL scheme '{}' (Kennel fetches http, https, s3, file)", shown, scheme);
  }

 private:
  Result<std::string> fetch_file(const std::string& url, const std::string& shown) const {
    if (options_.file_root.empty()) {
      return invalid_argument("{}: file:// URLs are refused here (no file root is configured)",
                              shown);
    }
    const std::string_view rest = std::string_view(url).substr(url.find("://") + 3);
    const size_t path_start = rest.find('/');
    const std::string host = ascii_lower(rest.substr(0, path_start));
    if (path_start == std::string_view::npos || (!host.empty() && host != "localhost")) {
      return invalid_argument("{}: a file URL names a local path, as in file:///data/cat.jpg",
                              shown);
    }
    const std::string_view encoded = rest.substr(path_start, rest.find_first_of("?#") - path_start);
    const auto decoded = percent_decode(encoded);
    if (!decoded || decoded->find('\0') != std::string::npos) {
      return invalid_argument("{}: malformed percent-encoding in the path", shown);
    }
    std::error_code error;
    const auto root = std::filesystem::canonical(options_.file_root, error);
    if (error) {
      return failed_precondition("{}: the file root '{}' is not usable: {}", shown,
                                 path_text(options_.file_root), error.message());
    }
    // weakly_canonical follows every symlink that exists and folds '..', so the
    // comparison below is against where the path really leads.
    const auto target = std::filesystem::weakly_canonical(*decoded, error);
    if (error) {
      const ErrorCode code = error == std::errc::permission_denied ? ErrorCode::kPermissionDenied
                                                                   : ErrorCode::kNotFound;
      return Status(code, fmt::format("{}: cannot resolve the path: {}", shown, error.message()));
    }
    if (!is_within(target, root)) {
      return Status(ErrorCode::kPermissionDenied,
                    fmt::format("{}: the path leads outside the file root '{}' (after resolving "
                                "'..' and symlinks)",
                                shown, path_text(root)));
    }
    // The check above resolved every symlink; opening the resolved path without
    // following any closes the window in which a component could be swapped for one.
    auto bytes = read_file_beneath(root, target.lexically_relative(root),
                                   static_cast<uint64_t>(options_.max_bytes));
    if (!bytes.ok()) return bytes.status().with_context(fmt::format("fetching {}", shown));
    return std::string(bytes->begin(), bytes->end());
  }

  static bool is_within(const std::filesystem::path& path, const std::filesystem::path& root) {
    // Component-wise, so that /data/images2 is not inside /data/images.
    auto path_it = path.begin();
    for (auto root_it = root.begin(); root_it != root.end(); ++root_it, ++path_it) {
      if (root_it->empty()) continue;  // the trailing "" of a root ending in '/'
      if (path_it == path.end() || *path_it != *root_it) return false;
    }
    return true;
  }

  Result<std::string> perform(const RequestSpec& spec) const {
    // The caller's deadline shortens the transfer's own limits, never lengthens them.
    double total_seconds = options_.total_timeout_seconds;
    bool deadline_binds = false;
    if (spec.deadline != Clock::time_point::max()) {
      const double left = std::chrono::duration<double>(spec.deadline - Clock::now()).count();
      if (left <= 0) {
        return Status(ErrorCode::kDeadlineExceeded,
                      fmt::format("{}: not fetched: the request's deadline had passed", spec.shown_url));
      }
      if (left < total_seconds) {
        total_seconds = left;
        deadline_binds = true;
      }
    }
    CurlHandle handle;
    if (!handle.curl) return internal_error("curl_easy_init failed fetching {}", spec.shown_url);
    CURL* curl = handle.curl;
    Transfer transfer;
    transfer.curl = curl;
    transfer.policy = &policy_;
    transfer.max_bytes = static_cast<uint64_t>(options_.max_bytes);
    std::array<char, CURL_ERROR_SIZE> error_buffer{};

    CURLcode setup = CURLE_OK;
    auto set = [&](CURLoption option, auto value) {
      const CURLcode code = curl_easy_setopt(curl, option, value);
      if (setup == CURLE_OK) setup = code;
    };
    set(CURLOPT_URL, spec.url.c_str());
    set(CURLOPT_ERRORBUFFER, error_buffer.data());
    set(CURLOPT_NOSIGNAL, 1L);  // many threads fetch at once; no SIGALRM for DNS timeouts
    set(CURLOPT_PROTOCOLS_STR, "http,https");
    set(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    set(CURLOPT_FOLLOWLOCATION, spec.follow_redirects ? 1L : 0L);
    set(CURLOPT_MAXREDIRS, static_cast<long>(options_.max_redirects));
    set(CURLOPT_CONNECTTIMEOUT_MS,
        milliseconds(std::min(options_.connect_timeout_seconds, total_seconds)));
    set(CURLOPT_TIMEOUT_MS, milliseconds(total_seconds));
    if (pinned_hosts_) set(CURLOPT_RESOLVE, pinned_hosts_.get());
    if (!options_.ca_bundle.empty()) set(CURLOPT_CAINFO, options_.ca_bundle.c_str());
    // A proxy would make the open-socket check see the proxy's address instead
    // of the target's, so the *_proxy environment variables are ignored.
    set(CURLOPT_PROXY, "");
    set(CURLOPT_OPENSOCKETFUNCTION, &open_checked_socket);
    set(CURLOPT_OPENSOCKETDATA, &transfer);
    set(CURLOPT_WRITEFUNCTION, &write_body);
    set(CURLOPT_WRITEDATA, &transfer);
    // Refuses early when Content-Length already says too much; write_body
    // enforces the cap for bodies without one.
    set(CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(options_.max_bytes));
    set(CURLOPT_USERAGENT, "kennel");
    if (setup != CURLE_OK) {
      return internal_error("configuring libcurl for {}: {}", spec.shown_url,
                            curl_easy_strerror(setup));
    }

    const CURLcode result = curl_easy_perform(curl);
    long http_status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http_status);

    if (transfer.refusal && result != CURLE_OK) return refused(spec, transfer);
    const bool http_error = (result == CURLE_OK && !is_success(http_status)) ||
                            (result == CURLE_WRITE_ERROR && transfer.error_body_cut) ||
                            (result == CURLE_FILESIZE_EXCEEDED && http_status >= 400);
    if (http_error) return http_failure(spec, http_status);
    if (result == CURLE_FILESIZE_EXCEEDED || (result == CURLE_WRITE_ERROR && transfer.too_large)) {
      return Status(ErrorCode::kResourceExhausted,
                    fmt::format("{}: the body is larger than the limit of {} bytes", spec.shown_url,
                                options_.max_bytes));
    }
    if (result != CURLE_OK) {
      long redirects = 0;
      curl_easy_getinfo(curl, CURLINFO_REDIRECT_COUNT, &redirects);
      if (result == CURLE_OPERATION_TIMEDOUT && deadline_binds) {
        return Status(ErrorCode::kDeadlineExceeded,
                      fmt::format("{}: timed out at the request's deadline ({})", spec.shown_url,
                                  *error_buffer.data() ? error_buffer.data()
                                                       : curl_easy_strerror(result)));
      }
      return curl_failure(spec, result, redirects, error_buffer.data());
    }
    return std::move(transfer.body);
  }

  // Names the address, the range it fell in, and what would open it.
  static Status refused(const RequestSpec& spec, const Transfer& transfer) {
    const AddressRefusal& why = *transfer.refusal;
    const std::string& address = transfer.refused_address;
    const std::string hop =
        transfer.refused_url.empty() ? "" : fmt::format(" (redirected to {})", transfer.refused_url);
    const std::string single = address + (address.find(':') == std::string::npos ? "/32" : "/128");
    std::string how;
    if (why.by_operator) {
      how = fmt::format("it is in {}, denied by --deny-network (an --allow-network {} would override it)",
                        why.network, single);
    } else if (why.metadata) {
      how = fmt::format("it is a {} address ({}), refused unless named exactly: --allow-network {}",
                        why.what, why.network, single);
    } else {
      how = fmt::format("it is in {} ({}), not a public address; to allow it, pass --allow-network "
                        "{} (or a CIDR covering it)",
                        why.network, why.what, single);
    }
    return Status(ErrorCode::kPermissionDenied,
                  fmt::format("{}{}: connection to {} denied: {}", spec.shown_url, hop, address, how));
  }

  Status http_failure(const RequestSpec& spec, long http_status) const {
    const ErrorCode code = http_status == 404 ? ErrorCode::kNotFound : ErrorCode::kUpstreamFailed;
    return Status(code,
                  fmt::format("{}: the server answered HTTP {}", spec.shown_url, http_status));
  }

  Status curl_failure(const RequestSpec& spec, CURLcode result, long redirects,
                      const char* error_text) const {
    const std::string why = *error_text ? error_text : curl_easy_strerror(result);
    switch (result) {
      case CURLE_OPERATION_TIMEDOUT:
        return Status(ErrorCode::kDeadlineExceeded,
                      fmt::format("{}: timed out ({}; connect_timeout_seconds={}, "
                                  "total_timeout_seconds={})",
                                  spec.shown_url, why, options_.connect_timeout_seconds,
                                  options_.total_timeout_seconds));
      case CURLE_URL_MALFORMAT:
        if (redirects > 0) {  // the server's Location, not the caller's URL
          return Status(ErrorCode::kUpstreamFailed,
                        fmt::format("{}: redirected to a malformed URL ({})", spec.shown_url, why));
        }
        return invalid_argument("{}: malformed URL ({})", spec.shown_url, why);
      case CURLE_TOO_MANY_REDIRECTS:
        return Status(ErrorCode::kUpstreamFailed,
                      fmt::format("{}: more than max_redirects={} redirects", spec.shown_url,
                                  options_.max_redirects));
      case CURLE_UNSUPPORTED_PROTOCOL:
        return Status(ErrorCode::kUpstreamFailed,
                      fmt::format("{}: redirected to a URL that is not http or https ({})",
                                  spec.shown_url, why));
      default:
        return Status(ErrorCode::kUpstreamFailed,
                      fmt::format("{}: fetch failed: {}", spec.shown_url, why));
    }
  }

  const FetchOptions options_;
  const AddressPolicy policy_;
  detail::S3Fetch s3_;
  // CURLOPT_RESOLVE's list, built once from options_.pinned_hosts; libcurl only reads it.
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> pinned_hosts_{nullptr,
                                                                             &curl_slist_free_all};
};

}  // namespace

Status FetchOptions::validate() const {
  if (!std::isfinite(connect_timeout_seconds) || connect_timeout_seconds <= 0) {
    return invalid_argument("connect_timeout_seconds must be a positive number of seconds, got {}",
                            connect_timeout_seconds);
  }
  if (!std::isfinite(total_timeout_seconds) || total_timeout_seconds <= 0) {
    return invalid_argument("total_timeout_seconds must be a positive number of seconds, got {}",
                            total_timeout_seconds);
  }
  if (max_redirects < 0) {
    return invalid_argument("max_redirects must be 0 (no redirects) or more, got {}",
                            max_redirects);
  }
  if (max_bytes <= 0) return invalid_argument("max_bytes must be positive, got {}", max_bytes);
  auto policy = AddressPolicy::make(allowed_networks, denied_networks);
  if (!policy.ok()) return policy.status();
  for (size_t i = 0; i < pinned_hosts.size(); ++i) {
    const std::string& pin = pinned_hosts[i];
    const size_t first = pin.find(':');
    const size_t second = first == std::string::npos ? first : pin.find(':', first + 1);
    if (first == 0 || second == std::string::npos || second + 1 >= pin.size()) {
      return invalid_argument("pinned_hosts[{}] '{}' is not HOST:PORT:ADDRESS", i, pin);
    }
  }
  if (!ca_bundle.empty()) {
    std::error_code error;
    if (!std::filesystem::is_regular_file(ca_bundle, error)) {
      return invalid_argument("ca_bundle '{}' is not a readable file of PEM certificates",
                              path_text(ca_bundle));
    }
  }
  if (!s3_endpoint.empty() && !is_http_url(s3_endpoint)) {
    return invalid_argument("s3_endpoint '{}' is not an http:// or https:// URL",
                            display_url(s3_endpoint));
  }
  if (!is_region_name(s3_region)) {
    return invalid_argument("s3_region '{}' is not an AWS region name (e.g. eu-west-1)", s3_region);
  }
  return {};
}

Result<std::unique_ptr<UrlFetcher>> make_url_fetcher(const FetchOptions& options) {
  KENNEL_RETURN_IF_ERROR(options.validate());
  static std::once_flag once;
  static CURLcode init_result = CURLE_OK;
  std::call_once(once, [] { init_result = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (init_result != CURLE_OK) {
    return internal_error("curl_global_init failed: {}", curl_easy_strerror(init_result));
  }
  // validate() has built the policy once already, so value() cannot throw.
  auto policy = AddressPolicy::make(options.allowed_networks, options.denied_networks).value();
  return std::unique_ptr<UrlFetcher>(std::make_unique<CurlUrlFetcher>(options, std::move(policy)));
}

}  // namespace kennel::serve

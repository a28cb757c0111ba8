#include "kennel/s3/addressing.h"

#include <cctype>
#include <charconv>

#include "kennel/s3/sigv4.h"
#include "kennel/util/text.h"

namespace kennel::s3 {

namespace {

constexpr std::string_view kScheme = "s3://";


bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

bool looks_like_ipv4(std::string_view text) {
  int dots = 0;
  for (const char c : text) {
    if (c == '.') {
      ++dots;
    } else if (!std::isdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return dots == 3;
}

}  // namespace

bool is_s3_uri(std::string_view text) {
  return text.size() >= kScheme.size() && ascii_lower(text.substr(0, kScheme.size())) == kScheme;
}

Result<S3Uri> parse_s3_uri(std::string_view text) {
  if (!is_s3_uri(text)) {
    return invalid_argument("'{}' is not an S3 URI: write s3://BUCKET/KEY or s3://BUCKET/PREFIX/",
                            text);
  }
  const std::string_view rest = text.substr(kScheme.size());
  const size_t slash = rest.find('/');
  S3Uri uri;
  uri.bucket = std::string(rest.substr(0, slash));
  if (slash != std::string_view::npos) uri.key = std::string(rest.substr(slash + 1));
  if (uri.bucket.empty()) {
    return invalid_argument("'{}' names no bucket: write s3://BUCKET/KEY", text);
  }
  const Status bucket_status = validate_bucket_name(uri.bucket);
  if (!bucket_status.ok()) return bucket_status.with_context(fmt::format("'{}'", text));
  return uri;
}

Status validate_bucket_name(std::string_view bucket) {
  if (bucket.size() < 3 || bucket.size() > 255) {
    return invalid_argument(
        "bucket name '{}' must be 3 to 63 characters long (255 for old us-east-1 buckets)", bucket);
  }
  for (const char c : bucket) {
    const auto byte = static_cast<unsigned char>(c);
    if (!std::isalnum(byte) && c != '.' && c != '-' && c != '_') {
      return invalid_argument(
          "bucket name '{}' may hold only letters, digits, '.', '-' and '_' (found '{}')", bucket,
          c);
    }
  }
  return {};
}

bool is_virtual_hostable(std::string_view bucket) {
  if (bucket.size() < 3 || bucket.size() > 63) return false;
  for (const char c : bucket) {
    const auto byte = static_cast<unsigned char>(c);
    if (!(std::islower(byte) || std::isdigit(byte) || c == '-')) return false;
  }
  return bucket.front() != '-' && bucket.back() != '-';
}

const char* addressing_style_name(AddressingStyle style) {
  switch (style) {
    case AddressingStyle::kPath:
      return "path";
    case AddressingStyle::kVirtual:
      return "virtual";
    case AddressingStyle::kAuto:
      break;
  }
  return "auto";
}

Result<AddressingStyle> parse_addressing_style(std::string_view text) {
  const std::string value = ascii_lower(text);
  if (value == "auto") return AddressingStyle::kAuto;
  if (value == "path") return AddressingStyle::kPath;
  if (value == "virtual") return AddressingStyle::kVirtual;
  return invalid_argument("addressing style '{}' is not one of auto, path, virtual", text);
}

std::string Endpoint::authority() const {
  const int default_port = scheme == "https" ? 443 : 80;
  if (port == 0 || port == default_port) return host;
  return host + ":" + std::to_string(port);
}

std::string Endpoint::text() const {
  return scheme + "://" + authority() + base_path;
}

bool Endpoint::is_aws() const {
  return ends_with(host, ".amazonaws.com") || ends_with(host, ".amazonaws.com.cn");
}

Result<Endpoint> parse_endpoint(std::string_view url) {
  const size_t scheme_end = url.find("://");
  Endpoint endpoint;
  if (scheme_end != std::string_view::npos) endpoint.scheme = ascii_lower(url.substr(0, scheme_end));
  if (endpoint.scheme != "http" && endpoint.scheme != "https") {
    return invalid_argument(
        "endpoint '{}' is not an http:// or https:// URL (e.g. http://127.0.0.1:9000)", url);
  }
  std::string_view rest = url.substr(scheme_end + 3);
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return invalid_argument("endpoint '{}' must not have a query or fragment", url);
  }
  const size_t path_start = rest.find('/');
  std::string_view authority = rest.substr(0, path_start);
  if (authority.find('@') != std::string_view::npos) {
    return invalid_argument(
        "endpoint URL must not hold user:password@ (credentials come from the AWS chain)");
  }
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return invalid_argument("endpoint '{}': unclosed '[' in an IPv6 address", url);
    }
    endpoint.host = ascii_lower(authority.substr(0, close + 1));
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') {
        return invalid_argument("endpoint '{}': expected ':PORT' after the IPv6 address", url);
      }
      port_text = authority.substr(close + 2);
    }
  } else {
    const size_t colon = authority.rfind(':');
    endpoint.host = ascii_lower(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (endpoint.host.empty() || endpoint.host == "[]") {
    return invalid_argument("endpoint '{}' names no host", url);
  }
  if (!port_text.empty() || authority.back() == ':') {
    int port = 0;
    const auto [end, error] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (port_text.empty() || error != std::errc() || end != port_text.data() + port_text.size() ||
        port < 1 || port > 65535) {
      return invalid_argument("endpoint '{}': port '{}' is not a number from 1 to 65535", url,
                              port_text);
    }
    endpoint.port = port;
  }
  if (path_start != std::string_view::npos) {
    std::string path(rest.substr(path_start));
    while (!path.empty() && path.back() == '/') path.pop_back();
    endpoint.base_path = path;
  }
  return endpoint;
}

Endpoint aws_endpoint(std::string_view region) {
  Endpoint endpoint;
  endpoint.scheme = "https";
  const std::string suffix = region.substr(0, 3) == "cn-" ? ".amazonaws.com.cn" : ".amazonaws.com";
  endpoint.host = region == "us-east-1" ? "s3.amazonaws.com" : "s3." + std::string(region) + suffix;
  return endpoint;
}

AddressingStyle effective_addressing(const Endpoint& endpoint, AddressingStyle configured,
                                     std::string_view bucket) {
  if (configured != AddressingStyle::kAuto) return configured;
  const bool hostable = is_virtual_hostable(bucket) && !looks_like_ipv4(endpoint.host) &&
                        endpoint.host.front() != '[';
  return endpoint.is_aws() && hostable ? AddressingStyle::kVirtual : AddressingStyle::kPath;
}

RequestTarget request_target(const Endpoint& endpoint, AddressingStyle style,
                             std::string_view bucket, std::string_view key,
                             std::string_view encoded_query) {
  RequestTarget target;
  const AddressingStyle used = effective_addressing(endpoint, style, bucket);
  std::string path = endpoint.base_path;
  if (used == AddressingStyle::kVirtual) {
    target.host = std::string(bucket) + "." + endpoint.authority();
    path += "/" + uri_encode(key, true);
  } else {
    target.host = endpoint.authority();
    path += "/" + std::string(bucket);
    if (!key.empty()) path += "/" + uri_encode(key, true);
  }
  target.canonical_uri = path;
  target.url = endpoint.scheme + "://" + target.host + path;
  if (!encoded_query.empty()) target.url += "?" + std::string(encoded_query);
  return target;
}

}  // namespace kennel::s3

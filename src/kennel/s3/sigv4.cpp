#include "kennel/s3/sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <ctime>
#include <utility>

#include <fmt/format.h>

#include "kennel/util/hash.h"
#include "kennel/util/text.h"

namespace kennel::s3 {

namespace {

bool is_unreserved(unsigned char byte) {
  return (byte >= 'A' && byte <= 'Z') || (byte >= 'a' && byte <= 'z') ||
         (byte >= '0' && byte <= '9') || byte == '-' || byte == '.' || byte == '_' || byte == '~';
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}


// SigV4's Trimall: no leading or trailing whitespace, inner runs folded to one space.
std::string trim_all(std::string_view value) {
  std::string out;
  bool pending_space = false;
  for (const char c : value) {
    if (is_space(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out += ' ';
    pending_space = false;
    out += c;
  }
  return out;
}

// Headers grouped by lower-case name (sorted), values of repeated names joined by ','.
std::vector<std::pair<std::string, std::string>> canonical_header_list(
    const std::vector<HttpHeader>& headers) {
  std::vector<std::pair<std::string, std::string>> list;
  for (const HttpHeader& header : headers) {
    list.emplace_back(ascii_lower(trim_all(header.name)), trim_all(header.value));
  }
  std::stable_sort(list.begin(), list.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::pair<std::string, std::string>> merged;
  for (auto& [name, value] : list) {
    if (!merged.empty() && merged.back().first == name) {
      merged.back().second += "," + value;
    } else {
      merged.emplace_back(std::move(name), std::move(value));
    }
  }
  return merged;
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &length);
  return std::string(reinterpret_cast<const char*>(out), length);
}

std::string hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) {
    const auto byte = static_cast<unsigned char>(c);
    out += kDigits[byte >> 4];
    out += kDigits[byte & 0xF];
  }
  return out;
}

}  // namespace

std::string uri_encode(std::string_view text, bool keep_slash) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (is_unreserved(byte) || (keep_slash && c == '/')) {
      out += c;
    } else {
      out += '%';
      out += kDigits[byte >> 4];
      out += kDigits[byte & 0xF];
    }
  }
  return out;
}

std::string canonical_query_string(const std::vector<QueryParameter>& query) {
  std::vector<std::pair<std::string, std::string>> encoded;
  encoded.reserve(query.size());
  for (const QueryParameter& parameter : query) {
    encoded.emplace_back(uri_encode(parameter.name, false), uri_encode(parameter.value, false));
  }
  std::sort(encoded.begin(), encoded.end());
  std::string out;
  for (const auto& [name, value] : encoded) {
    if (!out.empty()) out += '&';
    out += name + "=" + value;
  }
  return out;
}

std::string SigningScope::text() const {
  return fmt::format("{}/{}/{}/aws4_request", date(), region, service);
}

std::string amz_date(std::chrono::system_clock::time_point time) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(time);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y%m%dT%H%M%SZ", &utc);
  return text;
}

std::string canonical_headers(const std::vector<HttpHeader>& headers) {
  std::string out;
  for (const auto& [name, value] : canonical_header_list(headers)) out += name + ":" + value + "\n";
  return out;
}

std::string signed_headers(const std::vector<HttpHeader>& headers) {
  std::string out;
  for (const auto& [name, value] : canonical_header_list(headers)) {
    if (!out.empty()) out += ';';
    out += name;
  }
  return out;
}

std::string canonical_request(const SigningRequest& request) {
  return fmt::format("{}\n{}\n{}\n{}\n{}\n{}", request.method, request.canonical_uri,
                     canonical_query_string(request.query), canonical_headers(request.headers),
                     signed_headers(request.headers), request.payload_hash);
}

std::string string_to_sign(std::string_view canonical_request, const SigningScope& scope) {
  return fmt::format("AWS4-HMAC-SHA256\n{}\n{}\n{}", scope.amz_date, scope.text(),
                     sha256_hex(canonical_request));
}

std::string signing_key(std::string_view secret_access_key, const SigningScope& scope) {
  const std::string date_key = hmac_sha256("AWS4" + std::string(secret_access_key), scope.date());
  const std::string region_key = hmac_sha256(date_key, scope.region);
  const std::string service_key = hmac_sha256(region_key, scope.service);
  return hmac_sha256(service_key, "aws4_request");
}

std::string signature(std::string_view signing_key, std::string_view string_to_sign) {
  return hex(hmac_sha256(signing_key, string_to_sign));
}

std::string authorization_header(const SigningRequest& request, const Credentials& credentials,
                                 const SigningScope& scope) {
  const std::string to_sign = string_to_sign(canonical_request(request), scope);
  const std::string key = signing_key(credentials.secret_access_key, scope);
  return fmt::format("AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={}, Signature={}",
                     credentials.access_key_id, scope.text(), signed_headers(request.headers),
                     signature(key, to_sign));
}

void sign_request(SigningRequest& request, const Credentials& credentials,
                  const std::string& region, std::chrono::system_clock::time_point now) {
  const SigningScope scope{amz_date(now), region, "s3"};
  request.headers.push_back({"x-amz-date", scope.amz_date});
  request.headers.push_back({"x-amz-content-sha256", request.payload_hash});
  if (!credentials.session_token.empty()) {
    request.headers.push_back({"x-amz-security-token", credentials.session_token});
  }
  const std::string authorization = authorization_header(request, credentials, scope);
  request.headers.push_back({"Authorization", authorization});
}

}  // namespace kennel::s3

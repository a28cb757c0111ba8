// AWS Signature Version 4 for S3, written out step by step (canonical request,
// string to sign, signing key, Authorization header) so that each step is
// testable against AWS's published examples and botocore.
//
// Why Kennel signs by itself: libcurl's CURLOPT_AWS_SIGV4 in Debian's curl 7.88
// neither sorts nor encodes the canonical query string (fixed upstream in 8.3),
// so a ListObjectsV2 with a prefix or continuation token fails against real S3.
//
// S3's rules, which differ from the other AWS services: the canonical URI is
// the request path exactly as sent (each key byte outside A-Z a-z 0-9 - . _ ~
// percent-encoded once, '/' kept, never normalised or encoded twice); every
// request carries x-amz-content-sha256, which is also the payload hash of the
// canonical request.
//
// Payload rule (how the caller fills SigningRequest::payload_hash; request.h
// applies it): the real SHA-256 of every body Kennel holds in memory (empty
// bodies of GET/HEAD/DELETE, PutObject from memory, the multipart XML), and
// UNSIGNED-PAYLOAD for bodies streamed from a file (single-request uploads and
// multipart parts) when the endpoint is https: TLS already guards those bytes
// in transit and hashing first would read every part twice. Over plain http a
// streamed body is hashed first as well, because nothing else protects it;
// botocore follows the same two rules ("payloads are always signed over
// insecure connections"; streaming uploads over https are not).
//
// Thread-safety: pure functions.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "kennel/s3/credentials.h"

namespace kennel::s3 {

inline constexpr std::string_view kUnsignedPayload = "UNSIGNED-PAYLOAD";
inline constexpr std::string_view kEmptyPayloadSha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

struct QueryParameter {
  std::string name;   // decoded
  std::string value;  // decoded; "" for a bare name such as ?uploads
};

struct HttpHeader {
  std::string name;
  std::string value;
};

// RFC 3986 percent-encoding as SigV4 wants it: the unreserved bytes A-Z a-z
// 0-9 - . _ ~ pass, every other byte becomes %XX (upper-case hex); '/' passes
// only when keep_slash (object keys in a path), never in query components.
std::string uri_encode(std::string_view text, bool keep_slash);

// Each name and value uri_encode()d, sorted by encoded name and then value,
// joined as "a=1&b=&c=3". Also the query Kennel sends, so what is signed is
// byte for byte what goes on the wire.
std::string canonical_query_string(const std::vector<QueryParameter>& query);

struct SigningRequest {
  std::string method;         // "GET", "PUT", ...
  std::string canonical_uri;  // the request path exactly as sent: "/bucket/a%20b.jpg"
  std::vector<QueryParameter> query;
  // Every header to be signed, host included, names in any case. Two headers
  // with one name are signed as one with the values joined by ','.
  std::vector<HttpHeader> headers;
  std::string payload_hash;  // lower-case hex SHA-256 of the body, or UNSIGNED-PAYLOAD
};

struct SigningScope {
  std::string amz_date;  // "20130524T000000Z"
  std::string region;    // "us-east-1"
  std::string service = "s3";

  std::string date() const { return amz_date.substr(0, 8); }
  // "20130524/us-east-1/s3/aws4_request"
  std::string text() const;
};

// "20130524T000000Z" for a UTC time.
std::string amz_date(std::chrono::system_clock::time_point time);

// One "name:value\n" per header: names lower-case, values trimmed with inner
// runs of whitespace folded to one space, sorted by name.
std::string canonical_headers(const std::vector<HttpHeader>& headers);
// "host;range;x-amz-content-sha256;x-amz-date"
std::string signed_headers(const std::vector<HttpHeader>& headers);
std::string canonical_request(const SigningRequest& request);
std::string string_to_sign(std::string_view canonical_request, const SigningScope& scope);
// HMAC chain "AWS4"+secret -> date -> region -> service -> "aws4_request"; 32 raw bytes.
std::string signing_key(std::string_view secret_access_key, const SigningScope& scope);
// Lower-case hex HMAC-SHA256 of the string to sign under the signing key.
std::string signature(std::string_view signing_key, std::string_view string_to_sign);
// "AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3/aws4_request,
// SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=..."
std::string authorization_header(const SigningRequest& request, const Credentials& credentials,
                                 const SigningScope& scope);

// Signs `request` the way S3 expects: adds x-amz-date (from `now`),
// x-amz-content-sha256 (= payload_hash) and, with a session token,
// x-amz-security-token to request.headers, then appends the Authorization
// header computed over all of them. request.headers must already hold Host
// and any other header to be signed (range, content-type, x-amz-meta-*).
void sign_request(SigningRequest& request, const Credentials& credentials,
                  const std::string& region, std::chrono::system_clock::time_point now);

}  // namespace kennel::s3

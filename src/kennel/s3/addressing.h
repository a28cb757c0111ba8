// Where an S3 request goes: s3:// URIs, endpoints, and path-style versus
// virtual-hosted-style addressing.
//
//   path style     https://s3.eu-west-1.amazonaws.com/BUCKET/KEY   (MinIO, Ceph, s3rver)
//   virtual style  https://BUCKET.s3.eu-west-1.amazonaws.com/KEY   (AWS's preferred form)
//
// `auto` picks virtual style for AWS endpoints when the bucket name is a valid
// DNS label without dots (dots break the *.s3.amazonaws.com TLS certificate),
// and path style for everything else, custom endpoints included: S3-compatible
// stores on a host name or an IP address rarely have wildcard DNS. A config
// file's `addressing_style` or an option overrides it.
//
// Keys are bytes; in the path each byte outside A-Z a-z 0-9 - . _ ~ is
// percent-encoded once and '/' is kept, so "a b/ü.jpg" is sent as
// "a%20b/%C3%BC.jpg" and signed as exactly that (sigv4.h).
// Thread-safety: values and pure functions.
#pragma once

#include <string>
#include <string_view>

#include "kennel/util/status.h"

namespace kennel::s3 {

// An object (key non-empty) or a prefix/bucket (key empty or ending in '/').
struct S3Uri {
  std::string bucket;
  std::string key;

  std::string text() const { return "s3://" + bucket + "/" + key; }
};

bool is_s3_uri(std::string_view text);
// Parses "s3://BUCKET", "s3://BUCKET/" or "s3://BUCKET/KEY-OR-PREFIX". The key
// is taken literally (no percent-decoding: S3 keys may hold '%').
// kInvalidArgument naming the text for another scheme, an empty or invalid bucket.
Result<S3Uri> parse_s3_uri(std::string_view text);

// S3's bucket naming rules, the legacy us-east-1 ones included (upper case and
// '_' were once allowed there): 3-255 characters of A-Z a-z 0-9 . - _.
// kInvalidArgument says which rule fails.
Status validate_bucket_name(std::string_view bucket);
// True for names usable as a DNS label in a TLS host: 3-63 characters of
// a-z 0-9 -, starting and ending with a letter or digit, no dots.
bool is_virtual_hostable(std::string_view bucket);

enum class AddressingStyle { kAuto, kPath, kVirtual };
const char* addressing_style_name(AddressingStyle style);  // "auto", "path", "virtual"
// "auto" | "path" | "virtual"; kInvalidArgument otherwise.
Result<AddressingStyle> parse_addressing_style(std::string_view text);

struct Endpoint {
  std::string scheme;     // "http" or "https"
  std::string host;       // lower-case; an IPv6 address keeps its brackets
  int port = 0;           // 0: the scheme's default port
  std::string base_path;  // "" or "/prefix" (no trailing '/'), for stores behind a path

  // The Host header: host, plus ":port" when the port is not the scheme's default.
  std::string authority() const;
  // "https://s3.eu-west-1.amazonaws.com" or "http://127.0.0.1:9000/s3"
  std::string text() const;
  // An AWS S3 endpoint (*.amazonaws.com, *.amazonaws.com.cn).
  bool is_aws() const;
};

// Parses an endpoint URL ("http://127.0.0.1:9000", "https://minio.lab/s3").
// kInvalidArgument for another scheme, an empty host, a bad port, or a query.
Result<Endpoint> parse_endpoint(std::string_view url);
// AWS's endpoint for a region: https://s3.amazonaws.com for us-east-1 (as
// botocore uses it), https://s3.REGION.amazonaws.com(.cn) elsewhere.
Endpoint aws_endpoint(std::string_view region);

// The addressing actually used for one bucket (auto resolved as above).
AddressingStyle effective_addressing(const Endpoint& endpoint, AddressingStyle configured,
                                     std::string_view bucket);

struct RequestTarget {
  std::string url;            // full URL, query included
  std::string host;           // the Host header
  std::string canonical_uri;  // the path as sent and signed
};

// The URL of a request for `key` in `bucket` (key "" addresses the bucket
// itself), with `encoded_query` (already canonical_query_string()-encoded, may
// be empty) after '?'. Path style addresses a bucket as "/BUCKET", virtual
// style as "/", as botocore does.
RequestTarget request_target(const Endpoint& endpoint, AddressingStyle style,
                             std::string_view bucket, std::string_view key,
                             std::string_view encoded_query);

}  // namespace kennel::s3

// libFuzzer target: a POST /invocations request as Kennel's server sees it.
//
// Input layout (hand-writable, so seeds are easy to make):
//   byte 0       content type: kContentTypes[byte % size]
//   byte 1       flags: bit 0 = a ?top_k= query follows, bit 1 = a custom-attributes header follows
//   [len, bytes] the query string, if bit 0 (len is one byte, clamped to what is left)
//   [len, bytes] the custom attributes, if bit 1
//   rest         the body
// parse_invocation runs on it; every input with bytes, and the raw body, go
// through decode_image; the raw body also through decode_base64. Errors are
// fine; crashes, leaks, sanitizer reports and broken invariants are not.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_checks.h"
#include "kennel/serve/invocation.h"

namespace {

constexpr std::array<std::string_view, 10> kContentTypes = {
    "application/json", "image/jpeg", "image/png",    "application/x-image",      "text/plain",
    "",                 "application/json; charset=utf-8", "Image/PNG ; q=1", "application/octet-stream",
    "text/json"};

std::string_view take_field(std::string_view& rest) {
  if (rest.empty()) return {};
  const size_t length = std::min<size_t>(static_cast<uint8_t>(rest.front()), rest.size() - 1);
  const std::string_view field = rest.substr(1, length);
  rest.remove_prefix(1 + length);
  return field;
}

// Returns whether the body itself was decoded (a raw image body).
bool check_invocation(const kennel::Result<kennel::serve::Invocation>& result,
                      const kennel::serve::InvocationLimits& limits, std::string_view body) {
  using kennel::ErrorCode;
  using kennel::fuzz::fail;
  if (!result.ok()) {
    const ErrorCode code = result.status().code();
    if (code != ErrorCode::kInvalidArgument && code != ErrorCode::kUnsupportedMediaType) {
      fail("parse_invocation returned an undocumented code:", result.status().to_string());
    }
    if (result.status().message().empty()) fail("parse_invocation error without a message");
    (void)result.status().to_string();
    return false;
  }
  const auto& invocation = *result;
  if (body.empty()) fail("an empty body was accepted");
  if (invocation.inputs.empty()) fail("an accepted request has no inputs");
  if (static_cast<int64_t>(invocation.inputs.size()) > limits.max_images) fail("max_images not enforced");
  if (invocation.top_k < 0 || invocation.top_k > limits.max_top_k) fail("top_k out of range");
  bool decoded_body = false;
  for (const auto& input : invocation.inputs) {
    if (input.url.empty() == input.bytes.empty()) fail("an input must have exactly one of url and bytes");
    if (input.bytes.empty()) continue;
    kennel::fuzz::check_decode(kennel::fuzz::as_bytes(input.bytes), kennel::fuzz::serving_options());
    decoded_body = decoded_body || input.bytes == body;
  }
  return decoded_body;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kennel::fuzz::silence_opencv();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  const std::string_view content_type = kContentTypes[static_cast<uint8_t>(rest[0]) % kContentTypes.size()];
  const auto flags = static_cast<uint8_t>(rest[1]);
  rest.remove_prefix(2);
  const std::string_view query = (flags & 1) ? take_field(rest) : std::string_view();
  const std::string_view attributes = (flags & 2) ? take_field(rest) : std::string_view();
  const std::string_view body = rest;

  const kennel::serve::InvocationLimits limits;
  const bool decoded_body = check_invocation(
      kennel::serve::parse_invocation(content_type, body, query, attributes, limits), limits, body);

  // The raw body as an image (unless parse_invocation already passed it on
  // as one) and as base64 text, whatever the content type said.
  if (!body.empty() && !decoded_body) {
    kennel::fuzz::check_decode(kennel::fuzz::as_bytes(body), kennel::fuzz::serving_options());
  }
  auto decoded = kennel::serve::decode_base64(body);
  if (decoded.ok()) {
    // Four characters carry three bytes; nothing can come out longer.
    if (decoded->size() > body.size() / 4 * 3 + 2) kennel::fuzz::fail("decode_base64 output too long");
  } else if (decoded.status().code() != kennel::ErrorCode::kInvalidArgument) {
    kennel::fuzz::fail("decode_base64 returned an undocumented code:", decoded.status().to_string());
  }
  return 0;
}

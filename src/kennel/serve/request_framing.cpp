#include "kennel/serve/request_framing.h"

#include <algorithm>
#include <cctype>
#include <string>

namespace kennel::serve {

namespace {

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// What is shown of a client's header value in a message: short and printable.
std::string shown(std::string_view value) {
  std::string out;
  for (const char c : value.substr(0, 40)) {
    out += std::isprint(static_cast<unsigned char>(c)) ? c : '?';
  }
  return value.size() > 40 ? out + "..." : out;
}

}  // namespace

std::optional<size_t> find_head_end(std::string_view bytes, size_t from) {
  const size_t found = bytes.find("\r\n\r\n", std::min(from, bytes.size()));
  if (found == std::string_view::npos) return std::nullopt;
  return found + 4;
}

Result<RequestFraming> parse_framing(std::string_view head) {
  RequestFraming framing;
  std::optional<uint64_t> content_length;
  bool chunked = false;
  size_t line_begin = head.find("\r\n");
  if (line_begin == std::string_view::npos)
    return invalid_argument("the request has no request line");
  line_begin += 2;  // past the request line
  while (line_begin < head.size()) {
    const size_t line_end = head.find("\r\n", line_begin);
    if (line_end == std::string_view::npos || line_end == line_begin) break;  // the blank line
    const std::string_view line = head.substr(line_begin, line_end - line_begin);
    if (line.front() == ' ' || line.front() == '\t') {
      return invalid_argument("a header line starts with whitespace (obsolete line folding)");
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      return invalid_argument("malformed header line '{}'", shown(line));
    }
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = trim(line.substr(colon + 1));
    if (equals_ignoring_case(name, "Content-Length")) {
      uint64_t length = 0;
      const bool digits =
          !value.empty() && value.size() <= 18 &&
          std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (!digits) return invalid_argument("Content-Length '{}' is not a byte count", shown(value));
      for (const char c : value) length = length * 10 + static_cast<uint64_t>(c - '0');
      if (content_length && *content_length != length) {
        return invalid_argument("two different Content-Length headers ({} and {})", *content_length,
                                length);
      }
      content_length = length;
    } else if (equals_ignoring_case(name, "Transfer-Encoding")) {
      if (chunked || !equals_ignoring_case(value, "chunked")) {
        return invalid_argument(
            "Transfer-Encoding '{}' is not supported: send the body with Content-Length or as "
            "one 'Transfer-Encoding: chunked'",
            shown(value));
      }
      chunked = true;
    } else if (equals_ignoring_case(name, "Expect") &&
               equals_ignoring_case(value, "100-continue")) {
      framing.expects_continue = true;
      framing.expect_line_begin = line_begin;
      framing.expect_line_end = line_end + 2;
    }
    line_begin = line_end + 2;
  }
  if (chunked && content_length) {
    return invalid_argument("the request has both Content-Length and Transfer-Encoding");
  }
  if (chunked) {
    framing.body = RequestFraming::Body::kChunked;
  } else if (content_length && *content_length > 0) {
    framing.body = RequestFraming::Body::kLength;
    framing.content_length = *content_length;
  }
  if (framing.body == RequestFraming::Body::kNone) framing.expects_continue = false;
  return framing;
}

ChunkedScan scan_chunked_body(std::string_view body, uint64_t max_data_bytes,
                              uint64_t max_overhead_bytes, size_t& end) {
  constexpr size_t kMaxSizeLine = 1024;  // hex digits plus chunk extensions
  uint64_t data_bytes = 0;
  uint64_t overhead_bytes = 0;
  size_t at = 0;
  while (true) {
    const size_t line_end = body.find("\r\n", at);
    if (line_end == std::string_view::npos) {
      return body.size() - at > kMaxSizeLine ? ChunkedScan::kMalformed : ChunkedScan::kIncomplete;
    }
    if (line_end - at > kMaxSizeLine) return ChunkedScan::kMalformed;
    std::string_view size_text = body.substr(at, line_end - at);
    size_text = trim(size_text.substr(0, size_text.find(';')));
    if (size_text.empty() || size_text.size() > 15) return ChunkedScan::kMalformed;
    uint64_t size = 0;
    for (const char c : size_text) {
      const int digit = std::isdigit(static_cast<unsigned char>(c))
                            ? c - '0'
                            : (std::isxdigit(static_cast<unsigned char>(c))
                                   ? std::tolower(static_cast<unsigned char>(c)) - 'a' + 10
                                   : -1);
      if (digit < 0) return ChunkedScan::kMalformed;
      size = size * 16 + static_cast<uint64_t>(digit);
    }
    overhead_bytes += line_end + 2 - at;
    at = line_end + 2;
    if (size == 0) break;
    data_bytes += size;
    if (data_bytes > max_data_bytes) return ChunkedScan::kTooLarge;
    if (overhead_bytes > max_overhead_bytes) return ChunkedScan::kTooLarge;
    if (body.size() < at + size + 2) return ChunkedScan::kIncomplete;
    if (body.substr(at + size, 2) != "\r\n") return ChunkedScan::kMalformed;
    at += size + 2;
  }
  // Trailer fields, then the blank line.
  while (true) {
    const size_t line_end = body.find("\r\n", at);
    if (line_end == std::string_view::npos) {
      return body.size() - at > max_overhead_bytes ? ChunkedScan::kTooLarge
                                                   : ChunkedScan::kIncomplete;
    }
    overhead_bytes += line_end + 2 - at;
    if (overhead_bytes > max_overhead_bytes) return ChunkedScan::kTooLarge;
    const bool blank = line_end == at;
    at = line_end + 2;
    if (blank) break;
  }
  end = at;
  return ChunkedScan::kComplete;
}

}  // namespace kennel::serve

// Where an HTTP/1.1 request ends, read from its bytes as they arrive: the end
// of the head (request line and headers), how the body is framed
// (Content-Length or chunked) and the end of a chunked body. The listener
// (http_listener.h) uses this to read whole requests before a handler thread
// sees them, so no handler ever waits on a slow client.
//
// Ambiguous framing is refused rather than guessed (request smuggling): both
// Content-Length and Transfer-Encoding, two different Content-Lengths, or a
// Transfer-Encoding other than "chunked". A request with neither has no body.
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "kennel/util/status.h"

namespace kennel::serve {

struct RequestFraming {
  enum class Body { kNone, kLength, kChunked };
  Body body = Body::kNone;
  uint64_t content_length = 0;  // for kLength
  // "Expect: 100-continue": the client waits for "100 Continue" before its
  // body. The offsets delimit that header line (CRLF included) in the head.
  bool expects_continue = false;
  size_t expect_line_begin = 0;
  size_t expect_line_end = 0;
};

// The offset just past the CRLFCRLF that ends the head, searching `bytes`
// from `from` (pass where the last search stopped, minus 3), or nullopt.
std::optional<size_t> find_head_end(std::string_view bytes, size_t from = 0);

// The body's framing, from a complete head. kInvalidArgument naming the header otherwise.
Result<RequestFraming> parse_framing(std::string_view head);

enum class ChunkedScan { kIncomplete, kComplete, kMalformed, kTooLarge };
// Scans a chunked body from its first byte. kComplete sets `end` to the
// offset just past it (last chunk and trailers included). kTooLarge once the
// chunk data exceeds `max_data_bytes`, or chunk-size lines or trailers exceed
// `max_overhead_bytes`.
ChunkedScan scan_chunked_body(std::string_view body, uint64_t max_data_bytes,
                              uint64_t max_overhead_bytes, size_t& end);

}  // namespace kennel::serve

#include "kennel/serve/request_framing.h"

#include <gtest/gtest.h>

namespace kennel::serve {
namespace {

TEST(FindHeadEnd, FindsTheBlankLineIncrementally) {
  const std::string head = "GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY";
  EXPECT_EQ(find_head_end(head), head.size() - 4);
  EXPECT_FALSE(find_head_end("GET / HTTP/1.1\r\nHost: a\r\n\r").has_value());
  // Resuming three bytes before where the last search stopped still finds a split terminator.
  const std::string partial = "GET / HTTP/1.1\r\nHost: a\r\n\r";
  EXPECT_EQ(find_head_end(partial + "\n", partial.size() - 3), partial.size() + 1);
}

RequestFraming framing_of(const std::string& headers) {
  auto framing = parse_framing("POST /x HTTP/1.1\r\n" + headers + "\r\n");
  EXPECT_TRUE(framing.ok()) << headers << ": " << framing.status().to_string();
  return framing.ok() ? *framing : RequestFraming{};
}

TEST(ParseFraming, ReadsTheBodyFraming) {
  EXPECT_EQ(framing_of("Host: a\r\n").body, RequestFraming::Body::kNone);
  EXPECT_EQ(framing_of("Content-Length: 0\r\n").body, RequestFraming::Body::kNone);
  const auto length = framing_of("content-length:  42 \r\n");
  EXPECT_EQ(length.body, RequestFraming::Body::kLength);
  EXPECT_EQ(length.content_length, 42u);
  EXPECT_EQ(framing_of("Content-Length: 7\r\nContent-Length: 7\r\n").content_length, 7u);
  EXPECT_EQ(framing_of("Transfer-Encoding: Chunked\r\n").body, RequestFraming::Body::kChunked);
  const std::string head = "POST /x HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-Continue\r\n\r\n";
  auto expecting = parse_framing(head);
  ASSERT_TRUE(expecting.ok());
  EXPECT_TRUE(expecting->expects_continue);
  EXPECT_EQ(head.substr(expecting->expect_line_begin,
                        expecting->expect_line_end - expecting->expect_line_begin),
            "Expect: 100-Continue\r\n");
  EXPECT_FALSE(
      framing_of("Expect: 100-continue\r\n").expects_continue);  // no body: nothing to wait for
}

TEST(ParseFraming, RefusesAmbiguousFraming) {
  for (const char* headers :
       {"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
        "Content-Length: 3\r\nContent-Length: 4\r\n", "Content-Length: -1\r\n",
        "Content-Length: 3, 3\r\n", "Content-Length: 0x10\r\n",
        "Content-Length: 99999999999999999999\r\n", "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "Host: a\r\n folded\r\n",
        "no colon here\r\n"}) {
    auto framing = parse_framing(std::string("POST /x HTTP/1.1\r\n") + headers + "\r\n");
    ASSERT_FALSE(framing.ok()) << headers;
    EXPECT_EQ(framing.status().code(), ErrorCode::kInvalidArgument) << headers;
  }
}

TEST(ScanChunkedBody, FindsTheEndAndRefusesTooMuch) {
  size_t end = 0;
  const std::string body = "3\r\nabc\r\nA;name=value\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nNEXT";
  ASSERT_EQ(scan_chunked_body(body, 100, 100, end), ChunkedScan::kComplete);
  EXPECT_EQ(body.substr(end), "NEXT");
  for (size_t cut = 0; cut < body.size() - 4; ++cut) {
    EXPECT_EQ(scan_chunked_body(body.substr(0, cut), 100, 100, end), ChunkedScan::kIncomplete)
        << cut;
  }
  EXPECT_EQ(scan_chunked_body(body, 12, 100, end), ChunkedScan::kTooLarge);
  EXPECT_EQ(scan_chunked_body("FFFFFFFFFF\r\n", 1000, 100, end), ChunkedScan::kTooLarge);
  EXPECT_EQ(scan_chunked_body("zz\r\n", 100, 100, end), ChunkedScan::kMalformed);
  EXPECT_EQ(scan_chunked_body("3\r\nabcX\r\n", 100, 100, end), ChunkedScan::kMalformed);
  EXPECT_EQ(scan_chunked_body(std::string(2000, '1'), 100, 100, end), ChunkedScan::kMalformed);
  // Many empty-looking chunks cannot smuggle unbounded overhead past the limit.
  std::string many;
  for (int i = 0; i < 200; ++i) many += "1\r\nx\r\n";
  EXPECT_EQ(scan_chunked_body(many, 1000, 100, end), ChunkedScan::kTooLarge);
}

}  // namespace
}  // namespace kennel::serve

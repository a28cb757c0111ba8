// Parsing POST /invocations: every accepted body, every refusal with its code.
#include "kennel/serve/invocation.h"

#include <gtest/gtest.h>

namespace kennel::serve {
namespace {

Result<Invocation> parse(std::string_view type, std::string_view body, std::string_view query = "",
                         std::string_view attributes = "") {
  return parse_invocation(type, body, query, attributes);
}

TEST(InvocationTest, JsonUrlForms) {
  auto one = parse("application/json", R"({"url": "https://x/a.jpg"})");
  ASSERT_TRUE(one.ok()) << one.status().to_string();
  ASSERT_EQ(one->inputs.size(), 1u);
  EXPECT_EQ(one->inputs[0].url, "https://x/a.jpg");
  EXPECT_EQ(one->top_k, 0);

  auto many = parse("application/json; charset=utf-8", R"({"urls": ["s3://b/k1", "file:///d/k2"]})");
  ASSERT_TRUE(many.ok());
  ASSERT_EQ(many->inputs.size(), 2u);
  EXPECT_EQ(many->inputs[1].url, "file:///d/k2");

  auto instances = parse("Application/JSON",
                         R"({"instances": [{"url": "http://h/1"}, "http://h/2", {"image": "aGVsbG8="}]})");
  ASSERT_TRUE(instances.ok()) << instances.status().to_string();
  ASSERT_EQ(instances->inputs.size(), 3u);
  EXPECT_EQ(instances->inputs[1].url, "http://h/2");
  EXPECT_EQ(instances->inputs[2].bytes, "hello");
}

TEST(InvocationTest, RawImageBodies) {
  for (const char* type : {"image/jpeg", "image/png", "application/x-image", "application/octet-stream"}) {
    auto raw = parse(type, "\xff\xd8\xff");
    ASSERT_TRUE(raw.ok()) << type;
    ASSERT_EQ(raw->inputs.size(), 1u);
    EXPECT_EQ(raw->inputs[0].bytes, "\xff\xd8\xff");
  }
}

TEST(InvocationTest, TopKFromQueryOrCustomAttributes) {
  EXPECT_EQ(parse("image/jpeg", "x", "3")->top_k, 3);
  EXPECT_EQ(parse("image/jpeg", "x", "", "top_k=4")->top_k, 4);
  EXPECT_EQ(parse("image/jpeg", "x", "", "foo=bar, top_k=2;x=y")->top_k, 2);
  EXPECT_EQ(parse("image/jpeg", "x", "", "foo=bar")->top_k, 0);
  for (const char* bad : {"0", "-1", "many", "3x", "100000"}) {
    auto result = parse("image/jpeg", "x", bad);
    EXPECT_EQ(result.status().code(), ErrorCode::kInvalidArgument) << bad;
    EXPECT_NE(result.status().message().find(bad), std::string::npos) << result.status().message();
  }
}

TEST(InvocationTest, RefusalsNameTheProblem) {
  struct Case {
    std::string type, body;
    ErrorCode code;
    std::string mentions;
  };
  const std::vector<Case> cases = {
      {"text/plain", "x", ErrorCode::kUnsupportedMediaType, "text/plain"},
      {"", "x", ErrorCode::kUnsupportedMediaType, "(none)"},
      {"application/json", "{not json", ErrorCode::kInvalidArgument, "not valid JSON"},
      {"application/json", R"({"uri": "x", "other": 1})", ErrorCode::kInvalidArgument, "other, uri"},
      {"application/json", "[1, 2]", ErrorCode::kInvalidArgument, "object"},
      {"application/json", R"({"url": 5})", ErrorCode::kInvalidArgument, "string"},
      {"application/json", R"({"url": ""})", ErrorCode::kInvalidArgument, "empty"},
      {"application/json", R"({"urls": []})", ErrorCode::kInvalidArgument, "empty list"},
      {"application/json", R"({"urls": "x"})", ErrorCode::kInvalidArgument, "must be a list"},
      {"application/json", R"({"image": "***"})", ErrorCode::kInvalidArgument, "base64"},
      {"application/json", R"({"instances": [{"nothing": 1}]})", ErrorCode::kInvalidArgument, "\"instances\"[0]"},
      {"image/jpeg", "", ErrorCode::kInvalidArgument, "empty"},
  };
  for (const auto& c : cases) {
    auto result = parse(c.type, c.body);
    ASSERT_FALSE(result.ok()) << c.body;
    EXPECT_EQ(result.status().code(), c.code) << c.body;
    EXPECT_NE(result.status().message().find(c.mentions), std::string::npos)
        << c.body << " -> " << result.status().message();
  }
}

// Regression (found by tests/fuzz): json::parse throws out_of_range, not
// parse_error, for a number past double, which escaped as a 500.
TEST(InvocationTest, NumberOverflowIsMalformedJsonNotACrash) {
  auto result = parse("application/json", R"({"url": 1e400})");
  EXPECT_EQ(result.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(result.status().message().find("not valid JSON"), std::string::npos);
}

TEST(InvocationTest, TooManyImagesIsRefused) {
  std::string body = R"({"urls": [)";
  for (int i = 0; i < 65; ++i) body += std::string(i ? "," : "") + "\"http://h/" + std::to_string(i) + "\"";
  body += "]}";
  auto result = parse("application/json", body);
  EXPECT_EQ(result.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(result.status().message().find("65"), std::string::npos);
}

TEST(Base64Test, AlphabetsPaddingWhitespaceAndDataUrls) {
  EXPECT_EQ(*decode_base64("aGVsbG8="), "hello");
  EXPECT_EQ(*decode_base64("aGVsbG8"), "hello");
  EXPECT_EQ(*decode_base64("aGVs\nbG8=\n"), "hello");
  EXPECT_EQ(*decode_base64("_-8="), std::string("\xff\xef", 2));
  EXPECT_EQ(*decode_base64("/+8="), std::string("\xff\xef", 2));
  EXPECT_EQ(*decode_base64("data:image/png;base64,aGk="), "hi");
  EXPECT_EQ(*decode_base64(""), "");
  EXPECT_FALSE(decode_base64("a").ok());
  EXPECT_FALSE(decode_base64("aGk=x").ok());
  EXPECT_FALSE(decode_base64("aG!k").ok());
  EXPECT_FALSE(decode_base64("data:image/png,aGk=").ok());
}

}  // namespace
}  // namespace kennel::serve

#include "kennel/studio/web_guard.h"

#include <gtest/gtest.h>

namespace kennel::studio {
namespace {

class WebGuardTest : public ::testing::Test {
 protected:
  GuardRequest get(const std::string& path = "/api/jobs") {
    return {.method = "GET", .path = path, .host = "127.0.0.1:8070"};
  }
  GuardRequest post() {
    return {.method = "POST",
            .path = "/api/jobs/j/stop",
            .host = "127.0.0.1:8070",
            .origin = "http://127.0.0.1:8070",
            .csrf_token = token_};
  }
  std::string token_ = random_token();
  WebGuard guard_{8070, {"studio.internal", "localhost:9000"}, token_};
};

TEST_F(WebGuardTest, OwnNamesAreAllowed) {
  EXPECT_TRUE(guard_.check(get()).ok());
  for (const char* host : {"localhost:8070", "LOCALHOST:8070", "[::1]:8070", "studio.internal:8070",
                           "localhost:9000"}) {
    auto request = get();
    request.host = host;
    EXPECT_TRUE(guard_.check(request).ok()) << host;
  }
}

// DNS rebinding: the attacker's name resolves to 127.0.0.1, the browser sends its own Host.
TEST_F(WebGuardTest, ForeignHostsAreRefusedEvenOnLoopback) {
  for (const char* host :
       {"evil.example:8070", "127.0.0.1:8071", "", "127.0.0.1", "localhost.evil.example:8070"}) {
    auto request = get("/jobs");
    request.host = host;
    const Status status = guard_.check(request);
    EXPECT_EQ(status.code(), ErrorCode::kPermissionDenied) << host;
  }
}

TEST_F(WebGuardTest, ForeignOriginsAreRefusedOnEveryMethod) {
  for (const char* origin : {"http://evil.example", "null", "https://127.0.0.1:8070",
                             "http://127.0.0.1:8070@evil.example", "http://127.0.0.1:80"}) {
    auto request = get();
    request.origin = origin;
    EXPECT_EQ(guard_.check(request).code(), ErrorCode::kPermissionDenied) << origin;
  }
  auto same = get();
  same.origin = "http://localhost:8070";
  EXPECT_TRUE(guard_.check(same).ok());
  auto cross = get();
  cross.sec_fetch_site = "cross-site";
  EXPECT_EQ(guard_.check(cross).code(), ErrorCode::kPermissionDenied);
  // A link from elsewhere to a page is a navigation, not an API call: it may open.
  auto navigation = get("/jobs");
  navigation.sec_fetch_site = "cross-site";
  EXPECT_TRUE(guard_.check(navigation).ok());
}

TEST_F(WebGuardTest, APostNeedsItsOriginAndTheToken) {
  EXPECT_TRUE(guard_.check(post()).ok());
  auto no_token = post();
  no_token.csrf_token = "";
  EXPECT_EQ(guard_.check(no_token).code(), ErrorCode::kPermissionDenied);
  auto wrong_token = post();
  wrong_token.csrf_token[0] = wrong_token.csrf_token[0] == 'a' ? 'b' : 'a';
  EXPECT_EQ(guard_.check(wrong_token).code(), ErrorCode::kPermissionDenied);
  auto no_origin = post();
  no_origin.origin = "";
  EXPECT_EQ(guard_.check(no_origin).code(), ErrorCode::kPermissionDenied);
  no_origin.referer =
      "http://127.0.0.1:8070/jobs/j";  // an old browser: the Referer says where from
  EXPECT_TRUE(guard_.check(no_origin).ok());
  auto foreign = post();
  foreign.origin = "http://evil.example";
  EXPECT_EQ(guard_.check(foreign).code(), ErrorCode::kPermissionDenied);
}

TEST_F(WebGuardTest, TokensAreRandomAndLong) {
  const std::string a = random_token(), b = random_token();
  EXPECT_EQ(a.size(), 64u);
  EXPECT_NE(a, b);
}

TEST(LoopbackTest, OnlyLoopbackAddressesCount) {
  for (const char* host : {"127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LocalHost"}) {
    EXPECT_TRUE(is_loopback_host(host)) << host;
  }
  for (const char* host :
       {"0.0.0.0", "::", "10.0.0.1", "127.evil.example", "localhost.example", "", "128.0.0.1"}) {
    EXPECT_FALSE(is_loopback_host(host)) << host;
  }
}

}  // namespace
}  // namespace kennel::studio

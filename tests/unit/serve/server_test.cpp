#include "kennel/serve/server.h"

#include <gtest/gtest.h>

namespace kennel::serve {
namespace {

TEST(ServeOptions, AHostBeyondLoopbackNeedsATokenAndTls) {
  ServeOptions options;
  EXPECT_TRUE(options.validate().ok());  // 127.0.0.1, nothing else needed
  options.listener.host = "0.0.0.0";
  struct Case {
    bool token, tls, insecure, ok;
    const char* says;
  };
  const Case cases[] = {
      {false, false, false, false, "without a token or TLS"},
      {true, false, false, false, "without TLS"},
      {false, true, false, false, "without a token"},
      {true, true, false, true, ""},
      {false, false, true, true, ""},
  };
  for (const Case& c : cases) {
    ServeOptions o = options;
    if (c.token) o.auth_token = "0123456789abcdef0123";
    if (c.tls) {
      o.listener.tls_cert = "cert.pem";
      o.listener.tls_key = "key.pem";
    }
    o.insecure_no_auth = c.insecure;
    const Status status = o.validate();
    EXPECT_EQ(status.ok(), c.ok) << c.says << ": " << status.to_string();
    if (!c.ok) {
      EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
      for (const char* word : {c.says, "--auth-token-file", "--tls-cert", "--insecure-no-auth", "0.0.0.0"}) {
        EXPECT_NE(status.message().find(word), std::string::npos) << word << " in " << status.message();
      }
    }
  }
}

TEST(ServeOptions, ValidateNamesTheFlag) {
  const std::pair<void (*)(ServeOptions&), const char*> cases[] = {
      {[](ServeOptions& o) { o.request_timeout_seconds = 0; }, "--request-timeout"},
      {[](ServeOptions& o) { o.fetch_concurrency = 0; }, "--fetch-concurrency"},
      {[](ServeOptions& o) { o.decode_pixel_budget = -1; }, "--decode-pixel-budget"},
      {[](ServeOptions& o) { o.decode_pixel_budget = 1000; }, "--max-pixels"},
      {[](ServeOptions& o) { o.listener.max_connections = 0; }, "--max-connections"},
      {[](ServeOptions& o) { o.fetch.allowed_networks = {"10.0.0.0"}; }, "allowed_networks[0]"},
  };
  for (const auto& [change, flag] : cases) {
    ServeOptions options;
    change(options);
    const Status status = options.validate();
    ASSERT_FALSE(status.ok()) << flag;
    EXPECT_NE(status.message().find(flag), std::string::npos) << status.message();
  }
  ServeOptions budget_from_max_pixels;
  budget_from_max_pixels.predictor.max_pixels = 1000;
  budget_from_max_pixels.decode_pixel_budget = 1000;
  EXPECT_TRUE(budget_from_max_pixels.validate().ok());
}

}  // namespace
}  // namespace kennel::serve

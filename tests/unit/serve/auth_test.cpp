#include "kennel/serve/auth.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

#include <gtest/gtest.h>

#include "unit/test_util.h"

namespace kennel::serve {
namespace {

constexpr const char* kToken = "0123456789abcdef0123456789abcdef";

std::filesystem::path write_token(const testing::TempDir& dir, const std::string& text, int mode) {
  const auto path = dir / "token";
  std::ofstream(path) << text;
  ::chmod(path.c_str(), static_cast<mode_t>(mode));
  return path;
}

TEST(LoadAuthToken, ReadsAPrivateFileAndTrimsIt) {
  testing::TempDir dir;
  auto token = load_auth_token(write_token(dir, std::string(kToken) + "\n", 0600));
  ASSERT_TRUE(token.ok()) << token.status().to_string();
  ASSERT_TRUE(token->has_value());
  EXPECT_EQ(**token, kToken);
  EXPECT_TRUE(load_auth_token(write_token(dir, kToken, 0400)).ok());
}

TEST(LoadAuthToken, RefusesAFileOthersCanReadNamingTheFix) {
  testing::TempDir dir;
  for (const int mode : {0644, 0640, 0604, 0660, 0602}) {
    const auto path = write_token(dir, kToken, mode);
    auto token = load_auth_token(path);
    ASSERT_FALSE(token.ok()) << std::oct << mode;
    EXPECT_EQ(token.status().code(), ErrorCode::kPermissionDenied);
    EXPECT_NE(token.status().message().find("chmod 600 " + path.string()), std::string::npos)
        << token.status().message();
  }
}

TEST(LoadAuthToken, RefusesMissingEmptyOrWeakTokens) {
  testing::TempDir dir;
  auto missing = load_auth_token(dir / "none");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), ErrorCode::kNotFound);
  for (const char* text : {"", "\n\n", "short", "has a space in the middle of it"}) {
    auto token = load_auth_token(write_token(dir, text, 0600));
    ASSERT_FALSE(token.ok()) << text;
    EXPECT_EQ(token.status().code(), ErrorCode::kInvalidArgument) << text;
    EXPECT_NE(token.status().message().find("openssl rand"), std::string::npos);
  }
}

TEST(LoadAuthToken, FallsBackToTheEnvironment) {
  ::unsetenv(kAuthTokenEnv);
  auto none = load_auth_token("");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  ::setenv(kAuthTokenEnv, kToken, 1);
  auto from_env = load_auth_token("");
  ::unsetenv(kAuthTokenEnv);
  ASSERT_TRUE(from_env.ok()) << from_env.status().to_string();
  EXPECT_EQ(from_env->value(), kToken);
  ::setenv(kAuthTokenEnv, "weak", 1);
  auto weak = load_auth_token("");
  ::unsetenv(kAuthTokenEnv);
  ASSERT_FALSE(weak.ok());
  EXPECT_NE(weak.status().message().find(kAuthTokenEnv), std::string::npos);
}

TEST(BearerCheck, AcceptsOnlyTheExactToken) {
  const BearerCheck check(kToken);
  EXPECT_TRUE(check.accepts(std::string("Bearer ") + kToken));
  EXPECT_TRUE(check.accepts(std::string("bearer  ") + kToken + " "));
  for (const std::string& wrong :
       {std::string(""), std::string("Bearer"), std::string("Bearer "), std::string(kToken),
        std::string("Basic ") + kToken, std::string("Bearer ") + kToken + "x",
        std::string("Bearer ") + std::string(kToken).substr(1), std::string("Bearer") + kToken,
        std::string("Bearer 0123456789ABCDEF0123456789ABCDEF")}) {
    EXPECT_FALSE(check.accepts(wrong)) << wrong;
  }
}

}  // namespace
}  // namespace kennel::serve

#include "kennel/serve/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace kennel::serve {

namespace {

constexpr size_t kMinTokenLength = 16;
constexpr const char* kHowToMake = "make one with `openssl rand -hex 32`";

std::array<uint8_t, 32> sha256(std::string_view text) {
  std::array<uint8_t, 32> digest{};
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest.data(), &length, EVP_sha256(), nullptr);
  return digest;
}

std::string trimmed(std::string text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  size_t start = 0;
  while (start < text.size() && std::isspace(static_cast<unsigned char>(text[start]))) ++start;
  return text.substr(start);
}

Status check_token(const std::string& token, const std::string& origin) {
  if (token.empty()) return invalid_argument("{} is empty: {}", origin, kHowToMake);
  if (token.size() < kMinTokenLength) {
    return invalid_argument("{} holds a token of {} characters; use at least {}: {}", origin,
                            token.size(), kMinTokenLength, kHowToMake);
  }
  for (const char c : token) {
    if (!std::isgraph(static_cast<unsigned char>(c))) {
      return invalid_argument("{} holds a token with spaces or control characters: {}", origin,
                              kHowToMake);
    }
  }
  return {};
}

}  // namespace

Result<std::optional<std::string>> load_auth_token(const std::filesystem::path& file) {
  if (file.empty()) {
    const char* value = std::getenv(kAuthTokenEnv);
    if (value == nullptr) return std::optional<std::string>();
    std::string token = trimmed(value);
    KENNEL_RETURN_IF_ERROR(check_token(token, fmt::format("${}", kAuthTokenEnv)));
    return std::optional<std::string>(std::move(token));
  }
  const std::string name = file.string();
  struct stat info {};
  if (::stat(file.c_str(), &info) != 0) {
    const int error = errno;
    return Status(error == ENOENT ? ErrorCode::kNotFound : ErrorCode::kPermissionDenied,
                  fmt::format("--auth-token-file '{}': {}", name, std::strerror(error)));
  }
  if (!S_ISREG(info.st_mode)) {
    return invalid_argument("--auth-token-file '{}' is not a regular file", name);
  }
  if (info.st_mode & (S_IRWXG | S_IRWXO)) {
    return Status(ErrorCode::kPermissionDenied,
                  fmt::format("--auth-token-file '{}' can be read or changed by other users (mode "
                              "{:03o}): run `chmod 600 {}`",
                              name, info.st_mode & 0777, name));
  }
  std::ifstream in(file, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in) {
    return Status(ErrorCode::kPermissionDenied,
                  fmt::format("--auth-token-file '{}' cannot be read", name));
  }
  std::string token = trimmed(text.str());
  KENNEL_RETURN_IF_ERROR(check_token(token, fmt::format("--auth-token-file '{}'", name)));
  return std::optional<std::string>(std::move(token));
}

BearerCheck::BearerCheck(std::string_view token) : digest_(sha256(token)) {}

bool BearerCheck::accepts(std::string_view authorization) const {
  constexpr std::string_view kScheme = "bearer";
  if (authorization.size() <= kScheme.size()) return false;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != kScheme[i]) return false;
  }
  std::string_view presented = authorization.substr(kScheme.size());
  if (presented.front() != ' ') return false;
  while (!presented.empty() && presented.front() == ' ') presented.remove_prefix(1);
  while (!presented.empty() && presented.back() == ' ') presented.remove_suffix(1);
  const auto digest = sha256(presented);
  return CRYPTO_memcmp(digest.data(), digest_.data(), digest.size()) == 0;
}

}  // namespace kennel::serve

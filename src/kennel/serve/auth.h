// Bearer-token authentication between the endpoint and its clients.
//
// The token comes from a file (`--auth-token-file`) or, without one, from
// the KENNEL_AUTH_TOKEN environment variable. A token file that its group or
// other users may read or write is refused (naming the chmod that fixes it),
// and so is a token under 16 characters. The server compares what a request
// presents with SHA-256 digests and CRYPTO_memcmp, so the time taken says
// nothing about how much of a guess was right, not even its length.
// Thread-safety: pure functions; a BearerCheck is immutable.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "kennel/util/status.h"

namespace kennel::serve {

inline constexpr const char* kAuthTokenEnv = "KENNEL_AUTH_TOKEN";

// The token from `file` if not empty, else from $KENNEL_AUTH_TOKEN, else
// nullopt. Errors: kPermissionDenied (the file is open to group/others),
// kNotFound (no such file), kInvalidArgument (empty or too short), each naming
// the file or variable and what to run.
Result<std::optional<std::string>> load_auth_token(const std::filesystem::path& file);

class BearerCheck {
 public:
  explicit BearerCheck(std::string_view token);
  // True when `authorization` is "Bearer <the token>" (scheme case-insensitive).
  bool accepts(std::string_view authorization) const;

 private:
  std::array<uint8_t, 32> digest_{};
};

}  // namespace kennel::serve

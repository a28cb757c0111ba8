#include "kennel/s3/credentials.h"

#include <fmt/format.h>

namespace kennel::s3 {

std::string Credentials::masked_access_key_id() const {
  constexpr size_t kShown = 4;
  if (access_key_id.size() <= kShown * 2) return std::string(access_key_id.size(), '*');
  return std::string(access_key_id.size() - kShown, '*') +
         access_key_id.substr(access_key_id.size() - kShown);
}

std::string Credentials::describe() const {
  return fmt::format("access key {} from {}{}", masked_access_key_id(), source,
                     session_token.empty() ? "" : " (with a session token)");
}

}  // namespace kennel::s3

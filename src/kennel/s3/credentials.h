// AWS credentials as Kennel holds them: an access key, its secret and an
// optional session token, plus where they were found (for messages). The
// secret and the token never appear in any text this type produces:
// describe() and masked_access_key_id() show only the last four characters of
// the access key id, as `aws configure list` does.
// Thread-safety: a value; share const copies freely.
#pragma once

#include <string>

namespace kennel::s3 {

struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // empty for long-term keys
  // Where they came from, as messages name it: "the environment (AWS_ACCESS_KEY_ID,
  // AWS_SECRET_ACCESS_KEY)" or "profile 'ml' in /home/me/.aws/credentials".
  std::string source;
  // The profile they came from; empty when they came from the environment.
  std::string profile;

  // "****************MPLE": enough to tell two keys apart, never the whole id.
  std::string masked_access_key_id() const;
  // "access key ****MPLE from <source> (with a session token)"; no secret, no token.
  std::string describe() const;
};

}  // namespace kennel::s3

// Which S3 to talk to and as whom, resolved the way the AWS CLI and boto3
// resolve it, so a machine set up for them works with Kennel unchanged.
//
// Every setting is taken from the first place that has it:
//   profile      S3Options::profile (--profile), AWS_PROFILE, AWS_DEFAULT_PROFILE, "default"
//   credentials  --no-sign-request (none: anonymous requests to public buckets), then
//                AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY [+ AWS_SESSION_TOKEN] (skipped
//                when --profile names a profile, as botocore does), then the profile's
//                aws_access_key_id / aws_secret_access_key [/ aws_session_token] in the
//                credentials file, then in the config file
//   region       --region, AWS_REGION, AWS_DEFAULT_REGION, the profile's `region`, us-east-1
//   endpoint     --endpoint-url, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile's
//                `services` section (`s3 =` / `endpoint_url =`), the profile's nested
//                `s3 =` / `endpoint_url =`, its `endpoint_url`, else AWS's endpoint for
//                the region (AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true skips the
//                environment and files)
//   addressing   S3Options::addressing_style, the profile's nested `s3 =` /
//                `addressing_style = auto|path|virtual`, auto (addressing.h)
//   CA bundle    --ca-bundle, AWS_CA_BUNDLE, the profile's `ca_bundle`, the system store
// Files: AWS_SHARED_CREDENTIALS_FILE (default ~/.aws/credentials, sections `[NAME]`) and
// AWS_CONFIG_FILE (default ~/.aws/config, sections `[default]` / `[profile NAME]`).
//
// Not supported, and refused with a message that says what to do instead: profiles
// that assume a role (role_arn), use SSO (sso_*), web identity, or credential_process;
// credentials from EC2/ECS instance metadata.
//
// No text made here holds a secret or a session token (credentials.h). Errors
// name the profile, the file and the missing field.
// Thread-safety: values and pure functions (the environment is read through
// the EnvironmentLookup given).
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "kennel/s3/addressing.h"
#include "kennel/s3/credentials.h"
#include "kennel/util/status.h"

namespace kennel::s3 {

// What the user chose on the command line or in a spec; empty = not chosen.
struct S3Options {
  std::string profile;       // --profile
  std::string region;        // --region
  std::string endpoint_url;  // --endpoint-url: an S3-compatible store (MinIO, Ceph, R2, s3rver)
  std::optional<AddressingStyle> addressing_style;
  std::string ca_bundle;         // --ca-bundle: PEM file of CAs to trust instead of the system's
  bool no_sign_request = false;  // --no-sign-request: anonymous, for public buckets
};

// The resolved settings; every value says where it came from.
struct S3Config {
  std::string profile;
  std::string profile_source;  // "--profile", "AWS_PROFILE", "default"
  std::string region;
  std::string region_source;  // "AWS_REGION", "profile 'ml' in /home/me/.aws/config", "default"
  Endpoint endpoint;
  std::string endpoint_source;
  AddressingStyle addressing_style = AddressingStyle::kAuto;
  std::string addressing_source;
  std::optional<Credentials> credentials;  // nullopt: anonymous (--no-sign-request)
  std::string ca_bundle;                   // empty: the system's CA store
  std::string ca_bundle_source;

  bool anonymous() const { return !credentials.has_value(); }
  // One "name: value (source)" line per setting; the secret and token never appear.
  std::string describe() const;
};

// Reads one environment variable: nullopt when unset. Empty values count as unset.
using EnvironmentLookup = std::function<std::optional<std::string>(const std::string& name)>;
// The process environment (getenv).
EnvironmentLookup process_environment();

// The global flags of `kennel` (--profile, --region, --endpoint-url,
// --no-sign-request) are exported as these variables, so the processes Kennel
// starts (tuning trials, data-parallel ranks, Slurm jobs) resolve S3 as the
// command did. Kennel's own names: AWS_PROFILE and friends mean something
// weaker (an AWS_PROFILE does not outrank AWS_ACCESS_KEY_ID; --profile does).
inline constexpr const char* kProfileVariable = "KENNEL_S3_PROFILE";
inline constexpr const char* kRegionVariable = "KENNEL_S3_REGION";
inline constexpr const char* kEndpointUrlVariable = "KENNEL_S3_ENDPOINT_URL";
inline constexpr const char* kNoSignRequestVariable = "KENNEL_S3_NO_SIGN_REQUEST";  // "1"
// The options those variables carry: what every S3 user in a process starts from.
S3Options command_line_options(const EnvironmentLookup& environment = process_environment());

// Resolves the settings as above. Errors (each names the variable, profile,
// file and field, and says what to do):
//   kInvalidArgument    a malformed value (region, endpoint URL, addressing
//                       style), a config file that does not parse
//   kNotFound           the named profile is in neither file; the CA bundle file is missing
//   kFailedPrecondition no credentials anywhere (and not --no-sign-request),
//                       half a key pair, or a profile using an unsupported source
//   kPermissionDenied   a config file that cannot be read
Result<S3Config> resolve_s3_config(const S3Options& options,
                                   const EnvironmentLookup& environment = process_environment());

}  // namespace kennel::s3

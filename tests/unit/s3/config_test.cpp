#include "kennel/s3/config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "unit/test_util.h"

namespace kennel::s3 {
namespace {

using kennel::testing::TempDir;

constexpr const char* kSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

// A fake environment and a fake HOME holding ~/.aws files.
class ConfigTest : public ::testing::Test {
 protected:
  ConfigTest() { variables_["HOME"] = home_.path().string(); }

  void set(const std::string& name, const std::string& value) { variables_[name] = value; }
  void write(const std::string& relative, const std::string& text) {
    const auto path = home_.path() / relative;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path) << text;
  }
  std::string path(const std::string& relative) const { return (home_.path() / relative).string(); }
  Result<S3Config> resolve(const S3Options& options = {}) {
    return resolve_s3_config(options,
                             [this](const std::string& name) -> std::optional<std::string> {
                               const auto found = variables_.find(name);
                               if (found == variables_.end()) return std::nullopt;
                               return found->second;
                             });
  }

  TempDir home_;
  std::map<std::string, std::string> variables_;
};

TEST_F(ConfigTest, EnvironmentCredentialsRegionAndEndpoint) {
  set("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE");
  set("AWS_SECRET_ACCESS_KEY", kSecret);
  set("AWS_SESSION_TOKEN", "session-token-value");
  set("AWS_DEFAULT_REGION", "eu-west-1");
  set("AWS_ENDPOINT_URL", "http://127.0.0.1:9000");
  const S3Config config = resolve().value();
  ASSERT_TRUE(config.credentials);
  EXPECT_EQ(config.credentials->access_key_id, "AKIAIOSFODNN7EXAMPLE");
  EXPECT_EQ(config.credentials->secret_access_key, kSecret);
  EXPECT_EQ(config.credentials->session_token, "session-token-value");
  EXPECT_EQ(config.credentials->profile, "");
  EXPECT_EQ(config.region, "eu-west-1");
  EXPECT_EQ(config.region_source, "AWS_DEFAULT_REGION");
  EXPECT_EQ(config.endpoint.text(), "http://127.0.0.1:9000");
  EXPECT_EQ(config.endpoint_source, "AWS_ENDPOINT_URL");
  EXPECT_EQ(config.addressing_style, AddressingStyle::kAuto);
  EXPECT_EQ(config.profile, "default");
}

TEST_F(ConfigTest, DescribeNeverShowsTheSecretOrToken) {
  set("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE");
  set("AWS_SECRET_ACCESS_KEY", kSecret);
  set("AWS_SESSION_TOKEN", "session-token-value");
  const S3Config config = resolve().value();
  const std::string text = config.describe();
  EXPECT_EQ(text.find(kSecret), std::string::npos);
  EXPECT_EQ(text.find("session-token-value"), std::string::npos);
  EXPECT_EQ(text.find("AKIAIOSFODNN7EXAMPLE"), std::string::npos);
  EXPECT_NE(text.find("****************MPLE"), std::string::npos);
  EXPECT_NE(text.find("with a session token"), std::string::npos);
  EXPECT_NE(text.find("region: us-east-1 (default)"), std::string::npos);
  EXPECT_NE(text.find("endpoint: https://s3.amazonaws.com"), std::string::npos);
}

TEST_F(ConfigTest, HalfAKeyPairInTheEnvironmentNamesTheMissingVariable) {
  set("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE");
  const Status status = resolve().status();
  EXPECT_EQ(status.code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(status.message().find("AWS_SECRET_ACCESS_KEY is not"), std::string::npos);
}

TEST_F(ConfigTest, DefaultProfileFromTheCredentialsFile) {
  write(".aws/credentials",
        std::string("[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = ") +
            kSecret + "\n");
  const S3Config config = resolve().value();
  EXPECT_EQ(config.credentials->access_key_id, "AKIDDEFAULT");
  EXPECT_EQ(config.credentials->profile, "default");
  EXPECT_EQ(config.credentials->source, "profile 'default' in " + path(".aws/credentials"));
  EXPECT_EQ(config.region, "us-east-1");
}

TEST_F(ConfigTest, NamedProfileTakesCredentialsRegionEndpointAndAddressingFromItsFiles) {
  write(".aws/credentials",
        "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s\n"
        "[ml]\naws_access_key_id = AKIDML\naws_secret_access_key = sml\n"
        "aws_session_token = tok\n");
  write(".aws/config",
        "[default]\nregion = us-west-2\n"
        "[profile ml]\nregion = eu-central-1\nendpoint_url = http://minio.lab:9000\n"
        "s3 =\n  addressing_style = virtual\n");
  set("AWS_PROFILE", "ml");
  const S3Config config = resolve().value();
  EXPECT_EQ(config.profile, "ml");
  EXPECT_EQ(config.profile_source, "AWS_PROFILE");
  EXPECT_EQ(config.credentials->access_key_id, "AKIDML");
  EXPECT_EQ(config.credentials->session_token, "tok");
  EXPECT_EQ(config.region, "eu-central-1");
  EXPECT_EQ(config.region_source, "region of profile 'ml' in " + path(".aws/config"));
  EXPECT_EQ(config.endpoint.text(), "http://minio.lab:9000");
  EXPECT_EQ(config.addressing_style, AddressingStyle::kVirtual);
  EXPECT_NE(config.addressing_source.find("s3.addressing_style of profile 'ml'"),
            std::string::npos);
}

TEST_F(ConfigTest, EnvironmentKeysWinOverAwsProfileButNotOverAnExplicitProfile) {
  write(".aws/credentials", "[ml]\naws_access_key_id = AKIDML\naws_secret_access_key = sml\n");
  set("AWS_ACCESS_KEY_ID", "AKIDENV");
  set("AWS_SECRET_ACCESS_KEY", "senv");
  set("AWS_PROFILE", "ml");
  EXPECT_EQ(resolve().value().credentials->access_key_id, "AKIDENV");
  S3Options options;
  options.profile = "ml";
  const S3Config explicit_profile = resolve(options).value();
  EXPECT_EQ(explicit_profile.credentials->access_key_id, "AKIDML");
  EXPECT_EQ(explicit_profile.profile_source, "--profile");
}

TEST_F(ConfigTest, ConfigFileCredentialsAndDefaultSectionSpellings) {
  write(".aws/config",
        "[profile default]\naws_access_key_id = AKIDCFG\naws_secret_access_key = scfg\n");
  const S3Config config = resolve().value();
  EXPECT_EQ(config.credentials->access_key_id, "AKIDCFG");
  EXPECT_EQ(config.credentials->source, "profile 'default' in " + path(".aws/config"));
}

TEST_F(ConfigTest, FileLocationsComeFromTheEnvironment) {
  write("elsewhere/creds", "[default]\naws_access_key_id = AKIDELSE\naws_secret_access_key = s\n");
  write("elsewhere/conf", "[default]\nregion = ap-south-1\n");
  set("AWS_SHARED_CREDENTIALS_FILE", "~/elsewhere/creds");
  set("AWS_CONFIG_FILE", path("elsewhere/conf"));
  const S3Config config = resolve().value();
  EXPECT_EQ(config.credentials->access_key_id, "AKIDELSE");
  EXPECT_EQ(config.region, "ap-south-1");
}

TEST_F(ConfigTest, AMissingNamedProfileIsAnErrorNamingBothFiles) {
  write(".aws/credentials", "[default]\naws_access_key_id = a\naws_secret_access_key = b\n");
  set("AWS_PROFILE", "nope");
  const Status status = resolve().status();
  EXPECT_EQ(status.code(), ErrorCode::kNotFound);
  EXPECT_NE(status.message().find("profile 'nope' (from AWS_PROFILE)"), std::string::npos);
  EXPECT_NE(status.message().find(path(".aws/credentials")), std::string::npos);
  EXPECT_NE(status.message().find(path(".aws/config")), std::string::npos);
  EXPECT_NE(status.message().find("aws configure --profile nope"), std::string::npos);
}

TEST_F(ConfigTest, HalfAKeyPairInAProfileNamesProfileFileAndField) {
  write(".aws/credentials", std::string("[ml]\naws_secret_access_key = ") + kSecret + "\n");
  S3Options options;
  options.profile = "ml";
  const Status status = resolve(options).status();
  EXPECT_EQ(status.code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(status.message().find("profile 'ml' in " + path(".aws/credentials")),
            std::string::npos);
  EXPECT_NE(status.message().find("no aws_access_key_id"), std::string::npos);
  EXPECT_EQ(status.message().find(kSecret), std::string::npos);
}

TEST_F(ConfigTest, NoCredentialsAnywhereSaysWhereItLookedAndWhatToDo) {
  const Status status = resolve().status();
  EXPECT_EQ(status.code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(status.message().find("AWS_ACCESS_KEY_ID"), std::string::npos);
  EXPECT_NE(status.message().find(path(".aws/credentials")), std::string::npos);
  EXPECT_NE(status.message().find("--no-sign-request"), std::string::npos);
}

TEST_F(ConfigTest, NoSignRequestNeedsNoCredentials) {
  S3Options options;
  options.no_sign_request = true;
  const S3Config config = resolve(options).value();
  EXPECT_TRUE(config.anonymous());
  EXPECT_NE(config.describe().find("none (--no-sign-request)"), std::string::npos);
}

// The global flags reach processes Kennel starts through KENNEL_S3_*; as
// options they outrank the AWS_* variables, as the flags do.
TEST_F(ConfigTest, CommandLineOptionsTravelAsKennelVariablesAndOutrankAwsOnes) {
  write(".aws/credentials", "[ml]\naws_access_key_id = AKIDML\naws_secret_access_key = sml\n");
  set("AWS_ACCESS_KEY_ID", "AKIDENV");
  set("AWS_SECRET_ACCESS_KEY", "senv");
  set("AWS_REGION", "eu-west-1");
  set("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000");
  const auto lookup = [this](const std::string& name) -> std::optional<std::string> {
    const auto found = variables_.find(name);
    if (found == variables_.end()) return std::nullopt;
    return found->second;
  };
  const S3Options none = command_line_options(lookup);
  EXPECT_TRUE(none.profile.empty() && none.region.empty() && none.endpoint_url.empty());
  EXPECT_FALSE(none.no_sign_request);

  set(kProfileVariable, "ml");
  set(kRegionVariable, "ap-south-1");
  set(kEndpointUrlVariable, "http://127.0.0.1:9100");
  const S3Config config = resolve(command_line_options(lookup)).value();
  EXPECT_EQ(config.credentials->access_key_id, "AKIDML");
  EXPECT_EQ(config.region, "ap-south-1");
  EXPECT_EQ(config.endpoint.text(), "http://127.0.0.1:9100");

  set(kNoSignRequestVariable, "1");
  EXPECT_TRUE(resolve(command_line_options(lookup)).value().anonymous());
  set(kNoSignRequestVariable, "0");
  EXPECT_FALSE(command_line_options(lookup).no_sign_request);
}

TEST_F(ConfigTest, RegionPrecedence) {
  write(".aws/config", "[default]\nregion = us-west-2\n");
  set("AWS_ACCESS_KEY_ID", "a");
  set("AWS_SECRET_ACCESS_KEY", "b");
  EXPECT_EQ(resolve().value().region, "us-west-2");
  set("AWS_DEFAULT_REGION", "eu-west-2");
  EXPECT_EQ(resolve().value().region, "eu-west-2");
  set("AWS_REGION", "eu-west-3");
  EXPECT_EQ(resolve().value().region, "eu-west-3");
  S3Options options;
  options.region = "ap-northeast-1";
  EXPECT_EQ(resolve(options).value().region, "ap-northeast-1");
  EXPECT_EQ(resolve(options).value().endpoint.text(), "https://s3.ap-northeast-1.amazonaws.com");
}

TEST_F(ConfigTest, EndpointPrecedence) {
  write(".aws/config",
        "[default]\nendpoint_url = http://profile:1\nservices = lab\n"
        "[services lab]\ns3 =\n  endpoint_url = http://services:2\n");
  set("AWS_ACCESS_KEY_ID", "a");
  set("AWS_SECRET_ACCESS_KEY", "b");
  EXPECT_EQ(resolve().value().endpoint.text(), "http://services:2");
  set("AWS_ENDPOINT_URL", "http://env:3");
  EXPECT_EQ(resolve().value().endpoint.text(), "http://env:3");
  set("AWS_ENDPOINT_URL_S3", "http://env-s3:4");
  EXPECT_EQ(resolve().value().endpoint.text(), "http://env-s3:4");
  S3Options options;
  options.endpoint_url = "http://option:5";
  EXPECT_EQ(resolve(options).value().endpoint.text(), "http://option:5");
  EXPECT_EQ(resolve(options).value().endpoint_source, "--endpoint-url");
  set("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true");
  EXPECT_EQ(resolve().value().endpoint.text(), "https://s3.amazonaws.com");
  EXPECT_EQ(resolve(options).value().endpoint.text(), "http://option:5");
}

TEST_F(ConfigTest, ProfileEndpointWithoutServicesSection) {
  write(".aws/config", "[default]\ns3 =\n  endpoint_url = http://nested:1\n");
  set("AWS_ACCESS_KEY_ID", "a");
  set("AWS_SECRET_ACCESS_KEY", "b");
  EXPECT_EQ(resolve().value().endpoint.text(), "http://nested:1");
}

TEST_F(ConfigTest, BadValuesNameTheirSource) {
  set("AWS_ACCESS_KEY_ID", "a");
  set("AWS_SECRET_ACCESS_KEY", "b");
  set("AWS_REGION", "EU West");
  Status status = resolve().status();
  EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(status.message().find("'EU West' (from AWS_REGION)"), std::string::npos);
  variables_.erase("AWS_REGION");

  set("AWS_ENDPOINT_URL_S3", "minio:9000");
  status = resolve().status();
  EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(status.message().find("AWS_ENDPOINT_URL_S3"), std::string::npos);
  variables_.erase("AWS_ENDPOINT_URL_S3");

  write(".aws/config", "[default]\ns3 =\n  addressing_style = sideways\n");
  status = resolve().status();
  EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(status.message().find("'sideways'"), std::string::npos);
  EXPECT_NE(status.message().find("profile 'default' in " + path(".aws/config")),
            std::string::npos);
}

TEST_F(ConfigTest, AConfigFileThatDoesNotParseIsNamedWithoutEchoingSecrets) {
  write(".aws/credentials", std::string("[default]\n") + kSecret + "\n");
  const Status status = resolve().status();
  EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(status.message().find(path(".aws/credentials") + ":2"), std::string::npos);
  EXPECT_EQ(status.message().find(kSecret), std::string::npos);
}

TEST_F(ConfigTest, UnsupportedCredentialSourcesAreRefusedWithAWayOut) {
  write(".aws/config", "[profile admin]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = d\n");
  S3Options options;
  options.profile = "admin";
  const Status status = resolve(options).status();
  EXPECT_EQ(status.code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(status.message().find("role_arn"), std::string::npos);
  EXPECT_NE(status.message().find("export-credentials --profile admin"), std::string::npos);

  // The credentials file comes before credential_process, as in botocore.
  write(".aws/config", "[default]\ncredential_process = /bin/get-keys\n");
  EXPECT_EQ(resolve().status().code(), ErrorCode::kFailedPrecondition);
  write(".aws/credentials", "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = s\n");
  EXPECT_EQ(resolve().value().credentials->access_key_id, "AKIDFILE");
}

TEST_F(ConfigTest, CaBundleMustExist) {
  set("AWS_ACCESS_KEY_ID", "a");
  set("AWS_SECRET_ACCESS_KEY", "b");
  set("AWS_CA_BUNDLE", path("missing.pem"));
  const Status status = resolve().status();
  EXPECT_EQ(status.code(), ErrorCode::kNotFound);
  EXPECT_NE(status.message().find("AWS_CA_BUNDLE"), std::string::npos);
  write("ca.pem", "-----BEGIN CERTIFICATE-----\n");
  set("AWS_CA_BUNDLE", path("ca.pem"));
  EXPECT_EQ(resolve().value().ca_bundle, path("ca.pem"));
  S3Options options;
  options.ca_bundle = "~/ca.pem";
  EXPECT_EQ(resolve(options).value().ca_bundle_source, "--ca-bundle");
}

TEST_F(ConfigTest, NoHomeMeansNoFiles) {
  variables_.erase("HOME");
  set("AWS_ACCESS_KEY_ID", "a");
  set("AWS_SECRET_ACCESS_KEY", "b");
  EXPECT_TRUE(resolve().ok());
  variables_.erase("AWS_ACCESS_KEY_ID");
  variables_.erase("AWS_SECRET_ACCESS_KEY");
  EXPECT_NE(resolve().status().message().find("HOME is not set"), std::string::npos);
}

TEST(CredentialsTest, MaskingShowsOnlyTheLastFourCharacters) {
  Credentials credentials{"AKIAIOSFODNN7EXAMPLE", kSecret, "tok", "the environment", ""};
  EXPECT_EQ(credentials.masked_access_key_id(), "****************MPLE");
  EXPECT_EQ(credentials.describe(),
            "access key ****************MPLE from the environment (with a session token)");
  credentials.access_key_id = "short";
  EXPECT_EQ(credentials.masked_access_key_id(), "*****");
}

}  // namespace
}  // namespace kennel::s3

#include "kennel/s3/config.h"

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <vector>

#include "kennel/s3/aws_config_file.h"
#include "kennel/util/fs.h"
#include "kennel/util/text.h"

namespace kennel::s3 {

namespace {

namespace fs = std::filesystem;

// A value and where it was found.
struct Sourced {
  std::string value;
  std::string source;
};


bool is_region_name(std::string_view region) {
  if (region.empty()) return false;
  for (const char c : region) {
    const auto byte = static_cast<unsigned char>(c);
    if (!std::islower(byte) && !std::isdigit(byte) && c != '-') return false;
  }
  return true;
}

// The two AWS files and the profile's sections in them.
struct ProfileFiles {
  fs::path credentials_path;
  fs::path config_path;
  std::optional<AwsIniFile> credentials_file;
  std::optional<AwsIniFile> config_file;
  const AwsIniSection* credentials_section = nullptr;  // [NAME] in the credentials file
  const AwsIniSection* config_section = nullptr;       // [profile NAME] / [default] in config
  std::string config_section_name;

  std::string in_config(const std::string& profile) const {
    return fmt::format("profile '{}' in {}", profile, path_text(config_path));
  }
  std::string in_credentials(const std::string& profile) const {
    return fmt::format("profile '{}' in {}", profile, path_text(credentials_path));
  }
};

fs::path expand_home(const std::string& path, const std::string& home) {
  if (path == "~") return home;
  if (path.rfind("~/", 0) == 0 && !home.empty()) return fs::path(home) / path.substr(2);
  return path;
}

class Resolver {
 public:
  Resolver(const S3Options& options, const EnvironmentLookup& environment)
      : options_(options), environment_(environment) {}

  Result<S3Config> resolve() {
    KENNEL_RETURN_IF_ERROR(resolve_profile());
    KENNEL_RETURN_IF_ERROR(load_files());
    KENNEL_RETURN_IF_ERROR(resolve_region());
    KENNEL_RETURN_IF_ERROR(resolve_endpoint());
    KENNEL_RETURN_IF_ERROR(resolve_addressing());
    KENNEL_RETURN_IF_ERROR(resolve_ca_bundle());
    if (!options_.no_sign_request) KENNEL_RETURN_IF_ERROR(resolve_credentials());
    return config_;
  }

 private:
  std::optional<std::string> env(const std::string& name) const {
    auto value = environment_(name);
    if (value && value->empty()) return std::nullopt;
    return value;
  }

  Status resolve_profile() {
    if (!options_.profile.empty()) {
      config_.profile = options_.profile;
      config_.profile_source = "--profile";
      explicit_profile_ = true;
      return {};
    }
    for (const char* name : {"AWS_PROFILE", "AWS_DEFAULT_PROFILE"}) {
      if (auto value = env(name)) {
        config_.profile = *value;
        config_.profile_source = name;
        return {};
      }
    }
    config_.profile = "default";
    config_.profile_source = "default";
    return {};
  }

  Status load_files() {
    const std::string home = env("HOME").value_or("");
    const auto path_from = [&](const char* variable, const char* file_name) -> fs::path {
      if (auto value = env(variable)) return expand_home(*value, home);
      if (home.empty()) return {};
      return fs::path(home) / ".aws" / file_name;
    };
    files_.credentials_path = path_from("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    files_.config_path = path_from("AWS_CONFIG_FILE", "config");
    for (auto [path, file] : {std::pair{&files_.credentials_path, &files_.credentials_file},
                              std::pair{&files_.config_path, &files_.config_file}}) {
      if (path->empty()) continue;
      auto loaded = load_aws_ini(*path);
      if (!loaded.ok()) return loaded.status().with_context("reading AWS settings");
      *file = std::move(*loaded);
    }
    const std::string& profile = config_.profile;
    if (files_.credentials_file)
      files_.credentials_section = files_.credentials_file->section(profile);
    if (files_.config_file) {
      const std::vector<std::string> names =
          profile == "default" ? std::vector<std::string>{"default", "profile default"}
                               : std::vector<std::string>{"profile " + profile};
      for (const std::string& name : names) {
        if ((files_.config_section = files_.config_file->section(name))) {
          files_.config_section_name = name;
          break;
        }
      }
    }
    // A missing [default] is fine (botocore treats it as empty); a named profile must exist.
    const bool named = profile != "default";
    if (named && !files_.credentials_section && !files_.config_section) {
      return not_found(
          "AWS profile '{}' (from {}) is in neither {} (as [{}]) nor {} (as [profile {}]): "
          "create it with `aws configure --profile {}`, or choose another profile",
          profile, config_.profile_source, display(files_.credentials_path), profile,
          display(files_.config_path), profile, profile);
    }
    return {};
  }

  static std::string display(const fs::path& path) {
    return path.empty() ? "(no file: HOME is not set)" : path_text(path);
  }

  // A value of the profile's config section: top level, or inside a nested block.
  std::optional<Sourced> from_profile(const std::string& key, const std::string& block = "") const {
    if (!files_.config_section) return std::nullopt;
    auto value = block.empty() ? files_.config_section->get(key)
                               : files_.config_section->get_nested(block, key);
    if (!value) return std::nullopt;
    const std::string field = block.empty() ? key : block + "." + key;
    return Sourced{*value, fmt::format("{} of {}", field, files_.in_config(config_.profile))};
  }

  Status resolve_region() {
    std::optional<Sourced> region;
    if (!options_.region.empty()) region = Sourced{options_.region, "--region"};
    for (const char* name : {"AWS_REGION", "AWS_DEFAULT_REGION"}) {
      if (!region) {
        if (auto value = env(name)) region = Sourced{*value, name};
      }
    }
    if (!region) region = from_profile("region");
    if (!region) region = Sourced{"us-east-1", "default"};
    if (!is_region_name(region->value)) {
      return invalid_argument(
          "region '{}' (from {}) is not an AWS region name: use lower-case letters, digits and "
          "'-', e.g. eu-west-1",
          region->value, region->source);
    }
    config_.region = region->value;
    config_.region_source = region->source;
    return {};
  }

  Status resolve_endpoint() {
    std::optional<Sourced> endpoint;
    if (!options_.endpoint_url.empty()) endpoint = Sourced{options_.endpoint_url, "--endpoint-url"};
    const bool ignore_configured =
        ascii_lower(env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").value_or("")) == "true";
    if (!ignore_configured) {
      for (const char* name : {"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"}) {
        if (!endpoint) {
          if (auto value = env(name)) endpoint = Sourced{*value, name};
        }
      }
      if (!endpoint) endpoint = from_services_section();
      if (!endpoint) endpoint = from_profile("endpoint_url", "s3");
      if (!endpoint) endpoint = from_profile("endpoint_url");
    }
    if (!endpoint) {
      config_.endpoint = aws_endpoint(config_.region);
      config_.endpoint_source = "AWS's endpoint for " + config_.region;
      return {};
    }
    auto parsed = parse_endpoint(endpoint->value);
    if (!parsed.ok()) return parsed.status().with_context(fmt::format("from {}", endpoint->source));
    config_.endpoint = std::move(*parsed);
    config_.endpoint_source = endpoint->source;
    return {};
  }

  // `services = NAME` in the profile points at a [services NAME] section whose
  // `s3 =` block may hold endpoint_url.
  std::optional<Sourced> from_services_section() const {
    if (!files_.config_section || !files_.config_file) return std::nullopt;
    const auto services = files_.config_section->get("services");
    if (!services) return std::nullopt;
    const AwsIniSection* section = files_.config_file->section("services " + *services);
    if (!section) return std::nullopt;
    auto value = section->get_nested("s3", "endpoint_url");
    if (!value) return std::nullopt;
    return Sourced{*value, fmt::format("s3.endpoint_url of [services {}] in {}", *services,
                                       path_text(files_.config_path))};
  }

  Status resolve_addressing() {
    if (options_.addressing_style) {
      config_.addressing_style = *options_.addressing_style;
      config_.addressing_source = "option";
      return {};
    }
    if (auto style = from_profile("addressing_style", "s3")) {
      auto parsed = parse_addressing_style(style->value);
      if (!parsed.ok()) return parsed.status().with_context(fmt::format("in {}", style->source));
      config_.addressing_style = *parsed;
      config_.addressing_source = style->source;
      return {};
    }
    config_.addressing_style = AddressingStyle::kAuto;
    config_.addressing_source = "default";
    return {};
  }

  Status resolve_ca_bundle() {
    std::optional<Sourced> bundle;
    if (!options_.ca_bundle.empty()) bundle = Sourced{options_.ca_bundle, "--ca-bundle"};
    if (!bundle) {
      if (auto value = env("AWS_CA_BUNDLE")) bundle = Sourced{*value, "AWS_CA_BUNDLE"};
    }
    if (!bundle) bundle = from_profile("ca_bundle");
    if (!bundle) return {};
    const fs::path path = expand_home(bundle->value, env("HOME").value_or(""));
    std::error_code error;
    if (!fs::is_regular_file(path, error)) {
      return not_found("CA bundle '{}' (from {}) is not a file: give a PEM file of CA certificates",
                       path_text(path), bundle->source);
    }
    config_.ca_bundle = path_text(path);
    config_.ca_bundle_source = bundle->source;
    return {};
  }

  Status resolve_credentials() {
    if (!explicit_profile_) {
      auto from_environment = credentials_from_environment();
      if (!from_environment.ok()) return from_environment.status();
      if (*from_environment) {
        config_.credentials = std::move(**from_environment);
        return {};
      }
    }
    KENNEL_RETURN_IF_ERROR(refuse_unsupported_sources());
    // botocore's order: the credentials file, credential_process, the config file.
    for (const bool credentials_file : {true, false}) {
      const AwsIniSection* section =
          credentials_file ? files_.credentials_section : files_.config_section;
      if (!credentials_file && section && section->get("credential_process")) {
        return unsupported("credential_process");
      }
      if (!section) continue;
      const std::string where = credentials_file ? files_.in_credentials(config_.profile)
                                                 : files_.in_config(config_.profile);
      auto found = credentials_from_section(*section, where);
      if (!found.ok()) return found.status();
      if (*found) {
        config_.credentials = std::move(**found);
        return {};
      }
    }
    return failed_precondition(
        "no AWS credentials for profile '{}' (from {}): looked in the environment "
        "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY){}, {} and {}. Set the two variables, run "
        "`aws configure{}`, or use --no-sign-request for a public bucket",
        config_.profile, config_.profile_source, explicit_profile_ ? ", skipped for --profile" : "",
        display(files_.credentials_path), display(files_.config_path),
        config_.profile == "default" ? "" : " --profile " + config_.profile);
  }

  Result<std::optional<Credentials>> credentials_from_environment() const {
    const auto id = env("AWS_ACCESS_KEY_ID");
    const auto secret = env("AWS_SECRET_ACCESS_KEY");
    if (!id && !secret) return std::optional<Credentials>();
    if (!id || !secret) {
      return failed_precondition(
          "half an AWS key pair in the environment: {} is set but {} is not; set both, or unset "
          "it to use the profile '{}'",
          id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
          id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID", config_.profile);
    }
    Credentials credentials;
    credentials.access_key_id = *id;
    credentials.secret_access_key = *secret;
    credentials.session_token =
        env("AWS_SESSION_TOKEN").value_or(env("AWS_SECURITY_TOKEN").value_or(""));
    credentials.source = "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)";
    return std::optional<Credentials>(std::move(credentials));
  }

  Result<std::optional<Credentials>> credentials_from_section(const AwsIniSection& section,
                                                              const std::string& where) const {
    const auto id = section.get("aws_access_key_id");
    const auto secret = section.get("aws_secret_access_key");
    if (!id && !secret) return std::optional<Credentials>();
    if (!id || !secret) {
      const char* missing = id ? "aws_secret_access_key" : "aws_access_key_id";
      return failed_precondition(
          "{} has {} but no {}: add `{} = ...` to the profile (or run `aws configure{}`)", where,
          id ? "aws_access_key_id" : "aws_secret_access_key", missing, missing,
          config_.profile == "default" ? "" : " --profile " + config_.profile);
    }
    Credentials credentials;
    credentials.access_key_id = *id;
    credentials.secret_access_key = *secret;
    credentials.session_token = section.get("aws_session_token").value_or("");
    credentials.source = where;
    credentials.profile = config_.profile;
    return std::optional<Credentials>(std::move(credentials));
  }

  // Sources botocore would try before the files' static keys; using the keys
  // instead would act as another identity, so they are refused.
  Status refuse_unsupported_sources() const {
    if (!files_.config_section) return {};
    for (const char* key : {"role_arn", "web_identity_token_file", "sso_start_url", "sso_session",
                            "sso_account_id"}) {
      if (files_.config_section->get(key)) return unsupported(key);
    }
    return {};
  }

  Status unsupported(const std::string& key) const {
    return failed_precondition(
        "{} gets its credentials through `{}`, which Kennel does not support: export static "
        "or temporary keys instead, e.g. `eval \"$(aws configure export-credentials --profile {} "
        "--format env)\"`",
        files_.in_config(config_.profile), key, config_.profile);
  }

  const S3Options& options_;
  const EnvironmentLookup& environment_;
  S3Config config_;
  ProfileFiles files_;
  bool explicit_profile_ = false;
};

}  // namespace

std::string S3Config::describe() const {
  std::string text =
      fmt::format("profile: {} ({})\nregion: {} ({})\nendpoint: {} ({})\n", profile, profile_source,
                  region, region_source, endpoint.text(), endpoint_source);
  text += fmt::format("addressing style: {} ({})\n", addressing_style_name(addressing_style),
                      addressing_source);
  text += fmt::format("credentials: {}\n",
                      credentials ? credentials->describe() : "none (--no-sign-request)");
  text +=
      fmt::format("CA bundle: {}\n",
                  ca_bundle.empty() ? "the system's" : ca_bundle + " (" + ca_bundle_source + ")");
  return text;
}

EnvironmentLookup process_environment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (!value) return std::nullopt;
    return std::string(value);
  };
}

S3Options command_line_options(const EnvironmentLookup& environment) {
  S3Options options;
  options.profile = environment(kProfileVariable).value_or("");
  options.region = environment(kRegionVariable).value_or("");
  options.endpoint_url = environment(kEndpointUrlVariable).value_or("");
  options.no_sign_request = environment(kNoSignRequestVariable).value_or("") == "1";
  return options;
}

Result<S3Config> resolve_s3_config(const S3Options& options, const EnvironmentLookup& environment) {
  return Resolver(options, environment).resolve();
}

}  // namespace kennel::s3

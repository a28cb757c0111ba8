#include "kennel/cli/command.h"

#include <cstdlib>

#include "kennel/job/train_spec.h"
#include "kennel/s3/config.h"
#include "kennel/store/job_registry.h"
#include "kennel/store/layout.h"
#include "kennel/util/status.h"
#include "kennel/util/version.h"

namespace kennel::cli {

std::filesystem::path GlobalOptions::home_dir() const {
  if (!home.empty()) return home;
  if (const char* env = std::getenv("KENNEL_HOME"); env != nullptr && *env != '\0') return env;
  return "kennel-runs";
}

store::StoreLocation GlobalOptions::store_location() const {
  auto location = store::parse_store_location(store, home_dir());
  if (!location.ok()) throw Error(location.status());
  return *location;
}

std::unique_ptr<store::Store> GlobalOptions::open_store() const {
  auto opened = store::open_store(store_location());
  if (!opened.ok()) throw Error(opened.status());
  return std::move(*opened);
}

namespace {

const char* spec_key_type_name(job::SpecKeyType type) {
  switch (type) {
    case job::SpecKeyType::kInt: return "INT";
    case job::SpecKeyType::kFloat: return "FLOAT";
    case job::SpecKeyType::kBool: return "BOOL";
    case job::SpecKeyType::kIntList: return "LIST";
    case job::SpecKeyType::kString: break;
  }
  return "TEXT";
}

std::string flag_name(const std::string& key) {
  std::string flag = key;
  std::replace(flag.begin(), flag.end(), '_', '-');
  return "--" + flag;
}

}  // namespace

void add_inference_precision_flags(CLI::App& command, std::string& precision, double& int8_min_agreement,
                                   const std::string& prefix) {
  command
      .add_option("--precision", precision,
                  prefix + "auto (int8 for a model written by `kennel quantize` on a CPU with VNNI or AMX; else bf16 "
                           "where the CPU has native bf16: AMX or avx512_bf16; else fp32), fp32, bf16 or int8")
      ->capture_default_str();
  command
      .add_option("--int8-min-agreement", int8_min_agreement,
                  "Run int8 only if `kennel quantize` measured at least this top-1 agreement with fp32")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
}

void add_training_key_flags(CLI::App& command, std::map<std::string, std::string>& values,
                            const std::set<std::string>& excluded) {
  const job::TrainSpec defaults;
  for (const auto& key : job::train_spec_keys()) {
    if (excluded.count(key.name)) continue;
    const std::string default_text = key.get(defaults).dump();
    const bool help_has_default = key.help.find("default") != std::string::npos;
    auto* option = command.add_option_function<std::string>(
        flag_name(key.name), [&values, name = key.name](const std::string& value) { values[name] = value; },
        help_has_default ? key.help : fmt::format("{} (default: {})", key.help, default_text));
    option->type_name(spec_key_type_name(key.type));
    if (key.type == job::SpecKeyType::kBool) option->expected(0, 1)->default_str("true");
  }
}

nlohmann::json training_overrides(const std::map<std::string, std::string>& values,
                                  const std::vector<std::string>& sets) {
  nlohmann::json overrides = nlohmann::json::object();
  for (const auto& [key, value] : values) overrides[key] = value;
  for (const auto& assignment : sets) {
    const auto equals = assignment.find('=');
    if (equals == std::string::npos || equals == 0) {
      throw Error(invalid_argument("--set '{}': expected key=value", assignment));
    }
    overrides[assignment.substr(0, equals)] = assignment.substr(equals + 1);
  }
  return overrides;
}

void GlobalOptions::export_s3_flags() const {
  // setenv before any thread starts: the children (trials, ranks, Slurm jobs) inherit it.
  const auto put = [](const char* name, const std::string& value) {
    if (!value.empty()) ::setenv(name, value.c_str(), 1);
  };
  put(s3::kProfileVariable, s3_profile);
  put(s3::kRegionVariable, s3_region);
  put(s3::kEndpointUrlVariable, s3_endpoint_url);
  if (no_sign_request) put(s3::kNoSignRequestVariable, "1");
}

std::filesystem::path job_dir_of(const CommandContext& context, const std::string& job) {
  auto record = context.global.open_store()->get_job(job);
  if (!record.ok()) throw Error(not_found("no job named '{}' (`kennel jobs list` shows the jobs)", job));
  return record->job_dir;
}

std::string format_duration(double seconds) {
  if (seconds <= 0) return "-";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, s / 60 % 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

void build_cli(CLI::App& app, CommandContext& context) {
  app.description(
      "Kennel trains, tunes, debugs, profiles and serves image classifiers on your own machines.");
  app.set_version_flag("--version", std::string("kennel ") + kVersion);
  app.require_subcommand(1);
  // Global options work after the subcommand too (`kennel train ... --home DIR`).
  app.fallthrough();
  app.add_option("--home", context.global.home,
                 "Directory for jobs, the registry and caches (default: $KENNEL_HOME, else "
                 "./kennel-runs)")
      ->envname("KENNEL_HOME");
  app.add_option("--store", context.global.store,
                 "Where jobs and studies are recorded: embedded (the home's kennel.db, the default), "
                 "sqlite:PATH, or postgresql://user@host:port/db shared by tuning workers on many hosts")
      ->envname("KENNEL_STORE");
  // S3 as the AWS CLI's global flags choose it; the rest comes from AWS_* and ~/.aws (docs/s3.md).
  app.add_option("--profile", context.global.s3_profile,
                 "S3: the profile of ~/.aws/credentials and ~/.aws/config to use (outranks AWS_* keys)")
      ->envname(s3::kProfileVariable);
  app.add_option("--region", context.global.s3_region, "S3: the region (default: AWS_REGION, the profile's)")
      ->envname(s3::kRegionVariable);
  app.add_option("--endpoint-url", context.global.s3_endpoint_url,
                 "S3: an S3-compatible store (MinIO, Ceph, R2), e.g. http://127.0.0.1:9000 "
                 "(default: AWS_ENDPOINT_URL_S3, the profile's endpoint_url, AWS)")
      ->envname(s3::kEndpointUrlVariable);
  app.add_flag("--no-sign-request", context.global.no_sign_request,
               "S3: send anonymous requests, for public buckets (no credentials are read)");
  app.add_option("--log-level", context.global.log_level,
                 "trace, debug, info, warn, error or off")
      ->envname("KENNEL_LOG_LEVEL")
      ->capture_default_str();
  register_data_commands(app, context);
  register_train_command(app, context);
  register_evaluate_command(app, context);
  register_quantize_command(app, context);
  register_jobs_commands(app, context);
  register_serve_command(app, context);
  register_predict_command(app, context);
  register_transform_command(app, context);
  register_tune_commands(app, context);
  register_debug_commands(app, context);
  register_profile_command(app, context);
  register_weights_commands(app, context);
  register_cache_commands(app, context);
  register_studio_command(app, context);
  register_system_command(app, context);
}

}  // namespace kennel::cli

// The CLI's shared pieces: global options every subcommand sees, and the
// registration function of each subcommand group. Subcommand files are thin:
// parse flags, translate them into library options in one place, call the
// library, print. Library errors travel as kennel::Error and main() turns them
// into one message and an exit code (status.h's table).
#pragma once

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "kennel/store/store.h"

namespace kennel::cli {

struct GlobalOptions {
  std::string home;               // --home, else $KENNEL_HOME, else ./kennel-runs
  std::string log_level = "info";  // --log-level, else $KENNEL_LOG_LEVEL
  std::string store;              // --store, else $KENNEL_STORE, else the home's embedded registry
  // --profile, --region, --endpoint-url, --no-sign-request: the AWS CLI's global S3 flags.
  std::string s3_profile, s3_region, s3_endpoint_url;
  bool no_sign_request = false;

  std::filesystem::path home_dir() const;
  // The parsed --store (throws kennel::Error naming a malformed one).
  store::StoreLocation store_location() const;
  // Opens it (throws kennel::Error: unreachable, unwritable, newer schema).
  std::unique_ptr<store::Store> open_store() const;
  // Puts the S3 flags where every S3 user of this process and of the processes it
  // starts reads them (s3::command_line_options). Call once, before any work.
  void export_s3_flags() const;
};

struct CommandContext {
  GlobalOptions global;
  int exit_code = 0;  // a command that ran but failed (e.g. an unusable dataset) sets 1
};

void register_data_commands(CLI::App& app, CommandContext& context);
void register_jobs_commands(CLI::App& app, CommandContext& context);
void register_train_command(CLI::App& app, CommandContext& context);
void register_evaluate_command(CLI::App& app, CommandContext& context);
void register_quantize_command(CLI::App& app, CommandContext& context);
void register_serve_command(CLI::App& app, CommandContext& context);
void register_predict_command(CLI::App& app, CommandContext& context);
void register_transform_command(CLI::App& app, CommandContext& context);
void register_tune_commands(CLI::App& app, CommandContext& context);
void register_debug_commands(CLI::App& app, CommandContext& context);
void register_profile_command(CLI::App& app, CommandContext& context);
void register_weights_commands(CLI::App& app, CommandContext& context);
void register_cache_commands(CLI::App& app, CommandContext& context);
void register_studio_command(CLI::App& app, CommandContext& context);
void register_system_command(CLI::App& app, CommandContext& context);

// The folder of a training job in the registry under the home (throws
// kennel::Error kNotFound naming the job and `kennel jobs list`).
std::filesystem::path job_dir_of(const CommandContext& context, const std::string& job);

// Adds one flag per training spec key (--lr, --batch-size, ...; from the key
// table), except `excluded`; given values land in `values` as text, by key.
void add_training_key_flags(CLI::App& command, std::map<std::string, std::string>& values,
                            const std::set<std::string>& excluded);
// The training keys given on the command line: the flags' values, then each
// `--set key=value` (throws kennel::Error naming a malformed one).
nlohmann::json training_overrides(const std::map<std::string, std::string>& values,
                                  const std::vector<std::string>& sets);

// --precision and --int8-min-agreement of the commands that run a saved model (serve, predict,
// transform, evaluate), with one help text; `prefix` starts the help ("With --model: ").
void add_inference_precision_flags(CLI::App& command, std::string& precision, double& int8_min_agreement,
                                   const std::string& prefix = "");

// "42s", "3m07s", "1h05m"; "-" for nothing.
std::string format_duration(double seconds);

// Builds the whole command tree (also used by the tests that check the flag table).
void build_cli(CLI::App& app, CommandContext& context);

}  // namespace kennel::cli

#include "kennel/cli/command.h"

#include <cstdlib>

#include "kennel/util/version.h"

namespace kennel::cli {

std::filesystem::path GlobalOptions::home_dir() const {
  if (!home.empty()) return home;
  if (const char* env = std::getenv("KENNEL_HOME"); env != nullptr && *env != '\0') return env;
  return "kennel-runs";
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
  app.add_option("--log-level", context.global.log_level,
                 "trace, debug, info, warn, error or off")
      ->envname("KENNEL_LOG_LEVEL")
      ->capture_default_str();
  register_data_commands(app, context);
  register_train_command(app, context);
  register_evaluate_command(app, context);
  register_jobs_commands(app, context);
  register_serve_command(app, context);
  register_predict_command(app, context);
  register_transform_command(app, context);
}

}  // namespace kennel::cli

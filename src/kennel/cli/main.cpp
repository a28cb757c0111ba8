// kennel: the command-line entry point. Parses, runs one subcommand, and turns
// every failure into one message on stderr and an exit code: 0 ok, 1 the job
// failed, 2 usage error. No stack traces for user errors.
#include <algorithm>
#include <array>
#include <cstdio>
#include <exception>
#include <string_view>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "kennel/cli/command.h"
#include "kennel/util/allocator.h"
#include "kennel/util/blas_kernels.h"
#include "kennel/util/log.h"
#include "kennel/util/status.h"

namespace {

// CLI11 reports a mistyped subcommand as "A subcommand is required"; name the word instead.
bool explain_unknown_subcommand(const CLI::App& app) {
  const CLI::App* level = &app;
  std::string path = "kennel";
  while (true) {
    const auto parsed = level->get_subcommands();
    if (parsed.empty()) break;
    level = parsed.front();
    path += " " + level->get_name();
  }
  const auto remaining = level->remaining();
  const auto known = level->get_subcommands([](const CLI::App*) { return true; });
  if (remaining.empty() || known.empty()) return false;
  std::string names;
  for (const auto* command : known) names += (names.empty() ? "" : ", ") + command->get_name();
  std::fprintf(stderr, "error: unknown command '%s' for '%s': choose one of %s (see `%s --help`)\n",
               remaining.front().c_str(), path.c_str(), names.c_str(), path.c_str());
  return true;
}

// `kennel` or `kennel data` alone: CLI11 says only "A subcommand is required";
// show the commands there are instead (still a usage error, exit 2).
bool list_missing_subcommand(const CLI::App& app) {
  const CLI::App* level = &app;
  while (!level->get_subcommands().empty()) level = level->get_subcommands().front();
  const auto known = level->get_subcommands([](const CLI::App*) { return true; });
  if (!level->remaining().empty() || known.empty()) return false;
  std::fputs(level->help().c_str(), stdout);
  std::fflush(stdout);
  std::fprintf(stderr, "error: a command is required: choose one of the commands above\n");
  return true;
}

// The commands that run a model (and so fp32 matrix products on the BLAS); `system` reports on it.
bool runs_models(const CLI::App& app) {
  static constexpr std::array<std::string_view, 8> kCommands = {"train",   "evaluate",  "quantize", "serve",
                                                                "predict", "transform", "tune",     "system"};
  const auto parsed = app.get_subcommands();
  return !parsed.empty() &&
         std::find(kCommands.begin(), kCommands.end(), parsed.front()->get_name()) != kCommands.end();
}

}  // namespace

int main(int argc, char** argv) {
  kennel::cli::CommandContext context;
  CLI::App app{"kennel"};
  kennel::cli::build_cli(app, context);
  // The log level must be in force before subcommand callbacks run.
  app.parse_complete_callback([&] {
    kennel::Status status = kennel::set_log_level(context.global.log_level);
    if (!status.ok()) throw CLI::ValidationError("--log-level", status.message());
    context.global.export_s3_flags();
    // Before any work: it may re-execute this program with the BLAS kernels this CPU runs (a
    // second start, ~0.4 s, paid only by the commands that run models).
    if (runs_models(app)) {
      kennel::refit_openblas_kernels(argv);
      kennel::keep_freed_memory();
    }
  });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    // --help and --version are "errors" with exit code 0; usage errors exit 2.
    if (dynamic_cast<const CLI::RequiredError*>(&error) != nullptr &&
        (explain_unknown_subcommand(app) || list_missing_subcommand(app))) {
      return 2;
    }
    const int code = app.exit(error);
    return code == 0 ? 0 : 2;
  } catch (const kennel::Error& error) {
    std::fprintf(stderr, "error: %s\n", error.status().message().c_str());
    return kennel::exit_code_for(error.status().code());
  } catch (const std::exception& error) {
    std::fprintf(stderr, "error: internal error (please report): %s\n", error.what());
    return 1;
  }
  return context.exit_code;
}

// kennel: the command-line entry point. Parses, runs one subcommand, and turns
// every failure into one message on stderr and an exit code: 0 ok, 1 the job
// failed, 2 usage error. No stack traces for user errors.
#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "kennel/cli/command.h"
#include "kennel/util/log.h"
#include "kennel/util/status.h"

int main(int argc, char** argv) {
  kennel::cli::CommandContext context;
  CLI::App app{"kennel"};
  kennel::cli::build_cli(app, context);
  // The log level must be in force before subcommand callbacks run.
  app.parse_complete_callback([&] {
    kennel::Status status = kennel::set_log_level(context.global.log_level);
    if (!status.ok()) throw CLI::ValidationError("--log-level", status.message());
  });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    // --help and --version are "errors" with exit code 0; usage errors exit 2.
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

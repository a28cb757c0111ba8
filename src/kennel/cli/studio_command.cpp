// `kennel studio`: the web app over this home's jobs, studies and endpoints
// until SIGINT/SIGTERM.
#include <chrono>
#include <iostream>
#include <thread>

#include <spdlog/spdlog.h>

#include "kennel/cli/command.h"
#include "kennel/studio/studio_server.h"
#include "kennel/util/stop_signal.h"

namespace kennel::cli {

void register_studio_command(CLI::App& app, CommandContext& context) {
  auto options = std::make_shared<studio::StudioOptions>();
  auto* studio = app.add_subcommand("studio",
                                    "A web page over this home: jobs, live curves, studies, "
                                    "debugger and profiler findings, endpoints");
  studio
      ->add_option("--host", options->host,
                   "Loopback address to listen on (127.0.0.1, ::1 or localhost)")
      ->capture_default_str();
  studio->add_option("--port", options->port, "Port (0 = any free port)")->capture_default_str();
  studio->add_option(
      "--allow-host", options->allowed_hosts,
      "Another Host name the pages may be opened by (repeatable), e.g. localhost:9000 behind an "
      "SSH tunnel");
  studio->add_option("--http-threads", options->http_threads, "Requests served at once")
      ->capture_default_str();
  studio->add_flag("--access-log", options->access_log, "Log one line per request");
  studio->callback([options, &context] {
    const store::StoreLocation location = context.global.store_location();
    studio::StudioServer server(*options,
                                studio::make_home_source(context.global.home_dir(), location));
    StopSignalScope stop_signals;
    if (Status started = server.start(); !started.ok()) throw Error(started);
    std::cout << fmt::format("kennel studio: open {} (home {}, store {}; Ctrl-C stops)\n",
                             server.url(), context.global.home_dir().string(), location.display())
              << std::flush;
    while (StopSignalScope::received() == 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    server.stop();
    server.wait();
    std::cout << fmt::format("kennel studio: stopped by {}\n",
                             StopSignalScope::name(StopSignalScope::received()))
              << std::flush;
  });
}

}  // namespace kennel::cli

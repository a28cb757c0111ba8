// SIGINT/SIGTERM as a request to stop gracefully: while a StopSignalScope
// lives, the signals only record themselves (async-signal-safe), and the
// owner polls received() at points where stopping is safe (a training step,
// a server's watcher thread). The previous handlers come back when the scope
// ends. A handler, not a blocked-signal mask, because libraries (OpenBLAS,
// OpenMP) start threads before main() that would otherwise receive the signal
// and take the default action: dying mid-write.
// Thread-safety: one scope at a time per process; received() from any thread.
#pragma once

#include <signal.h>

#include <string>

namespace kennel {

class StopSignalScope {
 public:
  StopSignalScope();
  ~StopSignalScope();
  StopSignalScope(const StopSignalScope&) = delete;
  StopSignalScope& operator=(const StopSignalScope&) = delete;

  // The signal number received since the scope began, or 0.
  static int received();
  static std::string name(int signal_number);  // "SIGINT", "SIGTERM"

 private:
  struct sigaction previous_int_ {};
  struct sigaction previous_term_ {};
};

}  // namespace kennel

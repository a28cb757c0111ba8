// A child process started with fork/exec: argv and environment are built
// before the fork (the child runs only async-signal-safe calls until exec),
// output appended to a log file or inherited, its own process group (stopping
// it stops a whole shell pipeline), and PR_SET_PDEATHSIG so a parent that dies
// — even by SIGKILL — takes its children down with a SIGTERM they can
// checkpoint on. Used for tuning trials and for the ranks of a data-parallel
// job. Thread-safety: one owner.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kennel/util/status.h"

namespace kennel {

struct ExitInfo {
  bool signaled = false;  // killed by a signal (exit_code is then the signal number)
  int code = 0;

  bool ok() const { return !signaled && code == 0; }
  // A shell reports a command killed by signal N as exit code 128 + N.
  bool died_in_shell() const { return !signaled && code > 128 && code <= 128 + 64; }
  std::string describe() const;  // "exit code 3", "killed by SIGSEGV", "killed by SIGKILL (exit code 137)"
};

class ChildProcess {
 public:
  // Starts argv[0] (a path) with the current environment plus `extra_env`;
  // stdout and stderr go to `log_path` (appended), or are inherited when it is empty.
  static Result<ChildProcess> start(const std::vector<std::string>& argv,
                                    const std::map<std::string, std::string>& extra_env,
                                    const std::filesystem::path& log_path = {});
  ChildProcess() = default;

  pid_t pid() const { return pid_; }
  // Non-blocking: the exit status once the process has ended (reaps it).
  std::optional<ExitInfo> poll();
  // Blocks until it ends.
  ExitInfo wait();
  // Sends `signal_number` to the process group.
  void signal(int signal_number);
  // SIGTERM to the process group (a trial checkpoints and stops on it).
  void terminate();
  void kill();  // SIGKILL to the group
  bool terminated_by_us() const { return terminate_sent_; }

 private:
  pid_t pid_ = -1;
  bool terminate_sent_ = false;
  std::optional<ExitInfo> exit_;
};

}  // namespace kennel

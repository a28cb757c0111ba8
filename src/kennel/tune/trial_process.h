// A trial's child process: started with fork/exec (argv and environment are
// built before the fork, so the child runs only async-signal-safe calls until
// exec), output appended to a log file, its own process group (stopping a
// trial stops the whole shell pipeline of an external command), and
// PR_SET_PDEATHSIG so a tuner that dies — even by SIGKILL — takes its trials
// down with a SIGTERM they can checkpoint on. Thread-safety: one owner.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kennel/util/status.h"

namespace kennel::tune {

struct ExitInfo {
  bool signaled = false;  // killed by a signal (exit_code is then the signal number)
  int code = 0;

  // A shell reports a command killed by signal N as exit code 128 + N.
  bool died_in_shell() const { return !signaled && code > 128 && code <= 128 + 64; }
  std::string describe() const;  // "exit code 3", "killed by SIGSEGV", "killed by SIGKILL (exit code 137)"
};

class TrialProcess {
 public:
  // Starts argv[0] (a path) with the current environment plus `extra_env`.
  static Result<TrialProcess> start(const std::vector<std::string>& argv, const std::map<std::string, std::string>& extra_env,
                                    const std::filesystem::path& log_path);
  TrialProcess() = default;

  pid_t pid() const { return pid_; }
  // Non-blocking: the exit status once the process has ended (reaps it).
  std::optional<ExitInfo> poll();
  // Blocks until it ends.
  ExitInfo wait();
  // SIGTERM to the process group (a trial checkpoints and stops on it).
  void terminate();
  void kill();  // SIGKILL to the group
  bool terminated_by_us() const { return terminate_sent_; }

 private:
  pid_t pid_ = -1;
  bool terminate_sent_ = false;
  std::optional<ExitInfo> exit_;
};

// Reads the complete lines appended to a file since the last call (a trial's
// metrics.jsonl or output log). A partial last line waits for its newline.
class LineTailer {
 public:
  explicit LineTailer(std::filesystem::path path = {}) : path_(std::move(path)) {}
  std::vector<std::string> read_new_lines();
  // Everything that was left without a newline when the writer ended.
  std::string remainder() const { return partial_; }

 private:
  std::filesystem::path path_;
  uint64_t offset_ = 0;
  std::string partial_;
};

// The last `lines` non-empty lines of a text file (for failure reasons).
std::string last_lines(const std::filesystem::path& path, size_t lines);

}  // namespace kennel::tune

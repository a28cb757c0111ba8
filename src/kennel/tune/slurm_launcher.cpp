#include "kennel/tune/slurm_launcher.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <regex>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "kennel/util/fs.h"

extern char** environ;

namespace kennel::tune {

namespace {

struct CommandOutput {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Runs a Slurm client (found on PATH) and captures what it prints.
CommandOutput run_command(const std::vector<std::string>& argv) {
  CommandOutput result;
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    result.output = std::strerror(errno);
    return result;
  }
  std::vector<std::string> storage = argv;
  std::vector<char*> args;
  for (auto& item : storage) args.push_back(item.data());
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(pipe_fds[1], STDOUT_FILENO);
    ::dup2(pipe_fds[1], STDERR_FILENO);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  if (pid < 0) {
    ::close(pipe_fds[0]);
    result.output = std::strerror(errno);
    return result;
  }
  char buffer[4096];
  ssize_t got;
  while ((got = ::read(pipe_fds[0], buffer, sizeof(buffer))) > 0 || (got < 0 && errno == EINTR)) {
    if (got > 0) result.output.append(buffer, static_cast<size_t>(got));
  }
  ::close(pipe_fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  while (!result.output.empty() && (result.output.back() == '\n' || result.output.back() == ' ')) result.output.pop_back();
  return result;
}

std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

std::string exec_line(const std::vector<std::string>& argv) {
  std::string line = "exec";
  for (const auto& arg : argv) line += " " + shell_quote(arg);
  return line;
}

bool on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (!path) return false;
  std::string dirs = path;
  size_t start = 0;
  while (start <= dirs.size()) {
    const size_t end = std::min(dirs.find(':', start), dirs.size());
    const std::string dir = dirs.substr(start, end - start);
    if (!dir.empty() && ::access((dir + "/" + program).c_str(), X_OK) == 0) return true;
    start = end + 1;
  }
  return false;
}

ExitInfo exit_of(const std::string& exit_code) {
  // ExitCode=<exit>:<signal>
  ExitInfo info;
  const auto colon = exit_code.find(':');
  const int code = std::atoi(exit_code.substr(0, colon).c_str());
  const int signal_number = colon == std::string::npos ? 0 : std::atoi(exit_code.substr(colon + 1).c_str());
  if (signal_number > 0) {
    info.signaled = true;
    info.code = signal_number;
  } else {
    info.code = code;
  }
  return info;
}

class SlurmTrial final : public LaunchedTrial {
 public:
  SlurmTrial(std::string job_id, double poll_seconds) : job_id_(std::move(job_id)), poll_seconds_(poll_seconds) {}

  std::string id() const override { return "slurm " + job_id_; }

  std::optional<TrialEnd> poll() override {
    if (end_) return end_;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_poll_ < std::chrono::duration<double>(poll_seconds_)) return std::nullopt;
    last_poll_ = now;
    const CommandOutput shown = run_command({"scontrol", "show", "job", "-o", job_id_});
    if (shown.exit_code != 0) {
      if (shown.output.find("Invalid job id") == std::string::npos) {
        spdlog::warn("scontrol show job {}: {} (will ask again)", job_id_, shown.output);
        return std::nullopt;
      }
      TrialEnd lost;
      lost.verdict = cancelled_ ? TrialEnd::Verdict::kExited : TrialEnd::Verdict::kLostNode;
      lost.exit = {true, SIGKILL};
      lost.detail = fmt::format("Slurm no longer knows job {} (last state {}): its end was not seen", job_id_,
                                state_.empty() ? "unknown" : state_);
      end_ = lost;
      return end_;
    }
    const auto fields = parse_scontrol_fields(shown.output);
    state_ = fields.count("JobState") ? fields.at("JobState") : "";
    reason_ = fields.count("Reason") ? fields.at("Reason") : "";
    if (fields.count("Restarts")) restarts_ = std::atoll(fields.at("Restarts").c_str());
    end_ = slurm_end(fields, cancelled_);
    return end_;
  }

  void terminate() override {
    if (end_ || cancelled_) return;
    cancelled_ = true;
    // scancel: SIGTERM to the job's processes (they checkpoint), SIGKILL after Slurm's KillWait.
    const CommandOutput result = run_command({"scancel", job_id_});
    if (result.exit_code != 0) spdlog::warn("scancel {}: {}", job_id_, result.output);
  }
  void kill() override {
    cancelled_ = true;
    (void)run_command({"scancel", "--signal=KILL", job_id_});
    (void)run_command({"scancel", job_id_});
  }
  bool terminated_by_us() const override { return cancelled_; }
  int64_t restarts() const override { return restarts_; }
  std::string scheduler_state() const override {
    return reason_.empty() || reason_ == "None" ? state_ : fmt::format("{} ({})", state_, reason_);
  }

 private:
  std::string job_id_;
  double poll_seconds_;
  std::chrono::steady_clock::time_point last_poll_{};
  std::optional<TrialEnd> end_;
  std::string state_, reason_;
  int64_t restarts_ = 0;
  bool cancelled_ = false;
};

class SlurmLauncher final : public TrialLauncher {
 public:
  explicit SlurmLauncher(LauncherOptions options) : options_(std::move(options)) {}

  Result<std::unique_ptr<LaunchedTrial>> start(const TrialLaunch& launch) override {
    KENNEL_RETURN_IF_ERROR(kennel::create_directories(launch.work_dir));
    std::string script = fmt::format("#!/bin/sh\n# kennel tune: trial {}\n", launch.name);
    for (const auto& [key, value] : launch.env) script += fmt::format("export {}={}\n", key, shell_quote(value));
    script += fmt::format("echo \"{}${{SLURM_RESTART_COUNT:-0}}\"\n", kTrialStartMarker);
    if (!launch.restart_argv.empty()) {
      // A requeued run (preemption, `scontrol requeue`) continues instead of starting over.
      script += fmt::format("if [ \"${{SLURM_RESTART_COUNT:-0}}\" -gt 0 ]; then\n  {}\nfi\n",
                            exec_line(launch.restart_argv));
    }
    script += exec_line(launch.argv) + "\n";
    const auto script_path = launch.work_dir / (launch.name + ".sbatch.sh");
    KENNEL_RETURN_IF_ERROR(write_file_atomic(script_path, script));
    std::vector<std::string> argv = {"sbatch", "--parsable", "--job-name=" + launch.name,
                                     "--output=" + launch.log.string(), "--open-mode=append",
                                     "--chdir=" + launch.work_dir.string(), "--requeue"};
    if (!options_.partition.empty()) argv.push_back("--partition=" + options_.partition);
    argv.insert(argv.end(), options_.sbatch_args.begin(), options_.sbatch_args.end());
    argv.push_back(script_path.string());
    const CommandOutput submitted = run_command(argv);
    const std::string id = submitted.output.substr(0, submitted.output.find(';'));
    if (submitted.exit_code != 0 || id.empty() || id.find_first_not_of("0123456789") != std::string::npos) {
      return Status(ErrorCode::kUnavailable,
                    fmt::format("sbatch refused trial {} (exit {}): {}", launch.name, submitted.exit_code,
                                submitted.output.empty() ? "no output" : submitted.output));
    }
    return std::unique_ptr<LaunchedTrial>(new SlurmTrial(id, options_.poll_seconds));
  }
  bool detached() const override { return true; }
  void cancel_leftover(const std::string& launch_id) override {
    if (launch_id.rfind("slurm ", 0) != 0) return;
    const CommandOutput result = run_command({"scancel", launch_id.substr(6)});
    if (result.exit_code == 0) spdlog::info("cancelled Slurm job {} of a lost earlier attempt", launch_id.substr(6));
  }

 private:
  LauncherOptions options_;
};

}  // namespace

std::map<std::string, std::string> parse_scontrol_fields(const std::string& text) {
  static const std::regex field(R"((\w+)=(\S*))");
  std::map<std::string, std::string> fields;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), field); it != std::sregex_iterator(); ++it) {
    fields.emplace((*it)[1].str(), (*it)[2].str());  // the first of a repeated key
  }
  return fields;
}

std::optional<TrialEnd> slurm_end(const std::map<std::string, std::string>& fields, bool cancelled_by_us) {
  auto field = [&](const char* key) { return fields.count(key) ? fields.at(key) : std::string(); };
  const std::string state = field("JobState"), id = field("JobId");
  TrialEnd end;
  end.exit = exit_of(field("ExitCode"));
  if (state == "COMPLETED" || state == "FAILED") {
    end.detail = fmt::format("Slurm job {} {} (ExitCode {})", id, state, field("ExitCode"));
    return end;
  }
  if (state == "CANCELLED") {
    if (cancelled_by_us) {
      end.exit = {true, SIGTERM};
      end.detail = fmt::format("Slurm job {} cancelled by the tuner", id);
    } else {
      end.verdict = TrialEnd::Verdict::kCancelledOutside;
      end.detail = fmt::format("Slurm job {} was cancelled outside the tuner (scancel)", id);
    }
    return end;
  }
  if (state == "TIMEOUT" || state == "DEADLINE") {
    end.verdict = TrialEnd::Verdict::kTimeLimit;
    end.detail = fmt::format("TIMEOUT: Slurm job {} ran past its time limit (TimeLimit {}){}", id, field("TimeLimit"),
                             state == "DEADLINE" ? " or deadline" : "");
    return end;
  }
  if (state == "NODE_FAIL" || state == "BOOT_FAIL" || state == "PREEMPTED") {
    end.verdict = TrialEnd::Verdict::kLostNode;
    end.exit = {true, SIGKILL};
    end.detail = fmt::format("Slurm job {} ended {} on node {}", id, state, field("NodeList"));
    return end;
  }
  if (state == "OUT_OF_MEMORY") {
    end.verdict = TrialEnd::Verdict::kOutOfMemory;
    end.detail = fmt::format("Slurm job {} ran out of memory (OUT_OF_MEMORY)", id);
    return end;
  }
  return std::nullopt;  // PENDING, CONFIGURING, RUNNING, COMPLETING, REQUEUED, SUSPENDED, ...
}

Result<std::unique_ptr<TrialLauncher>> make_slurm_launcher(const LauncherOptions& options) {
  for (const char* program : {"sbatch", "scontrol", "scancel"}) {
    if (!on_path(program)) {
      return failed_precondition("--launcher slurm needs `{}` on PATH (Debian: slurm-client), with SLURM_CONF "
                                 "pointing at the cluster's slurm.conf if it is not in /etc/slurm",
                                 program);
    }
  }
  return std::unique_ptr<TrialLauncher>(new SlurmLauncher(options));
}

}  // namespace kennel::tune

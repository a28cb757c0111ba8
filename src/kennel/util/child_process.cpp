#include "kennel/util/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

extern char** environ;

namespace kennel {

namespace {
std::string signal_name(int number) {
  const char* abbreviation = sigabbrev_np(number);
  return abbreviation ? fmt::format("SIG{}", abbreviation) : fmt::format("signal {}", number);
}
}  // namespace

std::string ExitInfo::describe() const {
  if (signaled) return fmt::format("killed by {}", signal_name(code));
  if (died_in_shell()) return fmt::format("killed by {} (exit code {})", signal_name(code - 128), code);
  return fmt::format("exit code {}", code);
}

Result<ChildProcess> ChildProcess::start(const std::vector<std::string>& argv,
                                         const std::map<std::string, std::string>& extra_env,
                                         const std::filesystem::path& log_path) {
  if (argv.empty()) return internal_error("ChildProcess::start without a program");
  // Everything the child needs is prepared before fork().
  std::vector<std::string> env_storage;
  for (char** entry = environ; *entry; ++entry) {
    const std::string text = *entry;
    const auto equals = text.find('=');
    if (equals != std::string::npos && extra_env.count(text.substr(0, equals))) continue;
    env_storage.push_back(text);
  }
  for (const auto& [key, value] : extra_env) env_storage.push_back(key + "=" + value);
  std::vector<char*> envp, args;
  for (auto& item : env_storage) envp.push_back(item.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_storage = argv;
  for (auto& item : argv_storage) args.push_back(item.data());
  args.push_back(nullptr);

  const int log_fd = log_path.empty() ? -1 : ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (!log_path.empty() && log_fd < 0) {
    return Status(ErrorCode::kPermissionDenied,
                  fmt::format("cannot open the log '{}': {}", log_path.string(), std::strerror(errno)));
  }
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int error = errno;
    if (log_fd >= 0) ::close(log_fd);
    if (null_fd >= 0) ::close(null_fd);
    return Status(ErrorCode::kResourceExhausted, fmt::format("fork failed: {}", std::strerror(error)));
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl took effect
    // The parent's recording handler must not be inherited as "ignored"; exec resets handlers anyway.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    if (log_fd >= 0) {
      ::dup2(log_fd, STDOUT_FILENO);
      ::dup2(log_fd, STDERR_FILENO);
    }
    ::execve(args[0], args.data(), envp.data());
    const char message[] = "kennel: exec of a child process failed\n";
    (void)!::write(STDERR_FILENO, message, sizeof(message) - 1);
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also from the parent, so terminate() works even before the child ran
  if (log_fd >= 0) ::close(log_fd);
  if (null_fd >= 0) ::close(null_fd);
  ChildProcess process;
  process.pid_ = pid;
  return process;
}

namespace {
ExitInfo exit_info(int status) {
  ExitInfo info;
  if (WIFSIGNALED(status)) {
    info.signaled = true;
    info.code = WTERMSIG(status);
  } else {
    info.code = WEXITSTATUS(status);
  }
  return info;
}
}  // namespace

std::optional<ExitInfo> ChildProcess::poll() {
  if (exit_ || pid_ <= 0) return exit_;
  int status = 0;
  const pid_t done = ::waitpid(pid_, &status, WNOHANG);
  if (done == pid_) exit_ = exit_info(status);
  if (done < 0 && errno == ECHILD) exit_ = ExitInfo{true, SIGKILL};
  return exit_;
}

ExitInfo ChildProcess::wait() {
  while (!exit_) {
    int status = 0;
    const pid_t done = ::waitpid(pid_, &status, 0);
    if (done == pid_) exit_ = exit_info(status);
    if (done < 0 && errno != EINTR) exit_ = ExitInfo{true, SIGKILL};
  }
  return *exit_;
}

void ChildProcess::signal(int signal_number) {
  if (pid_ <= 0 || exit_) return;
  ::kill(-pid_, signal_number);
}

void ChildProcess::terminate() {
  if (pid_ <= 0 || exit_) return;
  terminate_sent_ = true;
  ::kill(-pid_, SIGTERM);
}

void ChildProcess::kill() {
  if (pid_ <= 0 || exit_) return;
  terminate_sent_ = true;
  ::kill(-pid_, SIGKILL);
}

}  // namespace kennel

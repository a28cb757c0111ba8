#include "kennel/tune/trial_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

#include "kennel/util/stop_signal.h"

extern char** environ;

namespace kennel::tune {

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

Result<TrialProcess> TrialProcess::start(const std::vector<std::string>& argv,
                                         const std::map<std::string, std::string>& extra_env,
                                         const std::filesystem::path& log_path) {
  if (argv.empty()) return internal_error("TrialProcess::start without a program");
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

  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return Status(ErrorCode::kPermissionDenied,
                  fmt::format("cannot open the trial log '{}': {}", log_path.string(), std::strerror(errno)));
  }
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int error = errno;
    ::close(log_fd);
    if (null_fd >= 0) ::close(null_fd);
    return Status(ErrorCode::kResourceExhausted, fmt::format("fork failed: {}", std::strerror(error)));
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);  // the tuner died before prctl took effect
    // The tuner's recording handler must not be inherited as "ignored"; exec resets handlers anyway.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    ::execve(args[0], args.data(), envp.data());
    const char message[] = "kennel tune: exec of the trial program failed\n";
    (void)!::write(STDERR_FILENO, message, sizeof(message) - 1);
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also from the parent, so terminate() works even before the child ran
  ::close(log_fd);
  if (null_fd >= 0) ::close(null_fd);
  TrialProcess process;
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

std::optional<ExitInfo> TrialProcess::poll() {
  if (exit_ || pid_ <= 0) return exit_;
  int status = 0;
  const pid_t done = ::waitpid(pid_, &status, WNOHANG);
  if (done == pid_) exit_ = exit_info(status);
  if (done < 0 && errno == ECHILD) exit_ = ExitInfo{true, SIGKILL};
  return exit_;
}

ExitInfo TrialProcess::wait() {
  while (!exit_) {
    int status = 0;
    const pid_t done = ::waitpid(pid_, &status, 0);
    if (done == pid_) exit_ = exit_info(status);
    if (done < 0 && errno != EINTR) exit_ = ExitInfo{true, SIGKILL};
  }
  return *exit_;
}

void TrialProcess::terminate() {
  if (pid_ <= 0 || exit_) return;
  terminate_sent_ = true;
  ::kill(-pid_, SIGTERM);
}

void TrialProcess::kill() {
  if (pid_ <= 0 || exit_) return;
  terminate_sent_ = true;
  ::kill(-pid_, SIGKILL);
}

std::vector<std::string> LineTailer::read_new_lines() {
  std::vector<std::string> lines;
  std::ifstream in(path_, std::ios::binary);
  if (!in) return lines;
  in.seekg(0, std::ios::end);
  const auto size = static_cast<uint64_t>(in.tellg());
  if (size < offset_) {  // rewritten from the start (a re-run)
    offset_ = 0;
    partial_.clear();
  }
  if (size == offset_) return lines;
  in.seekg(static_cast<std::streamoff>(offset_));
  std::string chunk(size - offset_, '\0');
  in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  chunk.resize(static_cast<size_t>(in.gcount()));
  offset_ += chunk.size();
  partial_ += chunk;
  size_t start = 0;
  while (true) {
    const size_t newline = partial_.find('\n', start);
    if (newline == std::string::npos) break;
    std::string line = partial_.substr(start, newline - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
    start = newline + 1;
  }
  partial_.erase(0, start);
  return lines;
}

std::string last_lines(const std::filesystem::path& path, size_t count) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    lines.push_back(line);
    if (lines.size() > count) lines.erase(lines.begin());
  }
  std::string out;
  for (const auto& item : lines) out += (out.empty() ? "" : " | ") + item;
  if (out.size() > 600) out = "..." + out.substr(out.size() - 600);
  return out;
}

}  // namespace kennel::tune

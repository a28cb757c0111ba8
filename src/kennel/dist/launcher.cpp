#include "kennel/dist/launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <charconv>
#include <thread>

#include <spdlog/spdlog.h>

#include "kennel/util/child_process.h"
#include "kennel/util/parallel.h"
#include "kennel/util/stop_signal.h"

namespace kennel::dist {

namespace {

// A TCP port free on this host now (the kernel's choice); rank 0 binds it moments later.
Result<int> free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return internal_error("cannot open a socket to find a free port");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    ::close(fd);
    return internal_error("cannot find a free port on this host");
  }
  const int port = ntohs(address.sin_port);
  ::close(fd);
  return port;
}

struct Master {
  std::string host;
  int port = 0;
};

Result<Master> parse_master(const std::string& text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    return invalid_argument("--master-addr '{}' must be HOST:PORT (rank 0's host and a port free there)", text);
  }
  Master master;
  master.host = text.substr(0, colon);
  if (master.host.size() > 2 && master.host.front() == '[' && master.host.back() == ']') {
    master.host = master.host.substr(1, master.host.size() - 2);
  }
  const std::string port = text.substr(colon + 1);
  const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), master.port);
  if (error != std::errc() || end != port.data() + port.size() || master.port < 1 || master.port > 65535) {
    return invalid_argument("--master-addr '{}': '{}' is not a TCP port (1-65535)", text, port);
  }
  return master;
}

}  // namespace

Status LaunchOptions::validate() const {
  if (nproc_per_node < 1) return invalid_argument("--nproc-per-node must be >= 1, got {}", nproc_per_node);
  if (nnodes < 1) return invalid_argument("--nnodes must be >= 1, got {}", nnodes);
  if (node_rank < 0 || node_rank >= nnodes) {
    return invalid_argument("--node-rank {} is outside 0..{} (--nnodes {})", node_rank, nnodes - 1, nnodes);
  }
  if (nnodes > 1 && master_addr.empty()) {
    return invalid_argument("--nnodes {} needs --master-addr HOST:PORT (rank 0's host, the same on every node)",
                            nnodes);
  }
  if (!master_addr.empty()) {
    auto master = parse_master(master_addr);
    if (!master.ok()) return master.status();
  }
  if (timeout_seconds <= 0) return invalid_argument("--dist-timeout must be > 0 seconds, got {}", timeout_seconds);
  return Status::ok_status();
}

bool wants_launch(const LaunchOptions& options) {
  return (options.nproc_per_node > 1 || options.nnodes > 1) && std::getenv("RANK") == nullptr;
}

Result<int> launch_local_ranks(const std::vector<std::string>& argv, const LaunchOptions& options) {
  KENNEL_RETURN_IF_ERROR(options.validate());
  Master master{"127.0.0.1", 0};
  if (!options.master_addr.empty()) {
    master = parse_master(options.master_addr).value();
  } else {
    auto port = free_port();
    if (!port.ok()) return port.status();
    master.port = *port;
  }
  const int world_size = options.nproc_per_node * options.nnodes;
  const int cpus = options.cpus > 0 ? options.cpus : default_thread_count();
  const int cpus_per_rank = std::max(1, cpus / options.nproc_per_node);
  spdlog::info("launching {} rank(s) here (node {} of {}, world size {}), {} CPU thread(s) each, master {}:{}",
               options.nproc_per_node, options.node_rank, options.nnodes, world_size, cpus_per_rank, master.host,
               master.port);

  StopSignalScope signals;  // forwarded to the ranks, which checkpoint and stop together
  std::vector<ChildProcess> ranks;
  for (int local = 0; local < options.nproc_per_node; ++local) {
    const int rank = options.node_rank * options.nproc_per_node + local;
    std::map<std::string, std::string> env = {{"RANK", std::to_string(rank)},
                                              {"WORLD_SIZE", std::to_string(world_size)},
                                              {"LOCAL_RANK", std::to_string(local)},
                                              {"LOCAL_WORLD_SIZE", std::to_string(options.nproc_per_node)},
                                              {"GROUP_RANK", std::to_string(options.node_rank)},
                                              {"MASTER_ADDR", master.host},
                                              {"MASTER_PORT", std::to_string(master.port)},
                                              {"KENNEL_LAUNCHER", "1"},
                                              {"KENNEL_CPUS_PER_RANK", std::to_string(cpus_per_rank)},
                                              {"OMP_NUM_THREADS", std::to_string(cpus_per_rank)}};
    if (!options.interface.empty()) env["GLOO_SOCKET_IFNAME"] = options.interface;
    auto child = ChildProcess::start(argv, env);
    if (!child.ok()) {
      for (auto& started : ranks) started.kill();
      return child.status().with_context(fmt::format("starting rank {}", rank));
    }
    ranks.push_back(std::move(*child));
  }

  using Clock = std::chrono::steady_clock;
  std::vector<std::optional<ExitInfo>> exits(ranks.size());
  std::optional<Clock::time_point> first_failure;
  int forwarded = 0;
  const auto grace = std::chrono::duration<double>(2 * options.timeout_seconds + 10);
  while (true) {
    if (const int signal_number = StopSignalScope::received(); signal_number != 0 && forwarded != signal_number) {
      for (auto& child : ranks) child.signal(signal_number);
      forwarded = signal_number;
    }
    size_t running = 0;
    for (size_t i = 0; i < ranks.size(); ++i) {
      if (exits[i]) continue;
      exits[i] = ranks[i].poll();
      if (!exits[i]) {
        ++running;
        continue;
      }
      const int rank = options.node_rank * options.nproc_per_node + static_cast<int>(i);
      if (!exits[i]->ok()) {
        spdlog::warn("rank {} (pid {}) ended: {}", rank, ranks[i].pid(), exits[i]->describe());
        if (!first_failure) first_failure = Clock::now();
      }
    }
    if (running == 0) break;
    if (first_failure && Clock::now() - *first_failure > grace) {
      for (size_t i = 0; i < ranks.size(); ++i) {
        if (!exits[i]) {
          spdlog::warn("rank {} did not stop after a peer was lost: killing it",
                       options.node_rank * options.nproc_per_node + static_cast<int>(i));
          ranks[i].kill();
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (exits[0] && !exits[0]->ok()) return exits[0]->signaled ? 1 : exits[0]->code;
  for (const auto& exit : exits) {
    if (exit && !exit->ok()) return 1;
  }
  return 0;
}

}  // namespace kennel::dist

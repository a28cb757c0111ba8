#include "kennel/dist/process_group.h"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

namespace kennel::dist {

namespace {

constexpr auto kHeartbeatInterval = std::chrono::milliseconds(500);
// Long enough for several beats of a live rank, short next to any timeout.
constexpr auto kLivenessWindow = std::chrono::milliseconds(2000);

std::string alive_key(int rank) { return fmt::format("kennel/alive/{}", rank); }
std::string joined_key(int rank) { return fmt::format("kennel/joined/{}", rank); }

std::vector<uint8_t> to_bytes(const std::string& text) { return {text.begin(), text.end()}; }
std::string from_bytes(const std::vector<uint8_t>& bytes) { return {bytes.begin(), bytes.end()}; }

bool contains(const std::string& text, const char* needle) { return text.find(needle) != std::string::npos; }

std::string error_text(const std::exception& error) {
  if (const auto* torch_error = dynamic_cast<const c10::Error*>(&error)) return torch_error->what_without_backtrace();
  return error.what();
}

c10::intrusive_ptr<c10d::Store> open_store(const RankEnvironment& rank, bool server, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<std::uint16_t>(rank.master_port);
  store_options.isServer = server;
  if (server) store_options.numWorkers = rank.world_size;
  store_options.waitWorkers = false;  // joining is checked below, naming who is missing
  store_options.timeout = timeout;
  c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(rank.master_addr, store_options);
  if (!rank.store_prefix.empty()) store = c10::make_intrusive<c10d::PrefixStore>(rank.store_prefix, store);
  return store;
}

std::shared_ptr<::gloo::transport::Device> gloo_device(const std::string& interface) {
  std::string name = interface;
  if (name.empty()) {
    if (const char* env = std::getenv("GLOO_SOCKET_IFNAME"); env != nullptr) name = env;
  }
  if (!name.empty()) return c10d::ProcessGroupGloo::createDeviceForInterface(name);
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

}  // namespace

struct ProcessGroup::Impl {
  GroupOptions options;
  c10::intrusive_ptr<c10d::Store> store;           // collectives' rendezvous, start-up keys
  c10::intrusive_ptr<c10d::Store> liveness_store;  // a second connection: heartbeats and checks
  std::mutex liveness_mutex;                       // the liveness connection is used by two threads
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
  std::thread heartbeat;
  std::mutex heartbeat_mutex;
  std::condition_variable heartbeat_wake;
  bool stopping = false;

  void beat() {
    std::unique_lock lock(heartbeat_mutex);
    while (!heartbeat_wake.wait_for(lock, kHeartbeatInterval, [&] { return stopping; })) {
      try {
        std::lock_guard store_lock(liveness_mutex);
        liveness_store->add(alive_key(options.rank.rank), 1);
      } catch (const std::exception&) {
        return;  // the store is gone; the next collective says so
      }
    }
  }

  // Counters of every rank, or nullopt when the store cannot be reached.
  std::optional<std::vector<int64_t>> beats() {
    std::vector<int64_t> out;
    try {
      std::lock_guard store_lock(liveness_mutex);
      for (int rank = 0; rank < options.rank.world_size; ++rank) out.push_back(liveness_store->add(alive_key(rank), 0));
    } catch (const std::exception&) {
      return std::nullopt;
    }
    return out;
  }
};

ProcessGroup::ProcessGroup(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ProcessGroup::~ProcessGroup() {
  if (!impl_) return;
  {
    std::lock_guard lock(impl_->heartbeat_mutex);
    impl_->stopping = true;
  }
  impl_->heartbeat_wake.notify_all();
  if (impl_->heartbeat.joinable()) impl_->heartbeat.join();
  impl_->gloo.reset();
}

Result<std::unique_ptr<ProcessGroup>> ProcessGroup::connect(const GroupOptions& options) {
  const RankEnvironment& rank = options.rank;
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  const bool hosts_store = !rank.agent_store && rank.rank == 0;
  const std::string master = fmt::format("{}:{}", rank.master_addr, rank.master_port);
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(options.timeout).count();
  try {
    impl->store = open_store(rank, hosts_store, options.timeout);
    impl->liveness_store = open_store(rank, false, options.timeout);
  } catch (const std::exception& error) {
    const std::string detail = error_text(error);
    if (hosts_store && (contains(detail, "in use") || contains(detail, "bind"))) {
      return Status(ErrorCode::kUnavailable,
                    fmt::format("rank 0 cannot listen on port {} ({}): another job uses it; pick another port "
                                "(MASTER_PORT, or --master-addr HOST:PORT)",
                                rank.master_port, detail));
    }
    return Status(ErrorCode::kUnavailable,
                  fmt::format("rank {} could not reach the master at {} within {} s ({}): is rank 0 running, is "
                              "the address right as seen from this host, and is the port open?",
                              rank.rank, master, seconds, detail));
  }
  try {
    impl->store->set(joined_key(rank.rank), to_bytes("1"));
    auto gloo_options = c10d::ProcessGroupGloo::Options::create(options.timeout);
    gloo_options->devices.push_back(gloo_device(options.interface));
    gloo_options->threads = 2;
    impl->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, rank.rank, rank.world_size, gloo_options);
  } catch (const std::exception& error) {
    const std::string detail = error_text(error);
    if (contains(detail, "interface") || contains(detail, "ifname") || contains(detail, "getifaddrs")) {
      return invalid_argument("Gloo cannot use the network interface '{}' ({}): name one this host has "
                              "(`ip -br addr`) with --dist-iface or GLOO_SOCKET_IFNAME",
                              options.interface, detail);
    }
    std::vector<int> missing;
    for (int other = 0; other < rank.world_size; ++other) {
      try {
        if (!impl->store->check({joined_key(other)})) missing.push_back(other);
      } catch (const std::exception&) {
      }
    }
    if (!missing.empty()) {
      return Status(ErrorCode::kDeadlineExceeded,
                    fmt::format("timed out after {} s waiting for every rank to join the job at {}: rank(s) {} never "
                                "joined (started with another --nproc-per-node/--nnodes, or not started?)",
                                seconds, master, fmt::join(missing, ", ")));
    }
    return Status(ErrorCode::kUnavailable,
                  fmt::format("rank {} could not connect to the other ranks through Gloo ({}): when ranks run on "
                              "several hosts, name the interface that reaches them with --dist-iface (Gloo "
                              "otherwise binds the address the hostname resolves to, often 127.0.0.1)",
                              rank.rank, detail));
  }
  Impl* raw = impl.get();
  impl->heartbeat = std::thread([raw] { raw->beat(); });
  return std::unique_ptr<ProcessGroup>(new ProcessGroup(std::move(impl)));
}

int ProcessGroup::rank() const { return impl_->options.rank.rank; }
int ProcessGroup::world_size() const { return impl_->options.rank.world_size; }
const GroupOptions& ProcessGroup::options() const { return impl_->options; }

void ProcessGroup::fail(const std::string& what, const std::string& detail) {
  const RankEnvironment& me = impl_->options.rank;
  const auto first = impl_->beats();
  std::this_thread::sleep_for(kLivenessWindow);
  const auto second = impl_->beats();
  if (!first || !second) {
    const char* host = me.agent_store ? "torchrun's agent" : "rank 0";
    throw Error(Status(ErrorCode::kUnavailable,
                       fmt::format("rank {} lost the job's store at {}:{} during {}: {} (which hosts it) is gone ({})",
                                   me.rank, me.master_addr, me.master_port, what, host, detail)));
  }
  std::vector<int> lost;
  for (int rank = 0; rank < me.world_size; ++rank) {
    if (rank != me.rank && (*second)[static_cast<size_t>(rank)] == (*first)[static_cast<size_t>(rank)]) {
      lost.push_back(rank);
    }
  }
  if (!lost.empty()) {
    throw Error(Status(ErrorCode::kUnavailable,
                       fmt::format("rank {} was lost during {} (it stopped responding: killed, out of memory, "
                                   "stopped, or its host is gone); the job stops, its last checkpoint is intact ({})",
                                   fmt::join(lost, ", "), what, detail)));
  }
  throw Error(Status(ErrorCode::kDeadlineExceeded,
                     fmt::format("{} failed on rank {} while every rank is alive ({}): a rank may be much slower than "
                                 "the others; raise --dist-timeout if that is expected",
                                 what, me.rank, detail)));
}

template <typename Fn>
auto ProcessGroup::guarded(const std::string& what, Fn&& fn) {
  try {
    return fn();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& error) {
    fail(what, error_text(error));
  }
}

void ProcessGroup::broadcast(std::vector<at::Tensor>& tensors, int root) {
  guarded("a broadcast", [&] {
    c10d::BroadcastOptions options;
    options.rootRank = root;
    impl_->gloo->broadcast(tensors, options)->wait();
  });
}

void ProcessGroup::all_reduce_sum(at::Tensor& tensor) {
  guarded("an allreduce", [&] {
    std::vector<at::Tensor> tensors{tensor};
    impl_->gloo->allreduce(tensors)->wait();
  });
}

std::vector<at::Tensor> ProcessGroup::all_gather(const at::Tensor& tensor) {
  return guarded("an allgather", [&] {
    std::vector<at::Tensor> input{tensor.contiguous()};
    std::vector<std::vector<at::Tensor>> output(1);
    for (int rank = 0; rank < world_size(); ++rank) output[0].push_back(at::empty_like(input[0]));
    impl_->gloo->allgather(output, input)->wait();
    return output[0];
  });
}

std::string ProcessGroup::broadcast_bytes(const std::string& bytes, int root) {
  at::Tensor length = at::tensor({static_cast<int64_t>(bytes.size())}, at::kLong);
  std::vector<at::Tensor> tensors{length};
  broadcast(tensors, root);
  const int64_t size = length.item<int64_t>();
  if (size == 0) return {};
  at::Tensor buffer = rank() == root ? at::tensor(at::ArrayRef<uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()),
                                                                       bytes.size()),
                                                  at::kByte)
                                     : at::empty({size}, at::kByte);
  tensors = {buffer};
  broadcast(tensors, root);
  return std::string(reinterpret_cast<const char*>(buffer.data_ptr<uint8_t>()), static_cast<size_t>(size));
}

void ProcessGroup::barrier() {
  guarded("a barrier", [&] { impl_->gloo->barrier()->wait(); });
}

ProcessGroup::Pending ProcessGroup::all_reduce_sum_async(at::Tensor& tensor) {
  return guarded("an allreduce", [&] {
    std::vector<at::Tensor> tensors{tensor};
    return impl_->gloo->allreduce(tensors);
  });
}

void ProcessGroup::wait(const Pending& pending, const std::string& what) {
  guarded(what, [&] { pending->wait(); });
}

void ProcessGroup::store_set(const std::string& key, const std::string& value) {
  guarded("a store write", [&] { impl_->store->set(key, to_bytes(value)); });
}

std::string ProcessGroup::store_get(const std::string& key) {
  return guarded("a store read", [&] { return from_bytes(impl_->store->get(key)); });
}

}  // namespace kennel::dist

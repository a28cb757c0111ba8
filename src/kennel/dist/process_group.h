// The process group of a data-parallel job, on PyTorch's c10d: a TCPStore
// for rendezvous (hosted by rank 0, or by torchrun's agent) and Gloo for the
// collectives, nothing home-made. It owns what c10d leaves to its callers:
//   - errors that say what to do: a port in use, a master nobody can reach, a
//     rank that never joined;
//   - naming the lost rank: every rank beats a counter in the store; when a
//     collective fails (a peer died: its sockets close) or times out (a peer
//     froze or its host vanished), the ranks whose counters stopped are named
//     in the error, so a SIGKILLed rank 1 reads as "rank 1 was lost" on rank 0;
//   - Gloo's network interface (GLOO_SOCKET_IFNAME / --dist-iface): Gloo's
//     default binds to the address the hostname resolves to, often 127.0.0.1.
// c10d's headers stay inside dist/*.cpp.
// Thread-safety: collectives from one thread (the trainer's) at a time, in
// the same order on every rank; heartbeats run on their own thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/util/intrusive_ptr.h>

#include "kennel/dist/rank_environment.h"
#include "kennel/util/status.h"

namespace c10d {
class Work;
}

namespace kennel::dist {

struct GroupOptions {
  RankEnvironment rank;
  // How long a collective (or joining) may wait for a peer before the job fails naming it.
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};
  std::string interface;  // network interface for Gloo; empty: GLOO_SOCKET_IFNAME, else the hostname's address
};

class ProcessGroup {
 public:
  // Joins the group: kUnavailable when the master's port is in use (rank 0)
  // or the master cannot be reached, kDeadlineExceeded when a rank never
  // joins, kInvalidArgument for a bad interface. Messages say what to do.
  static Result<std::unique_ptr<ProcessGroup>> connect(const GroupOptions& options);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const;
  int world_size() const;
  const GroupOptions& options() const;

  // Blocking collectives. A lost or frozen peer throws kennel::Error
  // (kUnavailable / kDeadlineExceeded) naming the rank(s).
  void broadcast(std::vector<at::Tensor>& tensors, int root = 0);
  void all_reduce_sum(at::Tensor& tensor);
  // Every rank's `tensor` (same shape and dtype everywhere), by rank.
  std::vector<at::Tensor> all_gather(const at::Tensor& tensor);
  // Root's bytes on every rank.
  std::string broadcast_bytes(const std::string& bytes, int root = 0);
  void barrier();

  // An allreduce (sum) running on Gloo's threads while the caller goes on.
  using Pending = c10::intrusive_ptr<c10d::Work>;
  Pending all_reduce_sum_async(at::Tensor& tensor);
  void wait(const Pending& pending, const std::string& what);

  // The store every rank shares, for start-up agreements: get waits up to the timeout.
  void store_set(const std::string& key, const std::string& value);
  std::string store_get(const std::string& key);

 private:
  struct Impl;
  explicit ProcessGroup(std::unique_ptr<Impl> impl);
  // Rethrows a collective's failure as a kennel::Error naming the lost ranks.
  [[noreturn]] void fail(const std::string& what, const std::string& detail);
  template <typename Fn>
  auto guarded(const std::string& what, Fn&& fn);

  std::unique_ptr<Impl> impl_;
};

}  // namespace kennel::dist

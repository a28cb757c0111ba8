// Kennel's own launcher for data-parallel jobs, the way torchrun is used:
// `kennel train --nproc-per-node N ...` starts N ranks of the same command on
// this host (the CPU threads split between them), forwards SIGINT/SIGTERM to
// them, waits, and reports one job. Across hosts, by hand: the same command
// on every host with --nnodes, --node-rank and --master-addr HOST:PORT (rank
// 0's host; a port free there). Each rank gets torchrun's variables (RANK,
// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT) plus
// KENNEL_LAUNCHER and KENNEL_CPUS_PER_RANK, and --dist-iface becomes
// GLOO_SOCKET_IFNAME.
// Thread-safety: one launch per process.
#pragma once

#include <string>
#include <vector>

#include "kennel/util/status.h"

namespace kennel::dist {

struct LaunchOptions {
  int nproc_per_node = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr;  // HOST:PORT; empty = 127.0.0.1 and a free port (one node only)
  std::string interface;    // Gloo's network interface on this host
  int cpus = 0;             // CPU threads of this host to split between its ranks; 0 = all
  double timeout_seconds = 60;  // --dist-timeout: how long ranks wait for a lost peer

  // kInvalidArgument naming the flag.
  Status validate() const;
};

// True when `kennel train` was asked to launch ranks (and is not itself one).
bool wants_launch(const LaunchOptions& options);

// Runs `argv` (this program and its arguments) once per local rank and waits.
// Returns the exit code for the whole job: 0 when every rank succeeded, else
// rank 0's code if it failed, else 1. A rank that dies is named on stderr; the
// others stop within the timeout (they notice the lost peer) and are killed
// if they have not after twice that.
Result<int> launch_local_ranks(const std::vector<std::string>& argv, const LaunchOptions& options);

}  // namespace kennel::dist

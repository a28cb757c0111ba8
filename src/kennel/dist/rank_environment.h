// Who this process is in a data-parallel job, read from the environment the
// way PyTorch users launch: torchrun (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, TORCHELASTIC_*), Slurm's srun
// (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_CPUS_PER_TASK, the first
// host of SLURM_JOB_NODELIST as master, a port derived from SLURM_JOB_ID), or
// Kennel's own launcher (which sets torchrun's variables). Explicit
// torchrun-style variables win over Slurm's: torchrun inside an sbatch job is
// torchrun. No variables, or a world size of 1, means a single process.
//
// Pure functions of an environment map, so every launcher's contract is
// unit-tested without launching anything. Errors name the variable and value.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kennel/util/status.h"

namespace kennel::dist {

using Environment = std::map<std::string, std::string>;

// The environment of this process, as a map.
Environment process_environment();

struct RankEnvironment {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string launcher;  // "torchrun" | "slurm" | "kennel" | "env" (RANK/WORLD_SIZE set by hand)
  // torchrun's agent hosts the TCPStore (TORCHELASTIC_USE_AGENT_STORE=True): every rank is a client.
  bool agent_store = false;
  int restart_count = 0;     // TORCHELASTIC_RESTART_COUNT: the group's restarts so far
  std::string store_prefix;  // keys of this attempt, as PyTorch's rendezvous spells them
  int cpus_per_task = 0;     // SLURM_CPUS_PER_TASK, or what the launcher allotted; 0 = unknown

  bool distributed() const { return world_size > 1; }
  // "rank 1 of 2 (torchrun, master 10.0.0.1:29500)"
  std::string describe() const;
};

// nullopt when the environment describes no multi-process launch. Errors:
// kInvalidArgument naming the variable (not a number, rank outside the world,
// a world size of 0, an empty node list).
Result<std::optional<RankEnvironment>> detect_rank_environment(const Environment& env);

// Slurm's compressed host lists, expanded as `scontrol show hostnames` does:
// "n[01-04],gpu7" -> n01 n02 n03 n04 gpu7; zero padding kept; several bracket
// groups in one name give their product. kInvalidArgument on malformed lists.
Result<std::vector<std::string>> expand_slurm_nodelist(const std::string& list);

// The rendezvous port of a Slurm job when MASTER_PORT is not set: stable for
// the job, outside the ephemeral range, so every task derives the same one.
int slurm_master_port(int64_t job_id);

}  // namespace kennel::dist

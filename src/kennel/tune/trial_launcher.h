// Where a trial's process runs: a child of the worker (local, the default) or
// a Slurm batch job (sbatch, tracked with squeue/scontrol, cancelled with
// scancel). The worker only sees a LaunchedTrial: poll it, stop it, and read
// how it ended, with the scheduler's verdict when there is one (a job Slurm
// cancelled, timed out or lost is not a training failure).
// Thread-safety: one owner per launcher and per launched trial.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kennel/tune/trial_process.h"
#include "kennel/util/status.h"

namespace kennel::tune {

struct TrialLaunch {
  std::string name;                       // the trial (a Slurm job name)
  std::vector<std::string> argv;          // what runs; argv[0] is a path
  std::vector<std::string> restart_argv;  // what a requeued run starts instead (Kennel trials: `train --resume`)
  std::map<std::string, std::string> env;
  std::filesystem::path log;              // stdout and stderr, appended
  std::filesystem::path work_dir;         // scripts and the working directory (Slurm)
};

// The first line a batch-job trial prints at each start ("kennel-trial-start
// run=N", N = the scheduler's restart count): the worker knows from it, in the
// log itself, where a restarted run's output begins — the killed run's last
// lines can reach the log after the restart is announced.
inline constexpr const char* kTrialStartMarker = "kennel-trial-start run=";

struct TrialEnd {
  enum class Verdict {
    kExited,             // ended on its own or by our signal: `exit` says how
    kCancelledOutside,   // cancelled by someone else (scancel): Stopped
    kTimeLimit,          // ran past the scheduler's time limit: Failed, TIMEOUT
    kLostNode,           // the node failed, the job was preempted for good, or the scheduler forgot it: a crash
    kOutOfMemory,        // the scheduler's OOM verdict: Failed
  };
  Verdict verdict = Verdict::kExited;
  ExitInfo exit;
  std::string detail;  // the scheduler's words: "Slurm job 12 TIMEOUT (TimeLimit 00:01:00)"
};

class LaunchedTrial {
 public:
  virtual ~LaunchedTrial() = default;
  virtual std::string id() const = 0;  // "pid 1234", "slurm 57"
  // Non-blocking: how it ended, once it has.
  virtual std::optional<TrialEnd> poll() = 0;
  // SIGTERM (it checkpoints and stops) / SIGKILL; scancel for Slurm.
  virtual void terminate() = 0;
  virtual void kill() = 0;
  virtual bool terminated_by_us() const = 0;
  // Times the scheduler re-queued it (preemption, `scontrol requeue`): each
  // restart begins its run again (Kennel trials from their checkpoint).
  virtual int64_t restarts() const { return 0; }
  // The scheduler's current state, for logs: "PENDING (Priority)", "RUNNING".
  virtual std::string scheduler_state() const { return ""; }
};

struct LauncherOptions {
  std::string kind = "local";  // local | slurm
  std::string partition;       // slurm: --partition
  std::vector<std::string> sbatch_args;  // slurm: extra sbatch arguments, e.g. --time=30
  double poll_seconds = 1.0;   // slurm: how often to ask scontrol about each job
};

class TrialLauncher {
 public:
  virtual ~TrialLauncher() = default;
  virtual Result<std::unique_ptr<LaunchedTrial>> start(const TrialLaunch& launch) = 0;
  // Whether the trial survives this worker (Slurm jobs do; local children get SIGTERM).
  virtual bool detached() const = 0;
  // A re-queued trial's previous attempt, left running by a lost worker
  // (`launch_id` as LaunchedTrial::id() gave it): cancelled when this launcher
  // can reach it (Slurm: scancel), so two attempts never run at once.
  virtual void cancel_leftover(const std::string& launch_id) { (void)launch_id; }
};

// Errors: an unknown kind, or slurm without `sbatch` on PATH.
Result<std::unique_ptr<TrialLauncher>> make_launcher(const LauncherOptions& options);

}  // namespace kennel::tune

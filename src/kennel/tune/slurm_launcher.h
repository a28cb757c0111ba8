// Trials as Slurm batch jobs. Each trial is submitted with
//   sbatch --parsable --job-name=<trial> --output=<log> --open-mode=append
//          --chdir=<dir> --requeue [--partition=P] [--sbatch-arg ...] <script>
// whose script exports the trial's environment and execs the trial; a
// restarted job (SLURM_RESTART_COUNT > 0: preemption or `scontrol requeue`)
// execs the restart command instead, so a Kennel trial resumes from its
// checkpoint. The job is followed with `scontrol show job -o` (its state,
// reason, restarts and exit code; `sacct` needs accounting, which a plain
// cluster lacks), at most once per poll interval, and cancelled with scancel.
// Slurm's states map to trials as: PENDING/CONFIGURING/RUNNING/COMPLETING/
// REQUEUED/SUSPENDED running; COMPLETED and FAILED by their exit code;
// CANCELLED by the tuner (early stop, Ctrl-C) as such, by anyone else Stopped;
// TIMEOUT and DEADLINE Failed with the time limit; NODE_FAIL, BOOT_FAIL,
// PREEMPTED and a job Slurm forgot before its end was seen as crashes (re-run
// up to max_retries); OUT_OF_MEMORY Failed. The trial's files must be on a
// filesystem the compute nodes share with the worker (as HPC homes are).
#pragma once

#include <memory>

#include "kennel/tune/trial_launcher.h"

namespace kennel::tune {

Result<std::unique_ptr<TrialLauncher>> make_slurm_launcher(const LauncherOptions& options);

// `scontrol show job -o` output as Key=Value fields (empty: no such job).
std::map<std::string, std::string> parse_scontrol_fields(const std::string& text);
// How a job in a terminal Slurm state ended; nullopt while it may still run.
std::optional<TrialEnd> slurm_end(const std::map<std::string, std::string>& fields, bool cancelled_by_us);

}  // namespace kennel::tune

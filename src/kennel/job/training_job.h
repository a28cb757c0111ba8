// A training job: the one place that turns a TrainSpec into a run. It checks
// the inputs before creating anything (a bad spec, dataset or weight file
// leaves nothing behind), creates the job directory and registry row, builds
// data, model, optimizer and trainer, attaches the callbacks the job needs
// (metrics, checkpoints, heartbeat, stop-on-signal, debugger, profiler), and
// records the outcome: Completed with final metrics and artifacts (model/,
// evaluation), Stopped (SIGINT/SIGTERM, resumable), or Failed with the reason.
//
// The job directory's layout belongs to store/layout.h. Thread-safety: one job per process.
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "kennel/job/train_spec.h"
#include "kennel/store/job_registry.h"
#include "kennel/store/store.h"
#include "kennel/util/status.h"

namespace kennel::job {

struct TrainJobOptions {
  std::filesystem::path home;  // KENNEL_HOME
  bool quiet = false;          // no progress bars or metric lines on stdout
  std::string parent;          // tuning job that owns this trial
  // Data parallelism, when the environment says this process is one rank of
  // several (torchrun, srun, `kennel train --nproc-per-node`): see dist/.
  double dist_timeout_seconds = 60;  // a lost or frozen rank fails the job after this long
  std::string dist_interface;        // Gloo's network interface (GLOO_SOCKET_IFNAME); empty = the hostname's
  bool gradient_overlap = true;      // allreduce buckets during backward (off only to measure what it saves)
  // Where the job's registry row goes (`--store`); kEmbedded: the home's own kennel.db.
  store::StoreLocation store;
};

struct TrainJobResult {
  std::string name;
  store::JobStatus status = store::JobStatus::kFailed;
  std::string reason;
  nlohmann::json final_metrics = nlohmann::json::object();
  std::filesystem::path job_dir;
  // False on ranks other than 0 of a data-parallel job: rank 0 reports the job.
  bool reports = true;
};

// Usage errors (bad spec, missing data, bad weights, unwritable home) are
// returned as a non-OK Result before anything is created. Once the job
// exists, failures are recorded in the registry and returned in the result.
// When the environment names this process a rank of a data-parallel job
// (dist/rank_environment.h), every rank calls this; rank 0 owns the job.
Result<TrainJobResult> run_training_job(const TrainSpec& spec, const TrainJobOptions& options);
// Continues a Stopped or Failed job from its last checkpoint with its saved spec.
Result<TrainJobResult> resume_training_job(const std::string& name, const TrainJobOptions& options);

}  // namespace kennel::job

// The hooks a job's spec asks for around its trainer: the profiler and the
// debugger. The profiler starts first, when the job starts, so that its
// monitor sees initialisation (weights, the feature pass) too; the debugger
// starts when the trainer exists. Both leave their records under the job's
// directory and an artifact for the registry, whether the run completes,
// stops or fails. A debugger rule's stop_training ends this job only.
// Thread-safety: used on the job's thread.
#pragma once

#include <memory>

#include <nlohmann/json.hpp>

#include "kennel/debug/debugger.h"
#include "kennel/job/prepare.h"
#include "kennel/profile/profiler.h"
#include "kennel/store/layout.h"
#include "kennel/train/trainer.h"

namespace kennel::job {

class JobHooks {
 public:
  // Starts the profiler when the spec asks for one. `loader_probe` samples the
  // training loader (empty when the job trains on cached features).
  // Throws kennel::Error when the profiler cannot start.
  JobHooks(const PreparedJob& prepared, const store::JobPaths& paths, int threads,
           profile::ProfilerHook::LoaderProbe loader_probe);
  ~JobHooks();
  JobHooks(const JobHooks&) = delete;
  JobHooks& operator=(const JobHooks&) = delete;

  // Starts the debugger and attaches both hooks to the trainer. Throws kennel::Error.
  void attach(train::Trainer& trainer);
  bool profiling() const { return profiler_ != nullptr; }

  // The training loop returned (or threw): the profiler marks where
  // finalisation begins, the debugger's rules have their last word. Idempotent.
  void end_loop();
  // Ends both hooks (end_loop() first if needed): the profiler writes its
  // report. Returns the registry artifacts {debug, profile} of those that ran.
  // Idempotent.
  nlohmann::json finish();

 private:
  const PreparedJob& prepared_;
  store::JobPaths paths_;
  std::unique_ptr<profile::ProfilerSession> profiler_;
  std::unique_ptr<debug::DebuggerSession> debugger_;
  nlohmann::json artifacts_;
  bool loop_ended_ = false;
  bool finished_ = false;
};

}  // namespace kennel::job

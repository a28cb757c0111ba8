// A tuning worker: runs one study's trials on this host, as many at once as
// it may (its own --max-parallel, and the study's max_parallel_jobs across
// every worker), until the study has none left. The same loop serves
// `kennel tune` (the creating process is a worker; with the embedded store,
// the only one) and `kennel tune worker` on any host.
//
// Each turn of the loop: watch every running trial (new epochs go to the
// store, so early stopping works across hosts; the stopping rule decides),
// reap the ended ones (trial_outcome.h decides what their end means, written
// to the store under the claim's lease), renew the leases every lease/4,
// and claim more trials (study_store.h's protocol; study_view.h chooses a
// new trial's values inside the claim). A write the store refuses means the
// lease is lost — the trial was re-queued while this worker was cut off or
// frozen — so its process is killed and its result dropped: the re-run owns
// it. A store that cannot be reached is retried with back-off (up to 30 s
// apart) while the trials keep running. SIGINT/SIGTERM stop the worker: its
// running trials get SIGTERM (they checkpoint) and go back to pending.
//
// Kennel trials register themselves in the store the worker shares with them:
// the same one for a one-host store, this host's embedded registry for a
// shared one — then the worker keeps a copy of each trial's row in the shared
// store, written only under its lease. Thread-safety: one worker per thread.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "kennel/store/store.h"
#include "kennel/tune/study_spec.h"
#include "kennel/tune/trial_launcher.h"

namespace kennel::tune {

struct WorkerOptions {
  std::filesystem::path home;        // KENNEL_HOME of this host: job directories, study files
  std::filesystem::path executable;  // the kennel binary that runs Kennel trials
  store::StoreLocation store;
  int64_t max_parallel = 0;          // trials this worker runs at once (0: the study's max_parallel_jobs)
  LauncherOptions launcher;
  bool quiet = false;                // no progress lines on stdout
  bool owner = false;                // the study's own tuner: keeps its registry row's heartbeat
};

struct WorkerResult {
  bool study_over = false;  // every trial has finished
  int stop_signal = 0;      // the SIGINT/SIGTERM that stopped the worker, or 0
  int64_t trials_ended = 0;  // trials this worker saw to an end (any outcome)
};

class StudyWorker {
 public:
  // Checks the warm-start studies and the launcher; writes nothing.
  static Result<std::unique_ptr<StudyWorker>> create(const StudySpec& spec, WorkerOptions options);
  ~StudyWorker();
  StudyWorker(const StudyWorker&) = delete;
  StudyWorker& operator=(const StudyWorker&) = delete;

  // Runs until the study is over or a stop signal. Errors: a store that
  // cannot be opened, an unwritable home.
  Result<WorkerResult> run();

  // The progress line writer also used by the tuning job (stdout unless quiet,
  // and tuning/<name>/log.txt).
  void say(const std::string& line) const;

 private:
  class Impl;
  explicit StudyWorker(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kennel::tune

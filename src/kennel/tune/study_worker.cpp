#include "kennel/tune/study_worker.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "kennel/store/layout.h"
#include "kennel/tune/model_retention.h"
#include "kennel/tune/study_view.h"
#include "kennel/tune/trial_commands.h"
#include "kennel/tune/trial_metrics.h"
#include "kennel/tune/trial_outcome.h"
#include "kennel/util/fs.h"
#include "kennel/util/stop_signal.h"

namespace kennel::tune {

namespace fs = std::filesystem;
using nlohmann::json;
using store::JobStatus;
using Clock = std::chrono::steady_clock;

namespace {

std::string format_value(const json& value) {
  if (value.is_number_float()) return fmt::format("{:.4g}", value.get<double>());
  if (value.is_string()) return value.get<std::string>();
  return value.dump();
}

std::string format_hyperparameters(const json& hyperparameters) {
  std::string out;
  for (const auto& [key, value] : hyperparameters.items()) {
    out += fmt::format("{}{}={}", out.empty() ? "" : " ", key, format_value(value));
  }
  return out;
}

// A trial whose process had already ended when it was claimed again (it
// completed while its worker was away): its files say how it went.
class AlreadyEnded final : public LaunchedTrial {
 public:
  std::string id() const override { return "ended"; }
  std::optional<TrialEnd> poll() override { return TrialEnd{}; }
  void terminate() override {}
  void kill() override {}
  bool terminated_by_us() const override { return false; }
};

struct RunningTrial {
  Trial trial;
  store::Lease lease;
  std::unique_ptr<LaunchedTrial> process;
  LineTailer tailer;
  EpochValues values;                                // Kennel trials: metrics.jsonl
  std::unique_ptr<CommandMetrics> command_metrics;   // external commands: their output
  std::optional<std::string> early_stop_reason;
  std::vector<TrialCurve> visible;                   // the finished trials the stopper compares it with
  int64_t restarts_seen = 0;
  bool lease_lost = false;
  fs::path log;
  Clock::time_point last_renewal = Clock::now();
};

// An outcome the store has not taken yet (it was unreachable).
struct UnreportedEnd {
  store::Lease lease;
  Trial trial;
  ClassifiedEnd end;
  bool launch_failed = false;
};

}  // namespace

class StudyWorker::Impl {
 public:
  Impl(StudySpec spec, WorkerOptions options)
      : spec_(std::move(spec)),
        options_(std::move(options)),
        home_(options_.home),
        study_(home_.study(spec_.name)),
        host_(store::this_host()),
        worker_id_(fmt::format("{}:{}", host_, ::getpid())) {}

  Status open();
  Result<WorkerResult> run();
  void say(const std::string& line) const;

 private:
  bool external() const { return !spec_.command.empty(); }
  bool mirrored() const { return options_.store.shared(); }
  int64_t parallel_here() const {
    const int64_t mine = options_.max_parallel > 0 ? options_.max_parallel : spec_.max_parallel_jobs;
    return std::min(mine, spec_.max_parallel_jobs);
  }
  int64_t threads_for(int64_t index) const {
    if (index == 0 && warm_cache_first_) return total_threads(spec_);
    return std::max<int64_t>(1, total_threads(spec_) / parallel_here());
  }

  void claim_more();
  Status launch(const store::ClaimResult& claim);
  Status launch_kennel(RunningTrial& running);
  Status launch_command(RunningTrial& running);
  void settle_local_trial(const std::string& name);
  void watch(RunningTrial& running);
  void renew_leases();
  void lose_lease(RunningTrial& running, const std::string& during);
  void finish(RunningTrial& running, const TrialEnd& end);
  void report(UnreportedEnd ended);
  void apply_job_rows(const Trial& trial, const ClassifiedEnd& end);
  void refresh_snapshot();
  void write_trials_file();
  // Store trouble: kUnavailable means back off and try later; anything else is fatal.
  bool store_trouble(const Status& status, const std::string& what);
  bool store_resting() const { return Clock::now() < store_retry_at_; }

  StudySpec spec_;
  WorkerOptions options_;
  store::HomeLayout home_;
  store::StudyPaths study_;
  std::string host_, worker_id_;
  std::unique_ptr<store::Store> store_;           // the study's store
  std::unique_ptr<store::Store> trial_registry_;  // where Kennel trials register themselves
  std::string trial_store_argument_;
  std::unique_ptr<Sampler> sampler_;
  std::unique_ptr<Stopper> stopper_;
  std::vector<Observation> warm_start_;
  std::vector<std::string> warm_notes_;
  std::unique_ptr<TrialLauncher> launcher_;
  bool warm_cache_first_ = false;

  std::vector<RunningTrial> running_;
  std::vector<UnreportedEnd> unreported_;
  std::vector<Trial> snapshot_;
  bool stopping_ = false;
  bool study_over_ = false;
  int stop_signal_ = 0;
  int64_t ended_ = 0;
  Clock::time_point next_claim_ = Clock::now();
  Clock::time_point store_retry_at_ = Clock::now();
  double store_backoff_ = 0;
  Status fatal_;
};

void StudyWorker::Impl::say(const std::string& line) const {
  if (!options_.quiet) std::cout << line << std::endl;
  std::ofstream(study_.log(), std::ios::app) << fmt::format("{:.3f} {}\n", store::unix_now(), line);
}

Status StudyWorker::Impl::open() {
  auto opened = store::open_store(options_.store);
  if (!opened.ok()) return opened.status();
  store_ = std::move(*opened);
  // Kennel trials write their own rows: to this very store when it is one
  // host's, else to this host's embedded registry (the worker copies them).
  auto trial_location = mirrored() ? store::parse_store_location("", options_.home) : Result(options_.store);
  if (!trial_location.ok()) return trial_location.status();
  trial_store_argument_ = trial_location->argument();
  KENNEL_RETURN_IF_ERROR(kennel::create_directories(home_.jobs()));
  auto registry = store::open_store(*trial_location);
  if (!registry.ok()) return registry.status();
  trial_registry_ = std::move(*registry);

  auto warm = load_warm_start(*store_, spec_, &warm_notes_);
  if (!warm.ok()) return warm.status();
  warm_start_ = std::move(*warm);
  SamplerConfig sampler_config = spec_.sampler;
  sampler_config.start_from_best = spec_.strategy == "hyperband";
  auto sampler = make_sampler(sampler_config, spec_.space, spec_.seed);
  if (!sampler.ok()) return sampler.status();
  sampler_ = std::move(*sampler);
  sampler_->set_warm_start(warm_start_);
  auto stopper = make_stopper(spec_.early_stopping);
  if (!stopper.ok()) return stopper.status();
  stopper_ = std::move(*stopper);
  auto launcher = make_launcher(options_.launcher);
  if (!launcher.ok()) return launcher.status();
  launcher_ = std::move(*launcher);
  // One host's cache: the rule only helps when the trials share this machine.
  warm_cache_first_ = warms_feature_cache(spec_) && !mirrored();
  return {};
}

bool StudyWorker::Impl::store_trouble(const Status& status, const std::string& what) {
  if (status.code() != ErrorCode::kUnavailable) {
    if (fatal_.ok()) fatal_ = status.with_context(what);
    return true;
  }
  store_backoff_ = store_backoff_ <= 0 ? 0.5 : std::min(store_backoff_ * 2, 30.0);
  store_retry_at_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(store_backoff_));
  spdlog::warn("{}: {}; the running trials go on, retrying in {:.1f} s", what, status.message(), store_backoff_);
  return true;
}

void StudyWorker::Impl::refresh_snapshot() {
  auto trials = store_->list_trials(spec_.name);
  if (!trials.ok()) {
    (void)store_trouble(trials.status(), "reading the trials");
    return;
  }
  snapshot_ = std::move(*trials);
}

void StudyWorker::Impl::write_trials_file() {
  // This host's view for people and scripts; the store is the record.
  json array = json::array();
  for (const auto& trial : snapshot_) {
    const auto mine = std::find_if(running_.begin(), running_.end(), [&](const RunningTrial& r) {
      return r.trial.index == trial.index && !r.lease_lost;
    });
    array.push_back(mine != running_.end() ? mine->trial.to_json() : trial.to_json());
  }
  if (Status written = write_file_atomic(study_.trials(), json{{"trials", array}}.dump(1) + "\n"); !written.ok()) {
    spdlog::warn("could not write {}: {}", study_.trials().string(), written.message());
  }
}

void StudyWorker::Impl::claim_more() {
  while (!stopping_ && !study_over_ && fatal_.ok() && !store_resting() && Clock::now() >= next_claim_ &&
         static_cast<int64_t>(running_.size()) < parallel_here()) {
    store::ClaimRequest request;
    request.study = spec_.name;
    request.worker = worker_id_;
    request.host = host_;
    request.decide = [this](const store::StudyRecord&, const std::vector<Trial>& trials, int64_t index) {
      return decide_new_trial(spec_, *sampler_, warm_start_, trials, index, warm_cache_first_);
    };
    auto claim = store_->claim_trial(request);
    if (!claim.ok()) {
      (void)store_trouble(claim.status(), "claiming a trial");
      return;
    }
    store_backoff_ = 0;
    for (const auto& trial : claim->requeued) {
      say(trial.state == store::kTrialFailed ? fmt::format("trial {} failed: {}", trial.name, trial.reason)
                                             : fmt::format("trial {} {}", trial.name, trial.reason));
    }
    if (!claim->snapshot.empty()) snapshot_ = claim->snapshot;  // a quick "busy" reads no trials
    using Kind = store::ClaimResult::Kind;
    if (claim->kind == Kind::kClaimed) {
      if (Status launched = launch(*claim); !launched.ok()) {
        if (fatal_.ok()) fatal_ = launched;
        return;
      }
      continue;
    }
    if (claim->kind == Kind::kStudyOver) study_over_ = true;
    // Busy, waiting for an earlier trial, or nothing left: ask again shortly
    // (a trial of another worker may be re-queued).
    next_claim_ = Clock::now() + std::chrono::milliseconds(running_.empty() ? 200 : 100);
    if (!claim->requeued.empty()) write_trials_file();
    return;
  }
}

Status StudyWorker::Impl::launch(const store::ClaimResult& claim) {
  RunningTrial running;
  running.trial = claim.trial;
  running.lease = claim.lease;
  running.visible = curves_visible_to(claim.snapshot, claim.trial.index, spec_.max_parallel_jobs, spec_.objective);
  Trial& trial = running.trial;
  if (trial.attempts > 1 && !trial.launch_id.empty()) launcher_->cancel_leftover(trial.launch_id);
  trial.intermediate.clear();
  trial.epochs_run = 0;
  Status started = external() ? launch_command(running) : launch_kennel(running);
  if (!started.ok()) {
    UnreportedEnd failed;
    failed.lease = running.lease;
    failed.trial = trial;
    failed.launch_failed = true;
    failed.end.outcome.state = store::kTrialFailed;
    failed.end.outcome.reason = fmt::format("failed to start: {}", started.message());
    failed.end.job_status = JobStatus::kFailed;
    failed.end.message = failed.end.outcome.reason;
    report(std::move(failed));
    return {};
  }
  trial.launch_id = running.process->id();
  say(fmt::format("trial {} started{}{} [chosen by {}]: {}", trial.name,
                  trial.attempts > 1 ? fmt::format(" (attempt {})", trial.attempts) : "",
                  mirrored() || launcher_->detached() ? fmt::format(" on {} ({})", host_, running.process->id()) : "",
                  trial.source.empty() ? "?" : trial.source, format_hyperparameters(trial.hyperparameters)));
  auto recorded = store_->report_progress(running.lease, {}, 0, running.process->id());
  if (recorded.ok() && !*recorded) lose_lease(running, "starting it");
  running_.push_back(std::move(running));
  write_trials_file();
  return {};
}

// A trial process of an earlier attempt on this host that still runs (its
// worker froze or died): it gets SIGTERM and up to a minute to checkpoint.
void StudyWorker::Impl::settle_local_trial(const std::string& name) {
  bool signalled = false;
  for (int waited = 0; waited < 600; ++waited) {
    auto row = trial_registry_->get_job(name);
    if (!row.ok() || row->status != JobStatus::kInProgress || row->host != host_ || row->pid <= 0) return;
    if (!signalled) {
      say(fmt::format("trial {}: an earlier attempt still runs here (pid {}): stopping it", name, row->pid));
      ::kill(static_cast<pid_t>(row->pid), SIGTERM);
      signalled = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

Status StudyWorker::Impl::launch_kennel(RunningTrial& running) {
  Trial& trial = running.trial;
  running.log = study_.trial_log(trial.name);
  const store::JobPaths paths = home_.job(trial.name);
  KennelTrialCommand command{options_.executable, options_.home, trial_store_argument_, spec_.name,
                             spec_.nproc_per_node, trial_output(spec_)};
  settle_local_trial(trial.name);
  auto existing = trial_registry_->get_job(trial.name);
  std::error_code error;
  const bool has_job_dir = fs::exists(paths.spec(), error);
  const json trial_spec = kennel_trial_spec(spec_, trial.name, trial.hyperparameters, threads_for(trial.index));
  if (mirrored()) {
    store::JobRecord record;
    record.name = trial.name;
    record.parent = spec_.name;
    record.spec_json = trial_spec.dump();
    record.job_dir = paths.dir.string();
    KENNEL_RETURN_IF_ERROR(store_->replace_job(record));
  }
  TrialLaunch launch;
  launch.name = trial.name;
  launch.log = running.log;
  launch.work_dir = study_.trial_files();
  launch.restart_argv = kennel_resume_argv(command, trial.name);
  if (existing.ok() && existing->status == JobStatus::kCompleted && has_job_dir) {
    // It completed while no worker watched it: its files are the result.
    say(fmt::format("trial {} had completed while its worker was away: keeping its result", trial.name));
    running.process = std::make_unique<AlreadyEnded>();
  } else if (existing.ok() && has_job_dir) {
    // An interrupted or crashed trial continues from its last checkpoint.
    launch.argv = launch.restart_argv;
  } else {
    const fs::path spec_path = study_.trial_spec(trial.name);
    KENNEL_RETURN_IF_ERROR(write_file_atomic(spec_path, trial_spec.dump(2) + "\n"));
    launch.argv = kennel_train_argv(command, spec_path);
  }
  if (!running.process) {
    auto process = launcher_->start(launch);
    if (!process.ok()) return process.status();
    running.process = std::move(*process);
  }
  // The tailer re-reads a resumed trial's earlier epochs from the start.
  running.tailer = LineTailer(paths.metrics());
  return {};
}

Status StudyWorker::Impl::launch_command(RunningTrial& running) {
  Trial& trial = running.trial;
  const store::JobPaths paths = home_.job(trial.name);
  running.log = paths.log();
  KENNEL_RETURN_IF_ERROR(kennel::create_directories(paths.dir));
  const std::string command = substitute_command(spec_.command, trial.hyperparameters);
  const json record_spec = {{"command", command}, {"hyperparameters", trial.hyperparameters}};
  store::JobRecord record;
  record.name = trial.name;
  record.kind = "command";
  record.parent = spec_.name;
  record.spec_json = record_spec.dump();
  record.job_dir = paths.dir.string();
  KENNEL_RETURN_IF_ERROR(store_->replace_job(record));
  KENNEL_RETURN_IF_ERROR(write_file_atomic(paths.spec(), record_spec.dump(2) + "\n"));
  // A re-run starts its output and metrics afresh.
  KENNEL_RETURN_IF_ERROR(write_file_atomic(paths.log(), ""));
  KENNEL_RETURN_IF_ERROR(write_file_atomic(paths.metrics(), ""));
  TrialLaunch launch;
  launch.name = trial.name;
  launch.argv = {"/bin/sh", "-c", command};
  launch.restart_argv = launch.argv;
  launch.env = {{"KENNEL_TRIAL_NAME", trial.name},
                {"KENNEL_TRIAL_DIR", paths.dir.string()},
                {"KENNEL_TUNING_JOB", spec_.name},
                {"KENNEL_TRIAL_ATTEMPT", std::to_string(trial.attempts)},
                {"KENNEL_HYPERPARAMETERS", trial.hyperparameters.dump()}};
  launch.log = paths.log();
  launch.work_dir = study_.trial_files();
  auto process = launcher_->start(launch);
  if (!process.ok()) return process.status();
  running.process = std::move(*process);
  running.tailer = LineTailer(paths.log());
  running.command_metrics = std::make_unique<CommandMetrics>(spec_.metrics, spec_.objective.metric);
  return {};
}

void StudyWorker::Impl::lose_lease(RunningTrial& running, const std::string& during) {
  if (running.lease_lost) return;
  running.lease_lost = true;
  say(fmt::format("trial {}: lease lost while {} (the store re-queued it; another attempt owns it now): stopping "
                  "this attempt ({}) and dropping its result",
                  running.trial.name, during, running.process->id()));
  running.process->kill();
}

void StudyWorker::Impl::watch(RunningTrial& running) {
  Trial& trial = running.trial;
  if (running.lease_lost) return;
  if (const int64_t restarts = running.process->restarts(); restarts > running.restarts_seen) {
    running.restarts_seen = restarts;
    say(fmt::format("trial {} was requeued by the scheduler (restart {}, now {}): it runs again{}", trial.name,
                    restarts, running.process->scheduler_state(), external() ? "" : " from its checkpoint"));
  }
  auto lines = running.tailer.read_new_lines();
  // A restarted batch job's output begins at its start marker: what came before is the killed run's.
  const std::string marker = kTrialStartMarker;
  for (size_t i = lines.size(); i-- > 0;) {
    if (lines[i].rfind(marker, 0) != 0) continue;
    const bool restarted = lines[i].substr(marker.size()) != "0";
    lines.erase(lines.begin(), lines.begin() + static_cast<long>(i) + 1);
    if (restarted && external()) {
      trial.intermediate.clear();
      running.command_metrics = std::make_unique<CommandMetrics>(spec_.metrics, spec_.objective.metric);
      (void)write_file_atomic(home_.job(trial.name).metrics(), "");
    }
    break;
  }
  if (lines.empty()) return;
  const size_t before = trial.intermediate.size();
  if (external()) {
    const std::string records = running.command_metrics->absorb(lines, trial.intermediate);
    if (!records.empty()) std::ofstream(home_.job(trial.name).metrics(), std::ios::app) << records;
  } else {
    for (const auto& line : lines) absorb_epoch_line(line, spec_.objective.metric, running.values);
    trial.intermediate = running.values.values;
  }
  trial.epochs_run = static_cast<int64_t>(trial.intermediate.size());
  if (trial.intermediate.size() == before) return;
  // New epochs go to the store: other hosts' stopping rules and `describe` see them.
  if (!store_resting()) {
    auto reported = store_->report_progress(running.lease, trial.intermediate, trial.epochs_run, running.process->id());
    if (!reported.ok()) {
      (void)store_trouble(reported.status(), fmt::format("reporting trial {}", trial.name));
    } else if (!*reported) {
      lose_lease(running, "reporting an epoch");
      return;
    } else {
      running.last_renewal = Clock::now();
    }
  }
  if (!stopper_ || running.early_stop_reason || stopping_) return;
  // Each new epoch is a chance to stop a poor trial.
  const TrialCurve curve = curve_of(trial, spec_.objective);
  for (size_t epochs = before + 1; epochs <= curve.losses.size(); ++epochs) {
    TrialCurve partial{curve.index,
                       std::vector<double>(curve.losses.begin(), curve.losses.begin() + static_cast<long>(epochs))};
    if (auto reason = stopper_->should_stop(partial, running.visible)) {
      running.early_stop_reason = fmt::format("early stopped by the tuner ({}): {} {} at epoch {}", *reason,
                                              spec_.objective.metric, format_value(trial.intermediate[epochs - 1]),
                                              epochs);
      say(fmt::format("trial {}: {}", trial.name, *running.early_stop_reason));
      running.process->terminate();
      return;
    }
  }
}

void StudyWorker::Impl::renew_leases() {
  const auto every = std::chrono::duration<double>(spec_.lease_seconds / 4);
  for (auto& running : running_) {
    if (running.lease_lost || store_resting() || Clock::now() - running.last_renewal < every) continue;
    auto renewed = store_->renew_lease(running.lease);
    if (!renewed.ok()) {
      (void)store_trouble(renewed.status(), fmt::format("renewing the lease of trial {}", running.trial.name));
      continue;
    }
    if (!*renewed) {
      lose_lease(running, "renewing its lease");
      continue;
    }
    running.last_renewal = Clock::now();
    // Its registry row (a command's, or this store's copy of a Kennel trial's) lives as long as the lease.
    if (external() || mirrored()) (void)store_->heartbeat(running.trial.name);
  }
}

void StudyWorker::Impl::finish(RunningTrial& running, const TrialEnd& end) {
  Trial& trial = running.trial;
  watch(running);  // the last lines
  if (running.lease_lost) {
    say(fmt::format("trial {}: the attempt on this worker ended ({}); its result was dropped", trial.name,
                    end.exit.describe()));
    return;
  }
  TrialEndFacts facts;
  facts.external = external();
  facts.end = end;
  facts.terminated_by_us = running.process->terminated_by_us();
  facts.early_stop_reason = running.early_stop_reason;
  facts.attempts = trial.attempts;
  facts.max_retries = spec_.max_retries;
  facts.objective_metric = spec_.objective.metric;
  facts.log_tail = last_lines(running.log, external() ? 2 : 3);
  if (external()) {
    facts.objective_regex = spec_.metrics.count(spec_.objective.metric) ? spec_.metrics.at(spec_.objective.metric) : "";
  } else {
    // The file is the record; re-read it whole in case the tail raced the final write.
    running.values = read_epoch_values(home_.job(trial.name).metrics(), spec_.objective.metric);
    trial.intermediate = running.values.values;
    trial.epochs_run = static_cast<int64_t>(trial.intermediate.size());
    facts.metrics_seen = running.values.metrics_seen;
    if (auto row = trial_registry_->get_job(trial.name); row.ok()) {
      facts.row_status = row->status;
      facts.row_reason = row->failure_reason;
    }
  }
  trial.objective = objective_of(trial.intermediate, spec_.objective);
  facts.objective = trial.objective;
  UnreportedEnd ended;
  ended.lease = running.lease;
  ended.end = classify_trial_end(facts);
  ended.end.outcome.intermediate = trial.intermediate;
  ended.end.outcome.epochs_run = trial.epochs_run;
  ended.trial = trial;
  report(std::move(ended));
}

void StudyWorker::Impl::report(UnreportedEnd ended) {
  const Trial& trial = ended.trial;
  auto written = store_->finish_trial(ended.lease, ended.end.outcome);
  if (!written.ok()) {
    (void)store_trouble(written.status(), fmt::format("recording the end of trial {}", trial.name));
    unreported_.push_back(std::move(ended));
    return;
  }
  if (!*written) {
    say(fmt::format("trial {}: lease lost before its end was recorded (another attempt owns it): result dropped",
                    trial.name));
    return;
  }
  ++ended_;
  apply_job_rows(trial, ended.end);
  const auto& outcome = ended.end.outcome;
  if (outcome.state == store::kTrialCompleted) {
    const double seconds = store::unix_now() - trial.started_at;
    say(fmt::format("trial {} completed: {} {} ({} epochs, {:.1f} s)", trial.name, spec_.objective.metric,
                    format_value(*outcome.objective), outcome.epochs_run, seconds));
  } else if (!ended.end.message.empty()) {
    say(fmt::format("trial {} {}", trial.name, ended.end.message));
  }
  refresh_snapshot();
  if (!external()) {
    for (const auto& path : prune_trial_files(spec_.save_models, snapshot_, spec_.objective, host_, home_)) {
      spdlog::debug("save_models {}: removed {}", spec_.save_models, path.string());
    }
  }
}

void StudyWorker::Impl::apply_job_rows(const Trial& trial, const ClassifiedEnd& end) {
  const auto& outcome = end.outcome;
  if (external()) {
    json metrics = json::object();
    if (outcome.objective) metrics[spec_.objective.metric] = *outcome.objective;
    (void)store_->set_final_metrics(trial.name, metrics.dump());
    (void)store_->set_status(trial.name, end.job_status, outcome.reason);
    return;
  }
  // The trial's own row (in the registry it wrote to): the tuner amends what
  // only it knows — an early stop, a missing objective, the scheduler's
  // verdict, a crash with no outcome recorded.
  auto row = trial_registry_->get_job(trial.name);
  const bool disagrees = !row.ok() || row->status == JobStatus::kInProgress || row->status != end.job_status ||
                         (!outcome.reason.empty() && row->failure_reason != outcome.reason);
  if (outcome.state != store::kTrialPending && disagrees) {
    (void)trial_registry_->set_status(trial.name, end.job_status, outcome.reason);
  }
  if (!mirrored()) return;
  // The shared store's copy of it.
  if (auto local = trial_registry_->get_job(trial.name); local.ok()) {
    (void)store_->set_final_metrics(trial.name, local->final_metrics_json);
    (void)store_->set_artifacts(trial.name, local->artifacts_json);
  }
  (void)store_->set_status(trial.name, end.job_status, outcome.reason);
}

Result<WorkerResult> StudyWorker::Impl::run() {
  KENNEL_RETURN_IF_ERROR(kennel::create_directories(study_.trial_files()));
  for (const auto& note : warm_notes_) say(note);
  refresh_snapshot();
  if (!fatal_.ok()) return fatal_;
  write_trials_file();

  StopSignalScope signals;
  auto last_beat = Clock::now();
  while (true) {
    if (StopSignalScope::received() && !stopping_) {
      stopping_ = true;
      stop_signal_ = StopSignalScope::received();
      say(fmt::format("{} received: stopping the running trials (they checkpoint)", StopSignalScope::name(stop_signal_)));
      for (auto& running : running_) running.process->terminate();
    }
    if (!fatal_.ok() && !stopping_) {
      stopping_ = true;
      for (auto& running : running_) running.process->terminate();
    }
    bool changed = false;
    for (size_t i = 0; i < running_.size();) {
      watch(running_[i]);
      if (auto end = running_[i].process->poll()) {
        finish(running_[i], *end);
        running_.erase(running_.begin() + static_cast<long>(i));
        changed = true;
        continue;
      }
      ++i;
    }
    if (!unreported_.empty() && !store_resting()) {
      auto waiting = std::move(unreported_);
      unreported_.clear();
      for (auto& ended : waiting) report(std::move(ended));
    }
    renew_leases();
    if (options_.owner && Clock::now() - last_beat > std::chrono::seconds(5)) {
      (void)store_->heartbeat(spec_.name);
      last_beat = Clock::now();
    }
    claim_more();
    if (changed) write_trials_file();
    if (running_.empty() && unreported_.empty() && (stopping_ || study_over_)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(running_.empty() ? 100 : 50));
  }
  refresh_snapshot();
  write_trials_file();
  if (!fatal_.ok()) return fatal_;
  WorkerResult result;
  result.study_over = study_over_ && !stop_signal_;
  result.stop_signal = stop_signal_;
  result.trials_ended = ended_;
  return result;
}

Result<std::unique_ptr<StudyWorker>> StudyWorker::create(const StudySpec& spec, WorkerOptions options) {
  auto impl = std::make_unique<Impl>(spec, std::move(options));
  KENNEL_RETURN_IF_ERROR(impl->open());
  return std::unique_ptr<StudyWorker>(new StudyWorker(std::move(impl)));
}

StudyWorker::StudyWorker(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StudyWorker::~StudyWorker() = default;
Result<WorkerResult> StudyWorker::run() { return impl_->run(); }
void StudyWorker::say(const std::string& line) const { impl_->say(line); }

}  // namespace kennel::tune

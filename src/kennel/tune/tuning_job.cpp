#include "kennel/tune/tuning_job.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <regex>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "kennel/job/train_spec.h"
#include "kennel/store/layout.h"
#include "kennel/report/tuning_report.h"
#include "kennel/tune/trial_process.h"
#include "kennel/util/fs.h"
#include "kennel/util/parallel.h"
#include "kennel/util/stop_signal.h"

namespace kennel::tune {

namespace fs = std::filesystem;
using nlohmann::json;
using store::JobStatus;


json Trial::to_json() const {
  return {{"index", index},
          {"name", name},
          {"hyperparameters", hyperparameters},
          {"state", state},
          {"early_stopped", early_stopped},
          {"reason", reason},
          {"objective", objective ? json(*objective) : json(nullptr)},
          {"intermediate", intermediate},
          {"epochs_run", epochs_run},
          {"attempts", attempts},
          {"started_at", started_at},
          {"ended_at", ended_at}};
}

Trial Trial::from_json(const json& object) {
  Trial trial;
  trial.index = object.value("index", int64_t{0});
  trial.name = object.value("name", std::string());
  trial.hyperparameters = object.value("hyperparameters", json::object());
  trial.state = object.value("state", std::string("pending"));
  trial.early_stopped = object.value("early_stopped", false);
  trial.reason = object.value("reason", std::string());
  if (object.contains("objective") && object["objective"].is_number()) trial.objective = object["objective"].get<double>();
  if (object.contains("intermediate") && object["intermediate"].is_array()) {
    for (const auto& value : object["intermediate"]) {
      if (value.is_number()) trial.intermediate.push_back(value.get<double>());
    }
  }
  trial.epochs_run = object.value("epochs_run", int64_t{0});
  trial.attempts = object.value("attempts", int64_t{0});
  trial.started_at = object.value("started_at", 0.0);
  trial.ended_at = object.value("ended_at", 0.0);
  return trial;
}

namespace {

std::string trial_name(const std::string& study, int64_t index) { return fmt::format("{}-{:03d}", study, index + 1); }

std::string format_value(const json& value) {
  if (value.is_number_float()) return fmt::format("{:.4g}", value.get<double>());
  if (value.is_string()) return value.get<std::string>();
  return value.dump();
}

std::string format_hyperparameters(const json& hyperparameters) {
  std::string out;
  for (const auto& [key, value] : hyperparameters.items()) out += fmt::format("{}{}={}", out.empty() ? "" : " ", key, format_value(value));
  return out;
}

// The objective a list of per-epoch values amounts to.
std::optional<double> objective_of(const std::vector<double>& values, const ObjectiveSpec& objective) {
  if (values.empty()) return std::nullopt;
  if (objective.at == "final") return values.back();
  return objective.maximize() ? *std::max_element(values.begin(), values.end())
                              : *std::min_element(values.begin(), values.end());
}

// A curve in the stopper's minimise orientation, "best so far" when the objective is the best epoch.
TrialCurve curve_of(const Trial& trial, const ObjectiveSpec& objective) {
  TrialCurve curve;
  curve.index = trial.index;
  for (double value : trial.intermediate) {
    double loss = objective.maximize() ? -value : value;
    if (objective.at == "best" && !curve.losses.empty()) loss = std::min(loss, curve.losses.back());
    curve.losses.push_back(loss);
  }
  return curve;
}

// Reads a Kennel trial's metrics.jsonl: the objective metric of each epoch record.
struct EpochValues {
  std::vector<double> values;
  std::vector<int64_t> epochs;  // the record's epoch number of each value
  std::vector<std::string> metrics_seen;
};

void absorb_epoch_line(const std::string& line, const std::string& metric, EpochValues& out) {
  json record;
  try {
    record = json::parse(line);
  } catch (const std::exception&) {
    return;
  }
  if (!record.is_object() || record.value("type", std::string()) != "epoch") return;
  for (const auto& [key, value] : record.items()) {
    if (value.is_number() && std::find(out.metrics_seen.begin(), out.metrics_seen.end(), key) == out.metrics_seen.end() &&
        key != "epoch" && key != "step") {
      out.metrics_seen.push_back(key);
    }
  }
  if (!record.contains(metric) || !record[metric].is_number()) return;
  // A job resumed from an older checkpoint repeats epochs: the later record of an epoch replaces the earlier.
  const int64_t epoch = record.value("epoch", static_cast<int64_t>(out.values.size()));
  const auto again = std::find(out.epochs.begin(), out.epochs.end(), epoch);
  if (again != out.epochs.end()) {
    const auto keep = again - out.epochs.begin();
    out.epochs.resize(static_cast<size_t>(keep));
    out.values.resize(static_cast<size_t>(keep));
  }
  out.epochs.push_back(epoch);
  out.values.push_back(record[metric].get<double>());
}

EpochValues read_epoch_values(const fs::path& metrics_path, const std::string& metric) {
  EpochValues out;
  std::ifstream in(metrics_path);
  std::string line;
  while (std::getline(in, line)) absorb_epoch_line(line, metric, out);
  return out;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out.empty() ? "nothing" : out;
}

// Shell-quotes a value substituted into --command unless it is plainly safe.
std::string shell_value(const json& value) {
  std::string text = value.is_string() ? value.get<std::string>() : value.is_number_float() ? fmt::format("{}", value.get<double>()) : value.dump();
  const bool safe = !text.empty() && text.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_+=/:,") == std::string::npos;
  if (safe) return text;
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

std::string substitute_command(const std::string& command, const json& hyperparameters) {
  static const std::regex placeholder(R"(\{([A-Za-z_][A-Za-z0-9_]*)\})");
  std::string out;
  size_t last = 0;
  for (auto it = std::sregex_iterator(command.begin(), command.end(), placeholder); it != std::sregex_iterator(); ++it) {
    const auto position = static_cast<size_t>(it->position(0));
    const std::string name = (*it)[1].str();
    if ((position > 0 && command[position - 1] == '$') || !hyperparameters.contains(name)) continue;
    out += command.substr(last, position - last) + shell_value(hyperparameters[name]);
    last = position + static_cast<size_t>(it->length(0));
  }
  return out + command.substr(last);
}

// ---- the study runner ----------------------------------------------------------

struct RunningTrial {
  size_t slot = 0;  // index into trials_
  TrialProcess process;
  LineTailer tailer;
  EpochValues values;
  std::optional<std::string> early_stop_reason;
  bool resumed_run = false;  // `kennel train --resume` (continues a checkpoint)
  std::map<std::string, double> last_metric_values;  // external commands: latest value of each metric
};

class StudyRunner {
 public:
  StudyRunner(StudySpec spec, TuneOptions options, std::unique_ptr<store::JobRegistry> registry,
              std::vector<Trial> trials)
      : spec_(std::move(spec)),
        options_(std::move(options)),
        registry_(std::move(registry)),
        trials_(std::move(trials)),
        study_(store::HomeLayout(options_.home).study(spec_.name)) {}

  Result<TuningResult> run();

 private:
  bool external() const { return !spec_.command.empty(); }
  int64_t parallel() const { return spec_.max_parallel_jobs; }
  store::JobPaths trial_paths(const Trial& trial) const { return store::HomeLayout(options_.home).job(trial.name); }

  Status load_warm_start();
  std::vector<Observation> history_for(int64_t index) const;
  std::vector<TrialCurve> curves_visible_to(int64_t index) const;
  bool may_launch(int64_t index) const;
  Status launch(size_t slot);
  Status launch_kennel(RunningTrial& running, Trial& trial);
  Status launch_command(RunningTrial& running, Trial& trial);
  void watch(RunningTrial& running);
  void finish(RunningTrial& running, const ExitInfo& exit);
  void settle_interrupted_trials();
  void record_trial_end(const Trial& trial, JobStatus status);
  // Progress goes to stdout (unless quiet) and, time-stamped, to tuning/<name>/log.txt.
  void say(const std::string& line) const {
    if (!options_.quiet) std::cout << line << std::endl;
    std::ofstream(study_.log(), std::ios::app) << fmt::format("{:.3f} {}\n", store::unix_now(), line);
  }
  Status save_trials() const;
  int64_t total_threads() const;
  int64_t threads_for(int64_t index) const;
  bool warms_feature_cache() const;

  StudySpec spec_;
  TuneOptions options_;
  std::unique_ptr<store::JobRegistry> registry_;
  std::vector<Trial> trials_;
  store::StudyPaths study_;
  std::vector<Observation> warm_start_;
  std::unique_ptr<Sampler> sampler_;
  std::unique_ptr<Stopper> stopper_;
  std::vector<RunningTrial> running_;
  bool exhausted_ = false;
  bool stopping_ = false;
};

Status StudyRunner::save_trials() const {
  json array = json::array();
  for (const auto& trial : trials_) array.push_back(trial.to_json());
  return write_file_atomic(study_.trials(), json{{"trials", array}}.dump(1) + "\n");
}

int64_t StudyRunner::total_threads() const {
  int64_t total = spec_.threads;
  if (total <= 0 && spec_.training.contains("threads")) {
    try {
      total = std::stoll(spec_.training["threads"].is_string() ? spec_.training["threads"].get<std::string>()
                                                                : spec_.training["threads"].dump());
    } catch (const std::exception&) {
      total = 0;
    }
  }
  return total > 0 ? total : default_thread_count();
}

int64_t StudyRunner::threads_for(int64_t index) const {
  if (index == 0 && warms_feature_cache()) return total_threads();
  return std::max<int64_t>(1, total_threads() / parallel());
}

// Parallel frozen-backbone trials all need the same cached features, and
// computing them is most of a cold study's time. Running the first trial
// alone, with every thread, fills the cache twice as fast as one of two
// parallel trials would (the other would only wait on the cache's lock).
bool StudyRunner::warms_feature_cache() const {
  if (external() || parallel() < 2) return false;
  for (const char* key : {"arch", "pretrained", "freeze", "augment", "feature_cache", "input_size", "resize"}) {
    if (spec_.space.find(key)) return false;  // trials would not share one cache entry
  }
  job::TrainSpec base;
  if (!job::apply_spec_json(base, spec_.training, "training").ok()) return false;
  return base.feature_cache && base.freeze == "backbone" && !base.augment;
}

Status StudyRunner::load_warm_start() {
  for (const auto& source : spec_.warm_start) {
    auto other = load_study(options_.home, source);
    if (!other.ok()) return other.status().with_context(fmt::format("--warm-start {}", source));
    if (other->spec.objective.metric != spec_.objective.metric) {
      return invalid_argument("--warm-start {}: it optimised '{}', this study optimises '{}'", source,
                              other->spec.objective.metric, spec_.objective.metric);
    }
    size_t used = 0;
    for (const auto& trial : other->trials) {
      if (!trial.objective) continue;
      // Keep the values that lie in this study's space; a trial sharing none says nothing here.
      json values = json::object();
      for (const auto& parameter : spec_.space.parameters) {
        if (trial.hyperparameters.contains(parameter.name) && parameter.contains(trial.hyperparameters[parameter.name])) {
          values[parameter.name] = trial.hyperparameters[parameter.name];
        }
      }
      if (values.empty()) continue;
      const double value = *trial.objective;
      warm_start_.push_back({values, spec_.objective.maximize() ? -value : value, trial.early_stopped});
      ++used;
    }
    if (used == 0) {
      return invalid_argument(
          "--warm-start {}: none of its trials has an objective and values inside this study's ranges ({})", source,
          spec_.space.to_json().dump());
    }
    say(fmt::format("warm start: {} trials of {}", used, source));
  }
  return {};
}

std::vector<Observation> StudyRunner::history_for(int64_t index) const {
  std::vector<Observation> history = warm_start_;
  for (const auto& trial : trials_) {
    // A failed trial's partial value says little about its hyperparameters: TPE ignores it, as Optuna does.
    if (trial.index > index - parallel() || !trial.finished() || !trial.objective || trial.state == "Failed") continue;
    const double value = *trial.objective;
    history.push_back({trial.hyperparameters, spec_.objective.maximize() ? -value : value, trial.early_stopped});
  }
  return history;
}

std::vector<TrialCurve> StudyRunner::curves_visible_to(int64_t index) const {
  std::vector<TrialCurve> curves;
  for (const auto& trial : trials_) {
    if (trial.index > index - parallel() || !trial.finished() || trial.intermediate.empty()) continue;
    curves.push_back(curve_of(trial, spec_.objective));
  }
  return curves;
}

bool StudyRunner::may_launch(int64_t index) const {
  for (const auto& trial : trials_) {
    if (trial.index <= index - parallel() && !trial.finished()) return false;
    if (trial.index == 0 && index > 0 && !trial.finished() && warms_feature_cache()) return false;
  }
  return true;
}

Status StudyRunner::launch(size_t slot) {
  Trial& trial = trials_[slot];
  RunningTrial running;
  running.slot = slot;
  ++trial.attempts;
  trial.state = "running";
  trial.early_stopped = false;
  trial.reason.clear();
  if (trial.started_at == 0) trial.started_at = store::unix_now();
  Status started = external() ? launch_command(running, trial) : launch_kennel(running, trial);
  if (!started.ok()) {
    trial.state = "Failed";
    trial.reason = started.message();
    trial.ended_at = store::unix_now();
    say(fmt::format("trial {} failed to start: {}", trial.name, trial.reason));
    return save_trials();
  }
  say(fmt::format("trial {} started{}: {}", trial.name, trial.attempts > 1 ? fmt::format(" (attempt {})", trial.attempts) : "",
                  format_hyperparameters(trial.hyperparameters)));
  running_.push_back(std::move(running));
  return save_trials();
}

Status StudyRunner::launch_kennel(RunningTrial& running, Trial& trial) {
  const fs::path log = study_.trial_log(trial.name);
  std::vector<std::string> argv = {options_.executable.string(), "--home", options_.home.string(), "--log-level", "warn",
                                   "train"};
  auto existing = registry_->get_job(trial.name);
  if (existing.ok() && existing->status == JobStatus::kInProgress) {
    return failed_precondition("trial {} is still running (pid {}): stop it with `kennel jobs stop {}`", trial.name,
                               existing->pid, trial.name);
  }
  if (existing.ok() && existing->status != JobStatus::kCompleted) {
    // An interrupted or crashed trial continues from its last checkpoint.
    running.resumed_run = true;
    argv.insert(argv.end(), {"--resume", trial.name});
  } else {
    json trial_spec = spec_.training;
    for (const auto& [key, value] : trial.hyperparameters.items()) trial_spec[key] = value;
    trial_spec["name"] = trial.name;
    if (!spec_.space.find("threads")) trial_spec["threads"] = threads_for(trial.index);
    const fs::path spec_path = study_.trial_spec(trial.name);
    KENNEL_RETURN_IF_ERROR(write_file_atomic(spec_path, trial_spec.dump(2) + "\n"));
    argv.insert(argv.end(), {"--spec", spec_path.string(), "--parent", spec_.name});
  }
  argv.insert(argv.end(), {"--quiet", "--json"});
  auto process = TrialProcess::start(argv, {}, log);
  if (!process.ok()) return process.status();
  running.process = std::move(*process);
  running.tailer = LineTailer(trial_paths(trial).metrics());
  // A resumed trial's earlier epochs are already in metrics.jsonl; the tailer re-reads them from the start.
  trial.intermediate.clear();
  return {};
}

Status StudyRunner::launch_command(RunningTrial& running, Trial& trial) {
  const store::JobPaths paths = trial_paths(trial);
  KENNEL_RETURN_IF_ERROR(kennel::create_directories(paths.dir));
  const std::string command = substitute_command(spec_.command, trial.hyperparameters);
  const json record_spec = {{"command", command}, {"hyperparameters", trial.hyperparameters}};
  auto existing = registry_->get_job(trial.name);
  if (existing.ok()) {
    KENNEL_RETURN_IF_ERROR(registry_->reopen_job(trial.name));
  } else {
    store::JobRecord record;
    record.name = trial.name;
    record.kind = "command";
    record.parent = spec_.name;
    record.spec_json = record_spec.dump();
    record.job_dir = paths.dir.string();
    KENNEL_RETURN_IF_ERROR(registry_->create_job(record));
  }
  KENNEL_RETURN_IF_ERROR(write_file_atomic(paths.spec(), record_spec.dump(2) + "\n"));
  // A re-run starts its output and metrics afresh.
  KENNEL_RETURN_IF_ERROR(write_file_atomic(paths.log(), ""));
  KENNEL_RETURN_IF_ERROR(write_file_atomic(paths.metrics(), ""));
  std::map<std::string, std::string> env = {{"KENNEL_TRIAL_NAME", trial.name},
                                            {"KENNEL_TRIAL_DIR", paths.dir.string()},
                                            {"KENNEL_TUNING_JOB", spec_.name},
                                            {"KENNEL_HYPERPARAMETERS", trial.hyperparameters.dump()}};
  auto process = TrialProcess::start({"/bin/sh", "-c", command}, env, paths.log());
  if (!process.ok()) return process.status();
  running.process = std::move(*process);
  running.tailer = LineTailer(paths.log());
  trial.intermediate.clear();
  return {};
}

void StudyRunner::watch(RunningTrial& running) {
  Trial& trial = trials_[running.slot];
  const auto lines = running.tailer.read_new_lines();
  if (lines.empty()) return;
  const size_t before = trial.intermediate.size();
  if (external()) {
    std::string metrics_out;
    for (const auto& line : lines) {
      for (const auto& [name, pattern] : spec_.metrics) {
        const std::regex regex(pattern);
        for (auto it = std::sregex_iterator(line.begin(), line.end(), regex); it != std::sregex_iterator(); ++it) {
          char* end = nullptr;
          const std::string text = (*it)[1].str();
          const double value = std::strtod(text.c_str(), &end);
          if (text.empty() || end != text.c_str() + text.size()) continue;
          running.last_metric_values[name] = value;
          if (name != spec_.objective.metric) continue;
          trial.intermediate.push_back(value);
          json record = {{"type", "epoch"}, {"epoch", trial.intermediate.size() - 1}};
          for (const auto& [metric, latest] : running.last_metric_values) record[metric] = latest;
          metrics_out += record.dump() + "\n";
        }
      }
    }
    if (!metrics_out.empty()) {
      std::ofstream(trial_paths(trial).metrics(), std::ios::app) << metrics_out;
    }
  } else {
    for (const auto& line : lines) absorb_epoch_line(line, spec_.objective.metric, running.values);
    trial.intermediate = running.values.values;
  }
  trial.epochs_run = static_cast<int64_t>(trial.intermediate.size());
  if (trial.intermediate.size() == before || !stopper_ || running.early_stop_reason || stopping_) return;
  // Each new epoch is a chance to stop a poor trial.
  TrialCurve curve = curve_of(trial, spec_.objective);
  for (size_t epochs = before + 1; epochs <= curve.losses.size(); ++epochs) {
    TrialCurve partial{curve.index, std::vector<double>(curve.losses.begin(), curve.losses.begin() + static_cast<long>(epochs))};
    if (auto reason = stopper_->should_stop(partial, curves_visible_to(trial.index))) {
      running.early_stop_reason = fmt::format("early stopped by the tuner ({}): {} {} at epoch {}", *reason,
                                              spec_.objective.metric, format_value(trial.intermediate[epochs - 1]), epochs);
      say(fmt::format("trial {}: {}", trial.name, *running.early_stop_reason));
      running.process.terminate();
      return;
    }
  }
}

void StudyRunner::record_trial_end(const Trial& trial, JobStatus status) {
  if (!external()) return;  // Kennel trials record themselves; the tuner only amends early stops
  json metrics = json::object();
  if (trial.objective) metrics[spec_.objective.metric] = *trial.objective;
  (void)registry_->set_final_metrics(trial.name, metrics.dump());
  (void)registry_->set_status(trial.name, status, trial.reason);
}

void StudyRunner::finish(RunningTrial& running, const ExitInfo& exit) {
  Trial& trial = trials_[running.slot];
  watch(running);  // the last lines
  if (!external()) {
    // The file is the record; re-read it whole in case the tail raced the final write.
    running.values = read_epoch_values(trial_paths(trial).metrics(), spec_.objective.metric);
    trial.intermediate = running.values.values;
    trial.epochs_run = static_cast<int64_t>(trial.intermediate.size());
  }
  trial.objective = objective_of(trial.intermediate, spec_.objective);
  trial.ended_at = store::unix_now();
  const fs::path log = external() ? trial_paths(trial).log() : study_.trial_log(trial.name);

  std::optional<JobStatus> row_status;
  std::string row_reason;
  if (!external()) {
    if (auto row = registry_->get_job(trial.name); row.ok()) {
      row_status = row->status;
      row_reason = row->failure_reason;
    }
  }
  const bool completed = external() ? (!exit.signaled && exit.code == 0) : row_status == JobStatus::kCompleted;
  const bool we_stopped = running.process.terminated_by_us();
  // A crash: the process died in a way no training error explains (a signal we did not send, or no outcome recorded).
  const bool crashed = !completed && !we_stopped &&
                       (external() ? exit.signaled || exit.died_in_shell()
                                   : (exit.signaled || !row_status || row_status == JobStatus::kInProgress ||
                                      (exit.code != 0 && exit.code != 1 && exit.code != 2)));

  if (completed && trial.objective) {
    trial.state = "Completed";
    trial.reason.clear();
    record_trial_end(trial, JobStatus::kCompleted);
    say(fmt::format("trial {} completed: {} {} ({} epochs, {:.1f} s)", trial.name, spec_.objective.metric,
                    format_value(*trial.objective), trial.epochs_run, trial.ended_at - trial.started_at));
  } else if (completed) {
    trial.state = "Failed";
    const auto seen = external() ? std::vector<std::string>{} : running.values.metrics_seen;
    trial.reason = external()
                       ? fmt::format("the objective '{}' was never reported: its regex '{}' matched no line of the "
                                     "command's output (last output: {})",
                                     spec_.objective.metric, spec_.metrics.at(spec_.objective.metric),
                                     last_lines(log, 2))
                       : fmt::format("the objective '{}' was never reported (metrics.jsonl has: {})",
                                     spec_.objective.metric, join(seen));
    record_trial_end(trial, JobStatus::kFailed);
    if (!external()) (void)registry_->set_status(trial.name, JobStatus::kFailed, trial.reason);
    say(fmt::format("trial {} failed: {}", trial.name, trial.reason));
  } else if (we_stopped && running.early_stop_reason) {
    trial.state = "Stopped";
    trial.early_stopped = true;
    trial.reason = *running.early_stop_reason;
    record_trial_end(trial, JobStatus::kStopped);
    if (!external()) (void)registry_->set_status(trial.name, JobStatus::kStopped, trial.reason);
  } else if (we_stopped) {
    // The tuner itself is stopping: the trial goes back to "running" to be re-run by `kennel tune resume`.
    trial.state = "running";
    trial.ended_at = 0;
    trial.reason = "interrupted with the tuning job";
    if (external()) (void)registry_->set_status(trial.name, JobStatus::kStopped, trial.reason);
  } else if (crashed && trial.attempts <= spec_.max_retries) {
    const std::string why = row_reason.empty() ? exit.describe() : row_reason;
    say(fmt::format("trial {} crashed ({}); retrying ({} of {} retries)", trial.name, why, trial.attempts,
                    spec_.max_retries));
    trial.state = "pending-retry";
    trial.reason = why;
    if (external()) (void)registry_->set_status(trial.name, JobStatus::kFailed, why);
    return;
  } else {
    trial.state = row_status == JobStatus::kStopped && !crashed ? "Stopped" : "Failed";
    std::string why = row_reason;
    if (why.empty()) {
      why = exit.describe();
      const std::string tail = last_lines(log, 3);
      if (!tail.empty()) why += ": " + tail;
    }
    if (crashed) why = fmt::format("crashed ({}) after {} attempt{}", why, trial.attempts, trial.attempts == 1 ? "" : "s");
    trial.reason = why;
    record_trial_end(trial, trial.state == "Stopped" ? JobStatus::kStopped : JobStatus::kFailed);
    if (!external() && (!row_status || *row_status == JobStatus::kInProgress)) {
      (void)registry_->set_status(trial.name, JobStatus::kFailed, why);
    }
    say(fmt::format("trial {} {}: {}", trial.name, trial.state == "Stopped" ? "stopped" : "failed", why));
  }
}

// After a tuner died: trials.json says "running" for trials whose processes may
// still be ending (they got SIGTERM from PR_SET_PDEATHSIG). Wait for them, then
// keep what completed and mark the rest to be re-run.
void StudyRunner::settle_interrupted_trials() {
  for (auto& trial : trials_) {
    if (trial.state != "running" && trial.state != "pending-retry") continue;
    if (!external()) {
      for (int waited = 0; waited < 1200; ++waited) {  // up to 2 minutes for a checkpoint to finish
        auto row = registry_->get_job(trial.name);
        if (!row.ok() || row->status != JobStatus::kInProgress) break;
        if (waited == 600 && row->pid > 0) ::kill(static_cast<pid_t>(row->pid), SIGTERM);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      auto row = registry_->get_job(trial.name);
      if (row.ok() && row->status == JobStatus::kCompleted) {
        const auto values = read_epoch_values(trial_paths(trial).metrics(), spec_.objective.metric);
        trial.intermediate = values.values;
        trial.epochs_run = static_cast<int64_t>(values.values.size());
        trial.objective = objective_of(trial.intermediate, spec_.objective);
        trial.state = trial.objective ? "Completed" : "Failed";
        if (!trial.objective) {
          trial.reason = fmt::format("the objective '{}' was never reported (metrics.jsonl has: {})",
                                     spec_.objective.metric, join(values.metrics_seen));
        }
        trial.ended_at = row->ended_at;
        say(fmt::format("trial {} finished while the tuner was down: {}", trial.name, trial.state));
        continue;
      }
    }
    trial.state = "pending-retry";
  }
}

Result<TuningResult> StudyRunner::run() {
  const auto started = std::chrono::steady_clock::now();
  TuningResult result;
  result.name = spec_.name;
  result.tuning_dir = study_.dir;
  KENNEL_RETURN_IF_ERROR(load_warm_start());
  auto sampler = make_sampler(spec_.sampler, spec_.space, spec_.seed);
  if (!sampler.ok()) return sampler.status();
  sampler_ = std::move(*sampler);
  auto stopper = make_stopper(spec_.early_stopping);
  if (!stopper.ok()) return stopper.status();
  stopper_ = std::move(*stopper);
  settle_interrupted_trials();
  KENNEL_RETURN_IF_ERROR(save_trials());

  StopSignalScope signals;
  auto last_beat = std::chrono::steady_clock::now();
  while (true) {
    if (StopSignalScope::received() && !stopping_) {
      stopping_ = true;
      say(fmt::format("{} received: stopping the running trials (they checkpoint)", StopSignalScope::name(StopSignalScope::received())));
      for (auto& running : running_) running.process.terminate();
    }
    // Reap and watch.
    for (size_t i = 0; i < running_.size();) {
      watch(running_[i]);
      if (auto exit = running_[i].process.poll()) {
        finish(running_[i], *exit);
        running_.erase(running_.begin() + static_cast<long>(i));
        KENNEL_RETURN_IF_ERROR(save_trials());
        continue;
      }
      ++i;
    }
    // Fill free slots: retries first (lowest index), then new trials.
    while (!stopping_ && static_cast<int64_t>(running_.size()) < parallel()) {
      std::optional<size_t> next;
      for (size_t slot = 0; slot < trials_.size(); ++slot) {
        const bool is_running = std::any_of(running_.begin(), running_.end(), [&](const RunningTrial& r) { return r.slot == slot; });
        if ((trials_[slot].state == "pending-retry" || trials_[slot].state == "pending") && !is_running) {
          next = slot;
          break;
        }
      }
      if (!next && !exhausted_ && static_cast<int64_t>(trials_.size()) < spec_.max_jobs) {
        const auto index = static_cast<int64_t>(trials_.size());
        if (!may_launch(index)) break;
        auto suggestion = sampler_->suggest(index, history_for(index));
        if (!suggestion) {
          exhausted_ = true;
          say(fmt::format("the grid is exhausted after {} trials", index));
          break;
        }
        Trial trial;
        trial.index = index;
        trial.name = trial_name(spec_.name, index);
        trial.hyperparameters = *suggestion;
        trials_.push_back(std::move(trial));
        next = trials_.size() - 1;
      }
      if (!next) break;
      if (trials_[*next].state == "pending" && !may_launch(trials_[*next].index)) break;
      KENNEL_RETURN_IF_ERROR(launch(*next));
    }
    const bool more = !stopping_ && !exhausted_ && static_cast<int64_t>(trials_.size()) < spec_.max_jobs;
    const bool pending = std::any_of(trials_.begin(), trials_.end(), [](const Trial& t) {
      return t.state == "pending" || t.state == "pending-retry";
    });
    if (running_.empty() && (stopping_ || (!more && !pending))) break;
    if (std::chrono::steady_clock::now() - last_beat > std::chrono::seconds(5)) {
      (void)registry_->heartbeat(spec_.name);
      last_beat = std::chrono::steady_clock::now();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  KENNEL_RETURN_IF_ERROR(save_trials());
  result.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  // The outcome.
  auto state = load_study(options_.home, spec_.name);
  if (!state.ok()) return state.status();
  const auto best = best_trial(*state);
  json final_metrics = json::object();
  json artifacts = {{"tuning_dir", study_.dir.string()}, {"trials", (study_.trials()).string()}};
  if (best) {
    const json best_json = best_trial_json(options_.home, *state);
    KENNEL_RETURN_IF_ERROR(write_file_atomic(study_.best(), best_json.dump(2) + "\n"));
    if (best_json.contains("spec")) {
      KENNEL_RETURN_IF_ERROR(write_file_atomic(study_.best_spec(), best_json["spec"].dump(2) + "\n"));
      artifacts["best_spec"] = (study_.best_spec()).string();
    }
    final_metrics[spec_.objective.metric] = best_json["objective"]["value"];
    final_metrics["best_trial"] = best_json["name"];
    artifacts["best_trial"] = best_json["name"];
    if (!best_json["model"].is_null()) artifacts["best_model"] = best_json["model"];
  }
  if (stopping_) {
    result.status = JobStatus::kStopped;
    result.reason = fmt::format("stopped by {}; continue with `kennel tune resume {}`",
                                StopSignalScope::name(StopSignalScope::received()), spec_.name);
  } else if (!best) {
    result.status = JobStatus::kFailed;
    std::map<std::string, int> reasons;
    for (const auto& trial : trials_) ++reasons[trial.reason.empty() ? trial.state : trial.reason];
    std::string summary;
    for (const auto& [reason, count] : reasons) summary += fmt::format("{}{}x {}", summary.empty() ? "" : "; ", count, reason);
    result.reason = fmt::format("all {} trials failed: {}", trials_.size(), summary);
  } else {
    result.status = JobStatus::kCompleted;
  }
  // The report is the study's final artefact: it shows the outcome about to be recorded,
  // not the InProgress row that the registry still holds at this point.
  state->record.status = result.status;
  state->record.failure_reason = result.reason;
  state->record.ended_at = store::unix_now();
  if (auto report = write_tuning_report(options_.home, *state); report.ok()) {
    artifacts["report"] = report->string();
  } else {
    spdlog::warn("could not write the tuning report: {}", report.status().message());
  }
  (void)registry_->set_final_metrics(spec_.name, final_metrics.dump());
  (void)registry_->set_artifacts(spec_.name, artifacts.dump());
  KENNEL_RETURN_IF_ERROR(registry_->set_status(spec_.name, result.status, result.reason));
  return result;
}

Result<std::unique_ptr<store::JobRegistry>> open_registry(const fs::path& home) {
  return store::JobRegistry::open(store::HomeLayout(home).registry());
}

}  // namespace

Result<TuningResult> run_tuning_job(const StudySpec& requested, const TuneOptions& options) {
  auto spec = resolve_study_spec(requested);
  if (!spec.ok()) return spec.status();
  KENNEL_RETURN_IF_ERROR(kennel::create_directories(options.home));
  auto registry = open_registry(options.home);
  if (!registry.ok()) return registry.status();
  if (auto existing = (*registry)->get_job(spec->name); existing.ok()) {
    return Status(ErrorCode::kAlreadyExists,
                  fmt::format("a job named '{}' already exists ({}): choose another --name, or continue it with "
                              "`kennel tune resume {}`",
                              spec->name, store::job_status_name(existing->status), spec->name));
  }
  const store::StudyPaths study_paths = store::HomeLayout(options.home).study(spec->name);
  std::error_code error;
  if (fs::exists(study_paths.dir, error)) {
    return Status(ErrorCode::kAlreadyExists,
                  fmt::format("tuning directory '{}' already exists: choose another --name", study_paths.dir.string()));
  }
  for (const auto& source : spec->warm_start) {
    auto other = (*registry)->get_job(source);
    if (!other.ok() || other->kind != "tuning") {
      return not_found("--warm-start {}: no tuning job of that name (`kennel jobs list` shows them)", source);
    }
  }
  const json study = to_json(*spec);
  store::JobRecord record;
  record.name = spec->name;
  record.kind = "tuning";
  record.spec_json = study.dump();
  record.job_dir = study_paths.dir.string();
  KENNEL_RETURN_IF_ERROR((*registry)->create_job(record));
  Status created = kennel::create_directories(study_paths.trial_files());
  if (created.ok()) created = write_file_atomic(study_paths.study(), study.dump(2) + "\n");
  if (!created.ok()) {
    (void)(*registry)->set_status(spec->name, JobStatus::kFailed, created.message());
    return created;
  }
  StudyRunner runner(*spec, options, std::move(*registry), {});
  return runner.run();
}

Result<TuningResult> resume_tuning_job(const std::string& name, const TuneOptions& options) {
  auto state = load_study(options.home, name);
  if (!state.ok()) return state.status();
  if (state->record.status == JobStatus::kInProgress) {
    return failed_precondition("tuning job '{}' is still running (pid {} on {}): stop it first with `kennel jobs stop {}`",
                               name, state->record.pid, state->record.host, name);
  }
  if (state->record.status == JobStatus::kCompleted) {
    return failed_precondition("tuning job '{}' already completed: nothing to resume (see `kennel tune describe {}`)",
                               name, name);
  }
  auto spec = resolve_study_spec(state->spec);
  if (!spec.ok()) return spec.status().with_context(fmt::format("study.json of {}", name));
  auto registry = open_registry(options.home);
  if (!registry.ok()) return registry.status();
  KENNEL_RETURN_IF_ERROR((*registry)->reopen_job(name));
  StudyRunner runner(*spec, options, std::move(*registry), state->trials);
  return runner.run();
}

}  // namespace kennel::tune

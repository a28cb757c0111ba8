// `kennel tune`: a hyperparameter tuning job from a spec file and/or flags,
// `kennel tune worker` to run a shared study's trials on another host, and
// `kennel tune resume|describe|best|report NAME` to continue and read it.
#include <unistd.h>

#include <iostream>
#include <set>

#include <nlohmann/json.hpp>

#include "kennel/cli/command.h"
#include "kennel/job/train_spec.h"
#include "kennel/store/layout.h"
#include "kennel/tune/study_spec.h"
#include "kennel/tune/tuning_job.h"

namespace kennel::cli {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

struct TuneFlags {
  std::string spec_file;
  std::string name;
  std::vector<std::string> params;
  std::string objective, goal, objective_at;
  std::string strategy, early_stopping;
  std::optional<int64_t> max_jobs, max_parallel_jobs, max_retries, seed;
  std::vector<std::string> warm_start;
  std::string command;
  std::vector<std::string> metrics;
  std::vector<std::string> sets;
  std::map<std::string, std::string> training_values;
  std::optional<int64_t> startup_trials, nproc_per_node;
  std::optional<double> lease_seconds, requeue_grace_seconds;
  std::string save_models;
  std::string output;
  // This process as a worker.
  bool no_run = false;
  int64_t max_parallel = 0;
  std::string launcher = "local";
  std::string partition;
  std::vector<std::string> sbatch_args;
  bool quiet = false;
  bool json_output = false;
};

struct ReadFlags {
  std::string name;
  bool json_output = false;
  bool csv = false;
};

// Trials run this very binary: /proc/self/exe still names it after an upgrade
// replaced the file on disk, so a long study never mixes versions.
fs::path own_executable() { return "/proc/self/exe"; }

tune::ValueHint hint_for(const std::string& name, bool external) {
  if (external) return tune::ValueHint::kUnknown;
  for (const auto& key : job::train_spec_keys()) {
    if (key.name != name) continue;
    if (key.type == job::SpecKeyType::kInt) return tune::ValueHint::kInteger;
    if (key.type == job::SpecKeyType::kFloat) return tune::ValueHint::kFloat;
    return tune::ValueHint::kText;
  }
  return tune::ValueHint::kUnknown;
}

tune::StudySpec study_from_flags(const TuneFlags& flags) {
  tune::StudySpec spec;
  auto check = [](const Status& status) {
    if (!status.ok()) throw Error(status);
  };
  if (!flags.spec_file.empty()) {
    auto file = job::read_spec_file(flags.spec_file);
    if (!file.ok()) throw Error(file.status());
    check(tune::apply_study_json(spec, *file, flags.spec_file));
  }
  if (!flags.name.empty()) spec.name = flags.name;
  if (!flags.command.empty()) spec.command = flags.command;
  const bool external = !spec.command.empty();
  for (const auto& text : flags.params) {
    auto parameter = tune::parse_parameter_flag(text, [&](const std::string& name) { return hint_for(name, external); });
    if (!parameter.ok()) throw Error(parameter.status());
    auto& parameters = spec.space.parameters;
    parameters.erase(std::remove_if(parameters.begin(), parameters.end(),
                                    [&](const tune::Parameter& p) { return p.name == parameter->name; }),
                     parameters.end());
    parameters.push_back(std::move(*parameter));
  }
  if (!flags.objective.empty()) spec.objective.metric = flags.objective;
  if (!flags.goal.empty()) spec.objective.goal = flags.goal;
  if (!flags.objective_at.empty()) spec.objective.at = flags.objective_at;
  if (!flags.strategy.empty()) spec.strategy = flags.strategy;
  if (!flags.early_stopping.empty()) spec.early_stopping.kind = flags.early_stopping;
  if (flags.max_jobs) spec.max_jobs = *flags.max_jobs;
  if (flags.max_parallel_jobs) spec.max_parallel_jobs = *flags.max_parallel_jobs;
  if (flags.max_retries) spec.max_retries = *flags.max_retries;
  if (flags.seed) spec.seed = static_cast<uint64_t>(*flags.seed);
  if (!flags.warm_start.empty()) spec.warm_start = flags.warm_start;
  if (flags.startup_trials) spec.sampler.startup_trials = *flags.startup_trials;
  if (flags.nproc_per_node) spec.nproc_per_node = *flags.nproc_per_node;
  if (flags.lease_seconds) spec.lease_seconds = *flags.lease_seconds;
  if (flags.requeue_grace_seconds) spec.requeue_grace_seconds = *flags.requeue_grace_seconds;
  if (!flags.save_models.empty()) spec.save_models = flags.save_models;
  if (!flags.output.empty()) spec.output = flags.output;
  for (const auto& metric : flags.metrics) check(tune::add_metric_definition(spec, metric));
  const json overrides = training_overrides(flags.training_values, flags.sets);
  for (const auto& [key, value] : overrides.items()) spec.training[key] = value;
  return spec;
}

tune::TuneOptions tune_options(const CommandContext& context, const TuneFlags& flags, bool quiet) {
  tune::TuneOptions options;
  // Absolute: trials (and Slurm jobs) run from other working directories.
  options.home = fs::absolute(context.global.home_dir());
  options.executable = own_executable();
  options.store = context.global.store_location();
  options.quiet = quiet;
  options.max_parallel = flags.max_parallel;
  options.launcher.kind = flags.launcher;
  options.launcher.partition = flags.partition;
  options.launcher.sbatch_args = flags.sbatch_args;
  if (options.launcher.kind == "slurm") {
    // A batch job runs on another node: it needs the binary's real path, not this process's /proc entry.
    std::error_code error;
    const auto real = fs::read_symlink("/proc/self/exe", error);
    if (!error) options.executable = real;
  }
  if (flags.max_parallel < 0) throw Error(invalid_argument("--max-parallel must be >= 0, got {}", flags.max_parallel));
  return options;
}

tune::StudyState load(const CommandContext& context, const std::string& name) {
  auto store = context.global.open_store();
  auto state = tune::load_study(*store, name);
  if (!state.ok()) throw Error(state.status());
  return std::move(*state);
}

std::string cell(const json& value) {
  if (value.is_null()) return "-";
  if (value.is_number_float()) return fmt::format("{:.4g}", value.get<double>());
  if (value.is_string()) return value.get<std::string>();
  return value.dump();
}

std::string csv_cell(std::string text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

std::vector<std::string> parameter_names(const json& summary) {
  std::vector<std::string> names;
  for (const auto& [name, unused] : summary["parameters"].items()) names.push_back(name);
  return names;
}

void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      line += c + 1 == row.size() ? row[c] : fmt::format("{:<{}}  ", row[c], widths[c]);
    }
    std::cout << line << "\n";
  }
}

void print_describe(const json& summary, bool csv) {
  const auto names = parameter_names(summary);
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header = {"trial", "status", summary["objective"]["metric"].get<std::string>()};
  header.insert(header.end(), names.begin(), names.end());
  // Hosts matter only when trials ran on more than one.
  std::set<std::string> hosts;
  for (const auto& trial : summary["trials"]) {
    if (!trial.value("host", std::string()).empty()) hosts.insert(trial["host"].get<std::string>());
  }
  const bool show_hosts = csv || hosts.size() > 1;
  header.insert(header.end(), {"epochs", csv ? "duration_seconds" : "duration", csv ? "chosen_by" : "chosen by"});
  if (show_hosts) header.push_back("host");
  header.push_back("reason");
  rows.push_back(header);
  for (const auto& trial : summary["trials"]) {
    std::string status = trial["status"].get<std::string>();
    if (trial.value("early_stopped", false) && !csv) status += " (early)";
    std::vector<std::string> row = {trial["name"].get<std::string>(), status,
                                    csv ? (trial["objective"].is_null() ? "" : trial["objective"].dump()) : cell(trial["objective"])};
    for (const auto& name : names) {
      const json& value = trial["hyperparameters"].contains(name) ? trial["hyperparameters"][name] : json(nullptr);
      row.push_back(csv ? (value.is_string() ? value.get<std::string>() : value.is_null() ? "" : value.dump()) : cell(value));
    }
    row.push_back(std::to_string(trial["epochs_run"].get<int64_t>()));
    const double duration = trial["duration_seconds"].get<double>();
    row.push_back(csv ? fmt::format("{:.3f}", duration) : format_duration(duration));
    const std::string source = trial.value("source", std::string());
    row.push_back(source.empty() ? (csv ? "" : "-") : source);
    if (show_hosts) row.push_back(trial.value("host", std::string()));
    std::string reason = trial["reason"].get<std::string>();
    if (!csv && reason.size() > 90) reason = reason.substr(0, 87) + "...";
    row.push_back(reason);
    rows.push_back(row);
  }
  if (csv) {
    for (const auto& row : rows) {
      std::string line;
      for (size_t c = 0; c < row.size(); ++c) line += (c ? "," : "") + csv_cell(row[c]);
      std::cout << line << "\n";
    }
    return;
  }
  std::string counts;
  for (const auto& [status, count] : summary["counts"].items()) counts += fmt::format("{}{} {}", counts.empty() ? "" : ", ", count.get<int>(), status);
  std::cout << fmt::format("tuning job {}: {}{}\n", summary["name"].get<std::string>(), summary["status"].get<std::string>(),
                           summary["reason"].get<std::string>().empty() ? "" : " (" + summary["reason"].get<std::string>() + ")");
  std::cout << fmt::format("strategy {} · early stopping {} · objective {} {} ({} epoch) · trials: {}\n",
                           summary["strategy"].get<std::string>(), summary["early_stopping"].get<std::string>(),
                           summary["objective"]["goal"].get<std::string>(), summary["objective"]["metric"].get<std::string>(),
                           summary["objective"]["at"].get<std::string>(), counts.empty() ? "none yet" : counts);
  if (summary.contains("chosen_by") && !summary["chosen_by"].empty()) {
    std::string chosen;
    for (const auto& [source, count] : summary["chosen_by"].items()) {
      chosen += fmt::format("{}{} {}", chosen.empty() ? "" : ", ", count.get<int>(),
                            source == "startup" ? "random (startup)" : source == "tpe" ? "TPE" : source);
    }
    std::cout << fmt::format("trials chosen by: {}\n", chosen);
  }
  print_table(rows);
  if (!summary["best"].is_null()) {
    std::cout << fmt::format("best: {} ({} = {})\n", summary["best"]["name"].get<std::string>(),
                             summary["objective"]["metric"].get<std::string>(), cell(summary["best"]["objective"]));
  }
}

json best_or_throw(const CommandContext& context, const tune::StudyState& state) {
  (void)context;
  json best = tune::best_trial_json(context.global.home_dir(), state);
  if (best.is_null()) {
    throw Error(failed_precondition("tuning job '{}' has no trial with an objective yet ({}): see `kennel tune describe {}`",
                                    state.spec.name, store::job_status_name(state.record.status), state.spec.name));
  }
  return best;
}

void finish_run(CommandContext& context, const Result<tune::TuningResult>& result, bool json_output) {
  if (!result.ok()) throw Error(result.status());
  if (!result->ran) {
    const std::string store = context.global.store_location().display();
    if (json_output) {
      std::cout << json{{"name", result->name}, {"status", "InProgress"}, {"store", store},
                        {"tuning_dir", result->tuning_dir.string()}}.dump(2)
                << "\n";
    } else {
      std::cout << fmt::format("created study {} in the store {}; run its trials on any host with\n"
                               "  kennel tune worker --store {} --study {}\n",
                               result->name, store, context.global.store_location().argument(), result->name);
    }
    return;
  }
  auto state = load(context, result->name);
  const json summary = tune::study_summary_json(context.global.home_dir(), state);
  if (json_output) {
    json out = summary;
    out["wall_seconds"] = result->wall_seconds;
    out["report"] = store::StudyPaths{result->tuning_dir}.report().string();
    out["best"] = tune::best_trial_json(context.global.home_dir(), state);
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << "\n";
    print_describe(summary, false);
    std::cout << fmt::format("report: {}\n", store::StudyPaths{result->tuning_dir}.report().string());
    if (result->status == store::JobStatus::kCompleted) {
      std::cout << fmt::format("next: `kennel tune best {}` prints the best hyperparameters; train with them using "
                               "`kennel train --spec {}`\n",
                               result->name, store::StudyPaths{result->tuning_dir}.best_spec().string());
    }
  }
  if (result->stop_signal && result->status == store::JobStatus::kInProgress) {
    std::cerr << fmt::format("worker stopped: {}\n", result->reason);
    context.exit_code = 1;
    return;
  }
  if (result->status == store::JobStatus::kStopped) {
    std::cerr << fmt::format("tuning job {} stopped: {}\n", result->name, result->reason);
  } else if (result->status == store::JobStatus::kFailed) {
    std::cerr << fmt::format("error: tuning job {} failed: {}\n", result->name, result->reason);
  }
  context.exit_code = result->status == store::JobStatus::kCompleted ? 0 : 1;
}

}  // namespace

void register_tune_commands(CLI::App& app, CommandContext& context) {
  auto flags = std::make_shared<TuneFlags>();
  auto* tune = app.add_subcommand(
      "tune",
      "Tune hyperparameters: run many training jobs (trials) and find the best.\n"
      "Values come from --spec FILE (YAML or JSON), then the flags below (flags win).\n"
      "Trial training keys: every `kennel train` flag (e.g. --data, --arch, --epochs) sets the base spec.");
  tune->require_subcommand(0, 1);
  tune->fallthrough();
  tune->add_option("--spec", flags->spec_file, "Tuning spec file (YAML or JSON): training, hyperparameters, objective, ...");
  tune->add_option("--name", flags->name, "Tuning job name (default tune-<date>-<time>); trials are <name>-NNN");
  tune->add_option("--param", flags->params,
                   "A range to tune (repeatable): lr=1e-4..1e-1:log, epochs=2..10, batch_size=16,32,64, "
                   "momentum=0.8..0.999:reverse-log, or NAME={json}");
  tune->add_option("--objective", flags->objective, "Metric to optimise (default valid_accuracy)");
  tune->add_option("--goal", flags->goal, "maximize or minimize (default: minimize for *loss*, else maximize)");
  tune->add_option("--objective-at", flags->objective_at, "final or best epoch (default final)");
  tune->add_option("--strategy", flags->strategy, "random, grid, bayesian (TPE) or hyperband (default bayesian)");
  tune->add_option("--early-stopping", flags->early_stopping, "off, median or hyperband (default off)");
  tune->add_option("--max-jobs", flags->max_jobs, "Number of trials (default 10)");
  tune->add_option("--max-parallel-jobs", flags->max_parallel_jobs, "Trials at once; CPU threads are split between them (default 1)");
  tune->add_option("--max-retries", flags->max_retries, "Re-runs of a trial that crashed (default 1)");
  tune->add_option("--seed", flags->seed, "Seed of the search (default 0); the trials' own seed is --set seed=N");
  tune->add_option("--warm-start", flags->warm_start,
                   "Seed the strategy with the trials of these tuning jobs (bayesian learns from them, grid and "
                   "random skip their configurations, hyperband starts from their best)");
  tune->add_option("--startup-trials", flags->startup_trials,
                   "bayesian: random trials before TPE chooses (default 5; warm-start trials count)");
  tune->add_option("--save-models", flags->save_models,
                   "Which trials keep their model: best (default: only the study's best), all, or none");
  tune->add_option("--output", flags->output,
                   "s3://BUCKET/PREFIX: each trial uploads its checkpoints, model and records to "
                   "PREFIX/<study>/<trial>/ (as kennel train --output)");
  tune->add_option("--nproc-per-node", flags->nproc_per_node,
                   "Ranks per Kennel trial: each trial runs `kennel train --nproc-per-node N` (default 1)");
  tune->add_option("--lease-seconds", flags->lease_seconds,
                   "Shared store: a claimed trial's lease, renewed every quarter of it (default 60)");
  tune->add_option("--requeue-grace-seconds", flags->requeue_grace_seconds,
                   "Shared store: after a lease expires, how long before another worker re-runs the trial (default 30)");
  tune->add_flag("--no-run", flags->no_run,
                 "Only create the study (in --store); `kennel tune worker` processes run its trials");
  tune->add_option("--max-parallel", flags->max_parallel,
                   "Trials this process runs at once (default: the study's --max-parallel-jobs, which bounds all "
                   "workers together)");
  tune->add_option("--launcher", flags->launcher, "Where trials run: local (child processes, default) or slurm (sbatch)")
      ->check(CLI::IsMember({"local", "slurm"}));
  tune->add_option("--partition", flags->partition, "slurm: the partition trials are submitted to");
  tune->add_option("--sbatch-arg", flags->sbatch_args,
                   "slurm: an extra sbatch argument for every trial, e.g. --sbatch-arg=--time=30 (repeatable)");
  tune->add_option("--command", flags->command,
                   "Tune an external program instead of `kennel train`: {name} placeholders take the trial's values");
  tune->add_option("--metric", flags->metrics,
                   "NAME=REGEX reading a metric from the command's output (one capture group; repeatable)");
  tune->add_option("--set", flags->sets, "key=value for any training key of the base spec (repeatable)");
  tune->add_flag("--quiet", flags->quiet, "No per-trial lines on stdout");
  tune->add_flag("--json", flags->json_output, "Print the outcome as JSON");
  add_training_key_flags(*tune, flags->training_values, {"name", "seed"});
  tune->callback([flags, tune, &context] {
    if (!tune->get_subcommands().empty()) return;
    const auto options = tune_options(context, *flags, flags->quiet || flags->json_output);
    const auto spec = study_from_flags(*flags);
    finish_run(context, flags->no_run ? tune::create_tuning_job(spec, options) : tune::run_tuning_job(spec, options),
               flags->json_output);
  });

  auto worker_flags = std::make_shared<ReadFlags>();
  auto* worker = tune->add_subcommand(
      "worker",
      "Run trials of studies in a shared --store on this host (with --max-parallel, --launcher, ... of `kennel "
      "tune`), until none is left");
  worker->add_option("--study", worker_flags->name, "Only this study (default: every study in progress, oldest first)");
  worker->add_flag("--json", worker_flags->json_output, "Print the outcome as JSON");
  worker->callback([worker_flags, flags, &context] {
    const auto options = tune_options(context, *flags, flags->quiet || worker_flags->json_output);
    finish_run(context, tune::run_tuning_worker(worker_flags->name, options), worker_flags->json_output);
  });

  auto resume_flags = std::make_shared<ReadFlags>();
  auto* resume = tune->add_subcommand("resume", "Continue a tuning job that was stopped or whose tuner died");
  resume->add_option("name", resume_flags->name, "Tuning job name")->required();
  resume->add_flag("--json", resume_flags->json_output, "Print the outcome as JSON");
  resume->callback([resume_flags, flags, &context] {
    const auto options = tune_options(context, *flags, flags->quiet || resume_flags->json_output);
    finish_run(context, tune::resume_tuning_job(resume_flags->name, options), resume_flags->json_output);
  });

  auto describe_flags = std::make_shared<ReadFlags>();
  auto* describe = tune->add_subcommand("describe", "Status, counts and every trial, best first");
  describe->add_option("name", describe_flags->name, "Tuning job name")->required();
  describe->add_flag("--json", describe_flags->json_output, "As JSON");
  describe->add_flag("--csv", describe_flags->csv, "The trial table as CSV");
  describe->callback([describe_flags, &context] {
    const auto state = load(context, describe_flags->name);
    const json summary = tune::study_summary_json(context.global.home_dir(), state);
    if (describe_flags->json_output) {
      std::cout << summary.dump(2) << "\n";
    } else {
      print_describe(summary, describe_flags->csv);
    }
  });

  auto best_flags = std::make_shared<ReadFlags>();
  auto* best = tune->add_subcommand(
      "best", "The best trial: name, objective, hyperparameters and the training spec to re-run it (JSON)");
  best->add_option("name", best_flags->name, "Tuning job name")->required();
  best->add_flag("--json", best_flags->json_output, "As JSON (the default)");
  best->add_flag("--csv", best_flags->csv, "One CSV row: trial, objective, hyperparameters..., model");
  best->callback([best_flags, &context] {
    const auto state = load(context, best_flags->name);
    const json result = best_or_throw(context, state);
    if (!best_flags->csv) {
      std::cout << result.dump(2) << "\n";
      return;
    }
    std::string header = "trial," + csv_cell(state.spec.objective.metric), row = csv_cell(result["name"].get<std::string>()) + "," + result["objective"]["value"].dump();
    for (const auto& [key, value] : result["hyperparameters"].items()) {
      header += "," + csv_cell(key);
      row += "," + csv_cell(value.is_string() ? value.get<std::string>() : value.dump());
    }
    header += ",model";
    row += "," + csv_cell(result["model"].is_null() ? "" : result["model"].get<std::string>());
    std::cout << header << "\n" << row << "\n";
  });

  auto report_flags = std::make_shared<ReadFlags>();
  auto* report = tune->add_subcommand("report", "Write the HTML report (objective over time, parameters, best curve)");
  report->add_option("name", report_flags->name, "Tuning job name")->required();
  report->callback([report_flags, &context] {
    const auto state = load(context, report_flags->name);
    auto path = tune::write_tuning_report(context.global.home_dir(), state);
    if (!path.ok()) throw Error(path.status());
    std::cout << path->string() << "\n";
  });
}

}  // namespace kennel::cli

// `kennel train`: a training job from a spec file and/or flags (flags win),
// or `--resume JOB`. Every spec key is a flag, generated from the key table.
// With --nproc-per-node/--nnodes it launches the ranks of a data-parallel job
// (dist/launcher.h); each rank is this same command.
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "kennel/cli/command.h"
#include "kennel/dist/launcher.h"
#include "kennel/job/train_spec.h"
#include "kennel/job/training_job.h"
#include "kennel/store/layout.h"

namespace kennel::cli {

namespace {

using nlohmann::json;

struct TrainFlags {
  std::string spec_file;
  std::string resume;
  std::vector<std::string> sets;
  std::map<std::string, std::string> values;  // key -> flag text, for the keys given on the command line
  bool quiet = false;
  bool json_output = false;
  std::string parent;
  dist::LaunchOptions launch;
  bool no_gradient_overlap = false;
  bool sync_batchnorm = false;
};

// This process's command line, to start every rank with it.
std::vector<std::string> own_command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> argv;
  std::string item;
  while (std::getline(in, item, '\0')) argv.push_back(item);
  if (!argv.empty()) argv[0] = "/proc/self/exe";
  return argv;
}

void add_distributed_flags(CLI::App& train, TrainFlags& flags) {
  const std::string group = "Data parallelism (also under torchrun or srun: see docs/distributed.md)";
  train.add_option("--nproc-per-node", flags.launch.nproc_per_node,
                   "Ranks to start on this host; CPU threads are split between them (default 1)")
      ->group(group);
  train.add_option("--nnodes", flags.launch.nnodes, "Hosts taking part, each running this command (default 1)")
      ->group(group);
  train.add_option("--node-rank", flags.launch.node_rank, "This host's number, 0 .. nnodes-1 (default 0)")
      ->group(group);
  train.add_option("--master-addr", flags.launch.master_addr,
                   "HOST:PORT of node 0 (needed with --nnodes > 1; default 127.0.0.1 and a free port)")
      ->group(group);
  train.add_option("--dist-iface", flags.launch.interface,
                   "Network interface Gloo uses between hosts (sets GLOO_SOCKET_IFNAME; default: the address the "
                   "hostname resolves to)")
      ->group(group);
  train.add_option("--dist-timeout", flags.launch.timeout_seconds,
                   "Seconds a rank waits for a lost or frozen peer before the job fails naming it (default 60)")
      ->group(group);
  train.add_flag("--sync-batchnorm", flags.sync_batchnorm,
                 "BatchNorm statistics over every rank's batch (the same as --batchnorm sync)")
      ->group(group);
  train.add_flag("--no-gradient-overlap", flags.no_gradient_overlap,
                 "Allreduce gradients only after backward (to measure what overlapping saves)")
      ->group("");
}

}  // namespace

void register_train_command(CLI::App& app, CommandContext& context) {
  auto flags = std::make_shared<TrainFlags>();
  auto* train = app.add_subcommand(
      "train",
      "Fine-tune a classifier on an ImageFolder dataset, recorded as a job.\n"
      "Values come from --spec FILE (YAML or JSON), then the flags below (flags win).");
  train->add_option("--spec", flags->spec_file, "Spec file (YAML or JSON) with any of the keys below");
  train->add_option("--resume", flags->resume, "Continue a Stopped or Failed job from its last checkpoint");
  train->add_option("--set", flags->sets, "key=value for any spec key (repeatable)");
  train->add_flag("--quiet", flags->quiet, "No progress or metric lines on stdout");
  train->add_flag("--json", flags->json_output, "Print the job's outcome as JSON");
  train->add_option("--parent", flags->parent, "The tuning job this run is a trial of (set by `kennel tune`)")
      ->group("");
  add_training_key_flags(*train, flags->values, {});
  add_distributed_flags(*train, *flags);
  train->callback([flags, &context] {
    if (dist::wants_launch(flags->launch)) {
      auto code = dist::launch_local_ranks(own_command_line(), flags->launch);
      if (!code.ok()) throw Error(code.status());
      context.exit_code = *code;
      return;
    }
    if (Status valid = flags->launch.validate(); !valid.ok()) throw Error(valid);
    job::TrainJobOptions options;
    options.home = context.global.home_dir();
    options.store = context.global.store_location();
    options.quiet = flags->quiet || flags->json_output;
    options.parent = flags->parent;
    options.dist_timeout_seconds = flags->launch.timeout_seconds;
    options.dist_interface = flags->launch.interface;
    options.gradient_overlap = !flags->no_gradient_overlap;
    Result<job::TrainJobResult> result = Status(ErrorCode::kInternal, "not run");
    if (!flags->resume.empty()) {
      if (!flags->spec_file.empty() || !flags->values.empty() || !flags->sets.empty()) {
        throw Error(invalid_argument("--resume continues a job with its saved spec: drop the other spec flags"));
      }
      result = job::resume_training_job(flags->resume, options);
    } else {
      job::TrainSpec spec;
      if (!flags->spec_file.empty()) {
        auto file = job::read_spec_file(flags->spec_file);
        if (!file.ok()) throw Error(file.status());
        Status applied = job::apply_spec_json(spec, *file, flags->spec_file);
        if (!applied.ok()) throw Error(applied);
      }
      if (flags->sync_batchnorm) flags->values["batchnorm"] = "sync";
      const json overrides = training_overrides(flags->values, flags->sets);
      Status applied = job::apply_spec_json(spec, overrides, "command line");
      if (!applied.ok()) throw Error(applied);
      result = job::run_training_job(spec, options);
    }
    if (!result.ok()) throw Error(result.status());
    const auto& outcome = *result;
    context.exit_code = outcome.status == store::JobStatus::kCompleted ? 0 : 1;
    if (!outcome.reports) {  // a data-parallel rank other than 0: rank 0 reports the job
      if (outcome.status == store::JobStatus::kFailed) {
        std::cerr << fmt::format("error: job {} failed on this rank: {}\n", outcome.name, outcome.reason);
      }
      return;
    }
    if (flags->json_output) {
      std::cout << json{{"name", outcome.name},
                        {"status", store::job_status_name(outcome.status)},
                        {"reason", outcome.reason},
                        {"final_metrics", outcome.final_metrics},
                        {"job_dir", outcome.job_dir.string()}}
                       .dump(2)
                << "\n";
    } else if (outcome.status == store::JobStatus::kCompleted) {
      std::cout << fmt::format("job {} completed: {}\nmodel: {}\n", outcome.name, outcome.final_metrics.dump(),
                               store::JobPaths{outcome.job_dir}.model().string());
    } else if (outcome.status == store::JobStatus::kStopped) {
      std::cerr << fmt::format("job {} stopped: {} (continue with `kennel train --resume {}`)\n", outcome.name,
                               outcome.reason, outcome.name);
    } else {
      std::cerr << fmt::format("error: job {} failed: {}\n", outcome.name, outcome.reason);
    }
    context.exit_code = outcome.status == store::JobStatus::kCompleted ? 0 : 1;
  });
}

}  // namespace kennel::cli

// `kennel train`: a training job from a spec file and/or flags (flags win),
// or `--resume JOB`. Every spec key is a flag, generated from the key table.
#include <iostream>

#include <nlohmann/json.hpp>

#include "kennel/cli/command.h"
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
};

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
  train->callback([flags, &context] {
    job::TrainJobOptions options;
    options.home = context.global.home_dir();
    options.store = context.global.store_location();
    options.quiet = flags->quiet || flags->json_output;
    options.parent = flags->parent;
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
      const json overrides = training_overrides(flags->values, flags->sets);
      Status applied = job::apply_spec_json(spec, overrides, "command line");
      if (!applied.ok()) throw Error(applied);
      result = job::run_training_job(spec, options);
    }
    if (!result.ok()) throw Error(result.status());
    const auto& outcome = *result;
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

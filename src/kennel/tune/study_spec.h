// StudySpec: what a tuning job is asked to do — the base training spec, the
// hyperparameter ranges, the objective, the strategy and early-stopping rule,
// the budget (max_jobs, max_parallel_jobs), or an external command whose
// metrics are read from its output with regexes. Read from a YAML/JSON file
// and/or flags; `resolve_study_spec` checks everything before a trial runs,
// naming the field (an empty range, an unknown hyperparameter, a metric no
// trial can report, a regex that does not compile, a missing dataset).
// The resolved spec is saved as tuning/<name>/study.json and is what a resumed
// study continues with. Thread-safety: values.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kennel/tune/search_space.h"
#include "kennel/tune/strategy.h"
#include "kennel/util/status.h"

namespace kennel::tune {

struct ObjectiveSpec {
  std::string metric = "valid_accuracy";
  std::string goal;           // maximize | minimize; empty: minimize for *loss*/*error*, else maximize
  std::string at = "final";   // final | best (epoch)

  bool maximize() const { return goal == "maximize"; }
};

struct StudySpec {
  std::string name;                                    // empty: tune-<yyyymmdd-hhmmss>
  nlohmann::json training = nlohmann::json::object();  // base training spec (Kennel trials)
  SearchSpace space;
  ObjectiveSpec objective;
  std::string strategy = "bayesian";  // random | grid | bayesian | hyperband
  SamplerConfig sampler;              // kind follows strategy (hyperband samples at random)
  StopperConfig early_stopping;       // kind: off | median | hyperband (hyperband strategy: hyperband)
  int64_t max_jobs = 10;
  int64_t max_parallel_jobs = 1;
  uint64_t seed = 0;
  int64_t max_retries = 1;            // re-runs of a trial that crashed (killed, not a training error)
  std::vector<std::string> warm_start;  // tuning jobs whose trials seed the strategy
  int64_t threads = 0;                // CPU threads split between parallel trials (0 = all cores)
  // Which trials keep their model: best (only the study's best, while it is;
  // a 100 MB ResNet-50 per trial would fill disks), all, or none. Checkpoints
  // are kept while a trial runs, then removed (best, none).
  std::string save_models = "best";
  // s3://BUCKET/PREFIX: each Kennel trial runs with `--output PREFIX/<study>`, so its checkpoints,
  // model and records land under PREFIX/<study>/<trial>/ (S3 keeps every trial's; save_models
  // prunes the home only).
  std::string output;
  int64_t nproc_per_node = 1;         // ranks per Kennel trial (`kennel train --nproc-per-node`)
  // Shared stores: a claim's lease, renewed every lease/4 by its worker, and the
  // grace after its expiry before another worker re-runs the trial.
  double lease_seconds = 60;
  double requeue_grace_seconds = 30;
  // External command instead of `kennel train`: placeholders {name} take the trial's values.
  std::string command;
  std::map<std::string, std::string> metrics;  // metric name -> regex with one capture group
};

// Applies a spec file's object (keys: name, training (or base), hyperparameters
// (or parameters), objective, strategy, early_stopping, max_jobs,
// max_parallel_jobs, seed, max_retries, warm_start, threads, save_models, output,
// nproc_per_node, lease_seconds, requeue_grace_seconds, command, metrics).
Status apply_study_json(StudySpec& spec, const nlohmann::json& object, const std::string& origin);

// Parses "valid_accuracy=([0-9.]+)" (name=regex) into spec.metrics.
Status add_metric_definition(StudySpec& spec, const std::string& text);

// Fills defaults and validates everything (see the file comment). Trials' own
// failures (e.g. a batch size larger than the dataset) are left to the trials.
Result<StudySpec> resolve_study_spec(StudySpec spec);

nlohmann::json to_json(const StudySpec& spec);
Result<StudySpec> study_spec_from_json(const nlohmann::json& object);  // what to_json wrote

// The metrics a Kennel trial writes per epoch (the objective must be one of them).
const std::vector<std::string>& kennel_epoch_metrics();

}  // namespace kennel::tune

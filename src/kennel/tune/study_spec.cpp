#include "kennel/tune/study_spec.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <regex>

#include <fmt/format.h>

#include "kennel/job/train_spec.h"
#include "kennel/s3/addressing.h"
#include "kennel/util/json_value.h"

namespace kennel::tune {

using nlohmann::json;

const std::vector<std::string>& kennel_epoch_metrics() {
  static const std::vector<std::string> metrics = {"valid_accuracy", "valid_loss", "valid_top5_accuracy",
                                                   "train_accuracy", "train_loss"};
  return metrics;
}

namespace {

int64_t as_int(const json& value, const std::string& field) {
  if (const auto integer = json_integer(value)) return *integer;
  throw Error(invalid_argument("tuning field '{}': expected an integer, got {}", field, value.dump()));
}

double as_number(const json& value, const std::string& field) {
  if (value.is_number()) return value.get<double>();
  if (value.is_string()) {
    try {
      size_t used = 0;
      const double number = std::stod(value.get<std::string>(), &used);
      if (used == value.get<std::string>().size()) return number;
    } catch (const std::exception&) {
    }
  }
  throw Error(invalid_argument("tuning field '{}': expected a number, got {}", field, value.dump()));
}

std::string as_string(const json& value, const std::string& field) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_boolean() && !value.get<bool>()) return "off";  // YAML's `early_stopping: false`
  throw Error(invalid_argument("tuning field '{}': expected text, got {}", field, value.dump()));
}

void apply_objective(ObjectiveSpec& objective, const json& value) {
  if (value.is_string()) {
    objective.metric = value.get<std::string>();
    return;
  }
  if (!value.is_object()) {
    throw Error(invalid_argument("tuning field 'objective': expected a metric name or {{metric, goal, at}}, got {}",
                                 value.dump()));
  }
  for (const auto& [key, item] : value.items()) {
    if (key == "metric" || key == "name") {
      objective.metric = as_string(item, "objective.metric");
    } else if (key == "goal" || key == "type") {
      objective.goal = as_string(item, "objective.goal");
    } else if (key == "at") {
      objective.at = as_string(item, "objective.at");
    } else {
      throw Error(invalid_argument("tuning field 'objective': unknown key '{}' (use metric, goal, at)", key));
    }
  }
}

void apply_strategy(StudySpec& spec, const json& value) {
  if (value.is_string()) {
    spec.strategy = value.get<std::string>();
    return;
  }
  if (!value.is_object()) throw Error(invalid_argument("tuning field 'strategy': expected a name, got {}", value.dump()));
  for (const auto& [key, item] : value.items()) {
    if (key == "type" || key == "name") {
      spec.strategy = as_string(item, "strategy.type");
    } else if (key == "startup_trials") {
      spec.sampler.startup_trials = as_int(item, "strategy.startup_trials");
    } else if (key == "multivariate") {
      if (!item.is_boolean()) throw Error(invalid_argument("tuning field 'strategy.multivariate': expected true or false"));
      spec.sampler.multivariate = item.get<bool>();
    } else if (key == "candidates") {
      spec.sampler.candidates = as_int(item, "strategy.candidates");
    } else if (key == "grid_points") {
      spec.sampler.grid_points = as_int(item, "strategy.grid_points");
    } else if (key == "min_epochs") {
      spec.early_stopping.min_resource = as_int(item, "strategy.min_epochs");
    } else if (key == "eta") {
      spec.early_stopping.eta = as_int(item, "strategy.eta");
    } else {
      throw Error(invalid_argument(
          "tuning field 'strategy': unknown key '{}' (type, startup_trials, candidates, multivariate, grid_points, min_epochs, eta)",
          key));
    }
  }
}

void apply_early_stopping(StopperConfig& stopper, const json& value) {
  if (value.is_string() || value.is_boolean()) {
    stopper.kind = as_string(value, "early_stopping");
    return;
  }
  if (!value.is_object()) {
    throw Error(invalid_argument("tuning field 'early_stopping': expected off, median or hyperband, got {}",
                                 value.dump()));
  }
  for (const auto& [key, item] : value.items()) {
    if (key == "type") {
      stopper.kind = as_string(item, "early_stopping.type");
    } else if (key == "min_trials") {
      stopper.min_trials = as_int(item, "early_stopping.min_trials");
    } else if (key == "min_epochs") {
      stopper.min_epochs = as_int(item, "early_stopping.min_epochs");
      stopper.min_resource = stopper.min_epochs;
    } else if (key == "eta") {
      stopper.eta = as_int(item, "early_stopping.eta");
    } else {
      throw Error(invalid_argument(
          "tuning field 'early_stopping': unknown key '{}' (type, min_trials, min_epochs, eta)", key));
    }
  }
}

// Training keys a tuner may not vary: they identify the trial or are set per trial.
bool is_reserved_training_key(const std::string& name) { return name == "name"; }

}  // namespace

Status add_metric_definition(StudySpec& spec, const std::string& text) {
  const auto equals = text.find('=');
  if (equals == std::string::npos || equals == 0 || equals + 1 == text.size()) {
    return invalid_argument("--metric '{}': expected NAME=REGEX, e.g. 'valid_accuracy=valid_accuracy=([0-9.]+)'", text);
  }
  spec.metrics[text.substr(0, equals)] = text.substr(equals + 1);
  return {};
}

Status apply_study_json(StudySpec& spec, const json& object, const std::string& origin) {
  if (!object.is_object()) return invalid_argument("{}: a tuning spec must be a mapping of fields", origin);
  try {
    for (const auto& [key, value] : object.items()) {
      if (key == "name") {
        spec.name = as_string(value, key);
      } else if (key == "training" || key == "base") {
        if (!value.is_object()) return invalid_argument("{}: '{}' must be a mapping of training keys", origin, key);
        for (const auto& [name, item] : value.items()) spec.training[name] = item;
      } else if (key == "hyperparameters" || key == "parameters") {
        if (!value.is_object()) {
          return invalid_argument("{}: '{}' must map each hyperparameter to a range or a list of values", origin, key);
        }
        for (const auto& [name, range] : value.items()) {
          // Hints come in resolve (they depend on command vs training); keep the raw definition for now.
          spec.space.parameters.erase(
              std::remove_if(spec.space.parameters.begin(), spec.space.parameters.end(),
                             [&](const Parameter& p) { return p.name == name; }),
              spec.space.parameters.end());
          auto parameter = parse_parameter(name, range, ValueHint::kUnknown);
          if (!parameter.ok()) return parameter.status().with_context(origin);
          spec.space.parameters.push_back(std::move(*parameter));
        }
      } else if (key == "objective") {
        apply_objective(spec.objective, value);
      } else if (key == "strategy") {
        apply_strategy(spec, value);
      } else if (key == "early_stopping") {
        apply_early_stopping(spec.early_stopping, value);
      } else if (key == "max_jobs") {
        spec.max_jobs = as_int(value, key);
      } else if (key == "max_parallel_jobs") {
        spec.max_parallel_jobs = as_int(value, key);
      } else if (key == "seed") {
        spec.seed = static_cast<uint64_t>(as_int(value, key));
      } else if (key == "max_retries") {
        spec.max_retries = as_int(value, key);
      } else if (key == "threads") {
        spec.threads = as_int(value, key);
      } else if (key == "save_models") {
        spec.save_models = as_string(value, key);
      } else if (key == "output") {
        spec.output = as_string(value, key);
      } else if (key == "nproc_per_node") {
        spec.nproc_per_node = as_int(value, key);
      } else if (key == "lease_seconds") {
        spec.lease_seconds = as_number(value, key);
      } else if (key == "requeue_grace_seconds") {
        spec.requeue_grace_seconds = as_number(value, key);
      } else if (key == "warm_start") {
        spec.warm_start.clear();
        if (value.is_array()) {
          for (const auto& item : value) spec.warm_start.push_back(as_string(item, key));
        } else {
          spec.warm_start.push_back(as_string(value, key));
        }
      } else if (key == "command") {
        spec.command = as_string(value, key);
      } else if (key == "metrics" || key == "metric_definitions") {
        if (value.is_object()) {
          for (const auto& [name, regex] : value.items()) spec.metrics[name] = as_string(regex, "metrics." + name);
        } else if (value.is_array()) {
          for (const auto& item : value) {
            if (item.is_object() && item.contains("name") && item.contains("regex")) {
              spec.metrics[as_string(item["name"], "metrics.name")] = as_string(item["regex"], "metrics.regex");
            } else {
              KENNEL_RETURN_IF_ERROR(add_metric_definition(spec, as_string(item, key)));
            }
          }
        } else {
          return invalid_argument("{}: 'metrics' must map metric names to regexes", origin);
        }
      } else {
        return invalid_argument(
            "{}: unknown tuning field '{}' (fields: name, training, hyperparameters, objective, strategy, "
            "early_stopping, max_jobs, max_parallel_jobs, seed, max_retries, warm_start, threads, save_models, "
            "output, nproc_per_node, lease_seconds, requeue_grace_seconds, command, metrics)",
            origin, key);
      }
    }
  } catch (const Error& error) {
    return error.status().with_context(origin);
  }
  return {};
}

namespace {

ValueHint training_hint(const std::string& name) {
  for (const auto& key : job::train_spec_keys()) {
    if (key.name != name) continue;
    switch (key.type) {
      case job::SpecKeyType::kInt: return ValueHint::kInteger;
      case job::SpecKeyType::kFloat: return ValueHint::kFloat;
      case job::SpecKeyType::kString:
      case job::SpecKeyType::kBool:
      case job::SpecKeyType::kIntList: return ValueHint::kText;
    }
  }
  return ValueHint::kUnknown;
}

// A range read before we knew its key's type: `weight_decay: {min: 0, max: 1}` is
// continuous, `epochs: {min: 2, max: 10}` integer.
Status conform_to_hint(Parameter& parameter, ValueHint hint) {
  if (parameter.type == ParamType::kCategorical) return {};
  if (hint == ValueHint::kText) {
    return invalid_argument("hyperparameter '{}' takes text values: give a list of choices, not a range",
                            parameter.name);
  }
  if (hint == ValueHint::kFloat && parameter.type == ParamType::kInteger) parameter.type = ParamType::kContinuous;
  if (hint == ValueHint::kInteger && parameter.type == ParamType::kContinuous) {
    if (std::floor(parameter.min) != parameter.min || std::floor(parameter.max) != parameter.max) {
      return invalid_argument("hyperparameter '{}' takes integers: give integer bounds (got min {} max {})",
                              parameter.name, parameter.min, parameter.max);
    }
    parameter.type = ParamType::kInteger;
  }
  return {};
}

std::vector<std::string> command_placeholders(const std::string& command) {
  static const std::regex placeholder(R"(\{([A-Za-z_][A-Za-z0-9_]*)\})");
  std::vector<std::string> names;
  for (auto it = std::sregex_iterator(command.begin(), command.end(), placeholder); it != std::sregex_iterator();
       ++it) {
    const auto position = static_cast<size_t>(it->position(0));
    if (position > 0 && command[position - 1] == '$') continue;  // ${HOME} is the shell's
    names.push_back((*it)[1].str());
  }
  return names;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

// Builds the training spec a trial with these values would run and resolves it.
Status check_training(const json& base, const std::string& parameter, const json& value) {
  job::TrainSpec spec;
  KENNEL_RETURN_IF_ERROR(job::apply_spec_json(spec, base, "training"));
  if (!parameter.empty()) {
    json one = json::object();
    one[parameter] = value;
    Status applied = job::apply_spec_json(spec, one, "hyperparameter");
    if (!applied.ok()) return invalid_argument("hyperparameter '{}' value {}: {}", parameter, value.dump(), applied.message());
  }
  auto resolved = job::resolve_train_spec(spec);
  if (!resolved.ok() && !parameter.empty()) {
    return invalid_argument("hyperparameter '{}' value {} is not a valid training value: {}", parameter, value.dump(),
                            resolved.status().message());
  }
  if (!resolved.ok()) return resolved.status().with_context("training");
  return {};
}

}  // namespace

Result<StudySpec> resolve_study_spec(StudySpec spec) {
  if (spec.name.empty()) {
    const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    char stamp[32];
    std::strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", std::localtime(&now));
    spec.name = fmt::format("tune-{}", stamp);
  }
  KENNEL_RETURN_IF_ERROR(job::validate_job_name(spec.name, "tuning job name"));
  if (spec.name.size() > 120) return invalid_argument("tuning job name '{}' is too long (at most 120)", spec.name);
  if (spec.space.parameters.empty()) {
    return invalid_argument(
        "no hyperparameters to tune: give at least one range, e.g. --param lr=1e-4..1e-1:log or "
        "`hyperparameters: {{lr: {{min: 1e-4, max: 1e-1, scale: log}}}}` in the spec");
  }
  if (spec.max_jobs < 1) return invalid_argument("max_jobs must be >= 1, got {}", spec.max_jobs);
  if (spec.max_parallel_jobs < 1) {
    return invalid_argument("max_parallel_jobs must be >= 1, got {}", spec.max_parallel_jobs);
  }
  if (spec.max_retries < 0) return invalid_argument("max_retries must be >= 0, got {}", spec.max_retries);
  if (spec.threads < 0) return invalid_argument("threads must be >= 0 (0 = all cores), got {}", spec.threads);
  if (spec.save_models != "best" && spec.save_models != "all" && spec.save_models != "none") {
    return invalid_argument("save_models '{}' is not one of best, all, none", spec.save_models);
  }
  if (spec.nproc_per_node < 1) return invalid_argument("nproc_per_node must be >= 1, got {}", spec.nproc_per_node);
  if (!spec.output.empty() && !s3::is_s3_uri(spec.output)) {
    return invalid_argument("output '{}' is not an S3 location: give s3://BUCKET/PREFIX (trials keep their outputs "
                            "in the home without it)",
                            spec.output);
  }
  if (!spec.output.empty() && !spec.command.empty()) {
    return invalid_argument("output s3://... uploads Kennel trials' jobs; a --command trial writes its own outputs");
  }
  if (!(spec.lease_seconds >= 1)) return invalid_argument("lease_seconds must be >= 1, got {}", spec.lease_seconds);
  if (!(spec.requeue_grace_seconds >= 0)) {
    return invalid_argument("requeue_grace_seconds must be >= 0, got {}", spec.requeue_grace_seconds);
  }
  if (spec.nproc_per_node > 1 && !spec.command.empty()) {
    return invalid_argument("--nproc-per-node starts Kennel trials with several ranks; with --command start them "
                            "in your command");
  }
  if (spec.objective.metric.empty()) return invalid_argument("objective: the metric name is empty");
  if (spec.objective.goal.empty()) {
    const auto& metric = spec.objective.metric;
    spec.objective.goal = metric.find("loss") != std::string::npos || metric.find("error") != std::string::npos
                              ? "minimize"
                              : "maximize";
  }
  if (spec.objective.goal == "Maximize" || spec.objective.goal == "max") spec.objective.goal = "maximize";
  if (spec.objective.goal == "Minimize" || spec.objective.goal == "min") spec.objective.goal = "minimize";
  if (spec.objective.goal != "maximize" && spec.objective.goal != "minimize") {
    return invalid_argument("objective goal must be maximize or minimize, got '{}'", spec.objective.goal);
  }
  if (spec.objective.at != "final" && spec.objective.at != "best") {
    return invalid_argument("objective 'at' must be final or best (epoch), got '{}'", spec.objective.at);
  }

  // Strategy: hyperband is random sampling with the bracket rule for stopping.
  if (spec.strategy == "tpe") spec.strategy = "bayesian";
  if (spec.strategy == "hyperband") {
    spec.sampler.kind = "random";
    if (spec.early_stopping.kind == "off" || spec.early_stopping.kind.empty()) spec.early_stopping.kind = "hyperband";
    if (spec.early_stopping.kind != "hyperband") {
      return invalid_argument("strategy hyperband stops trials with its own bracket rule: drop early_stopping '{}'",
                              spec.early_stopping.kind);
    }
  } else if (spec.strategy == "random" || spec.strategy == "grid" || spec.strategy == "bayesian") {
    spec.sampler.kind = spec.strategy;
  } else {
    return invalid_argument("strategy '{}' is not one of random, grid, bayesian, hyperband", spec.strategy);
  }
  if (spec.early_stopping.kind.empty()) spec.early_stopping.kind = "off";
  if (spec.early_stopping.kind != "off" && spec.early_stopping.kind != "median" &&
      spec.early_stopping.kind != "hyperband") {
    return invalid_argument("early_stopping '{}' is not one of off, median, hyperband", spec.early_stopping.kind);
  }

  const bool external = !spec.command.empty();
  for (auto& parameter : spec.space.parameters) {
    if (!external) {
      if (is_reserved_training_key(parameter.name)) {
        return invalid_argument("hyperparameter 'name' cannot be tuned: trials are named <tuning-job>-NNN");
      }
      if (parameter.name == "data") {
        return invalid_argument("hyperparameter 'data' cannot be tuned: a study compares trials on one dataset");
      }
      // Unknown keys get the training spec's own error, with its "did you mean".
      json probe = json::object();
      probe[parameter.name] = parameter.type == ParamType::kCategorical ? parameter.choices.front() : json(parameter.min);
      job::TrainSpec scratch;
      Status known = job::apply_spec_json(scratch, probe, "hyperparameters");
      if (!known.ok() && training_hint(parameter.name) == ValueHint::kUnknown) {
        return invalid_argument("unknown hyperparameter '{}': {}", parameter.name, known.message());
      }
      KENNEL_RETURN_IF_ERROR(conform_to_hint(parameter, training_hint(parameter.name)));
    }
  }

  if (external) {
    if (spec.metrics.empty()) {
      return invalid_argument(
          "--command needs at least one --metric NAME=REGEX to read the objective from its output, e.g. "
          "--metric 'valid_accuracy=valid_accuracy=([0-9.]+)'");
    }
    for (const auto& [name, pattern] : spec.metrics) {
      try {
        const std::regex compiled(pattern);
        if (compiled.mark_count() < 1) {
          return invalid_argument("metric '{}': regex '{}' has no capture group; put the number in ( )", name, pattern);
        }
      } catch (const std::regex_error& error) {
        return invalid_argument("metric '{}': regex '{}' does not compile: {}", name, pattern, error.what());
      }
    }
    if (!spec.metrics.count(spec.objective.metric)) {
      std::vector<std::string> defined;
      for (const auto& [name, unused] : spec.metrics) defined.push_back(name);
      return invalid_argument("objective '{}' has no --metric definition (defined: {})", spec.objective.metric,
                              join(defined));
    }
    for (const auto& name : command_placeholders(spec.command)) {
      if (!spec.space.find(name)) {
        return invalid_argument("--command uses {{{}}} but no hyperparameter is named '{}'", name, name);
      }
    }
    if (!spec.training.empty()) {
      return invalid_argument("--command runs your program, not `kennel train`: drop the training keys ({})",
                              spec.training.dump());
    }
  } else {
    if (!spec.metrics.empty()) {
      return invalid_argument("--metric definitions are for --command; Kennel trials report their metrics themselves");
    }
    const auto& known = kennel_epoch_metrics();
    if (std::find(known.begin(), known.end(), spec.objective.metric) == known.end()) {
      return invalid_argument("objective '{}' is not a metric Kennel trials report (one of: {})",
                              spec.objective.metric, join(known));
    }
    if (spec.training.contains("name")) {
      return invalid_argument("training key 'name' is set per trial (<tuning-job>-NNN): remove it from the base spec");
    }
    if (!spec.training.contains("data")) {
      return invalid_argument("no dataset: give --data DIR (or `training: {{data: DIR}}` in the spec)");
    }
    // Trials and the best spec must find the data from any working directory.
    if (spec.training["data"].is_string() && !s3::is_s3_uri(spec.training["data"].get<std::string>())) {
      std::error_code error;
      const auto absolute = std::filesystem::absolute(spec.training["data"].get<std::string>(), error);
      if (!error) spec.training["data"] = absolute.lexically_normal().string();
    }
    KENNEL_RETURN_IF_ERROR(check_training(spec.training, "", nullptr));
    // Every value a trial may get must be a valid training value (fails here, not in trial 7).
    for (const auto& parameter : spec.space.parameters) {
      if (parameter.type == ParamType::kCategorical) {
        for (const auto& choice : parameter.choices) {
          KENNEL_RETURN_IF_ERROR(check_training(spec.training, parameter.name, choice));
        }
      } else {
        KENNEL_RETURN_IF_ERROR(check_training(spec.training, parameter.name, parameter.from_unit(0.0)));
        KENNEL_RETURN_IF_ERROR(check_training(spec.training, parameter.name, parameter.from_unit(1.0)));
      }
    }
  }

  if (spec.early_stopping.kind == "hyperband") {
    int64_t epochs = 0;
    if (const auto* tuned = spec.space.find("epochs")) {
      return invalid_argument(
          "hyperband decides how many epochs each trial gets: fix epochs in the base spec instead of tuning it ({})",
          tuned->to_json().dump());
    }
    if (!external) {
      job::TrainSpec base;
      KENNEL_RETURN_IF_ERROR(job::apply_spec_json(base, spec.training, "training"));
      epochs = base.epochs;
    } else {
      return invalid_argument("hyperband needs epochs to allocate; with --command use early_stopping median");
    }
    spec.early_stopping.max_resource = epochs;
  }
  StopperConfig check = spec.early_stopping;
  auto stopper = make_stopper(check);
  if (!stopper.ok()) return stopper.status();
  auto sampler = make_sampler(spec.sampler, spec.space, spec.seed);
  if (!sampler.ok()) return sampler.status();
  return spec;
}

json to_json(const StudySpec& spec) {
  json out = {{"name", spec.name},
              {"training", spec.training},
              {"hyperparameters", spec.space.to_json()},
              {"objective", {{"metric", spec.objective.metric}, {"goal", spec.objective.goal}, {"at", spec.objective.at}}},
              {"strategy",
               {{"type", spec.strategy},
                {"startup_trials", spec.sampler.startup_trials},
                {"candidates", spec.sampler.candidates},
                {"multivariate", spec.sampler.multivariate},
                {"grid_points", spec.sampler.grid_points}}},
              {"early_stopping",
               {{"type", spec.early_stopping.kind},
                {"min_trials", spec.early_stopping.min_trials},
                {"min_epochs", spec.early_stopping.kind == "hyperband" ? spec.early_stopping.min_resource
                                                                       : spec.early_stopping.min_epochs},
                {"eta", spec.early_stopping.eta}}},
              {"max_jobs", spec.max_jobs},
              {"max_parallel_jobs", spec.max_parallel_jobs},
              {"seed", spec.seed},
              {"max_retries", spec.max_retries},
              {"warm_start", spec.warm_start},
              {"threads", spec.threads},
              {"save_models", spec.save_models},
              {"output", spec.output},
              {"nproc_per_node", spec.nproc_per_node},
              {"lease_seconds", spec.lease_seconds},
              {"requeue_grace_seconds", spec.requeue_grace_seconds}};
  if (!spec.command.empty()) {
    out["command"] = spec.command;
    out["metrics"] = spec.metrics;
  }
  return out;
}

Result<StudySpec> study_spec_from_json(const json& object) {
  StudySpec spec;
  json rest = object;
  if (object.contains("hyperparameters")) {
    auto space = SearchSpace::from_json(object["hyperparameters"]);
    if (!space.ok()) return space.status();
    spec.space = std::move(*space);
    rest.erase("hyperparameters");
  }
  KENNEL_RETURN_IF_ERROR(apply_study_json(spec, rest, "study.json"));
  return spec;
}

}  // namespace kennel::tune

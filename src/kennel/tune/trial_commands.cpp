#include "kennel/tune/trial_commands.h"

#include <regex>

#include <fmt/format.h>

#include "kennel/job/train_spec.h"
#include "kennel/util/parallel.h"

namespace kennel::tune {

using nlohmann::json;

namespace {

std::string shell_value(const json& value) {
  std::string text = value.is_string()         ? value.get<std::string>()
                     : value.is_number_float() ? fmt::format("{}", value.get<double>())
                                               : value.dump();
  const bool safe = !text.empty() && text.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                            "0123456789.-_+=/:,") == std::string::npos;
  if (safe) return text;
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

std::vector<std::string> kennel_prefix(const KennelTrialCommand& command) {
  return {command.executable.string(), "--home", command.home.string(), "--store", command.store,
          "--log-level", "warn", "train"};
}

void add_suffix(std::vector<std::string>& argv, const KennelTrialCommand& command) {
  argv.insert(argv.end(), {"--quiet", "--json"});
  // The data-parallel launcher of `kennel train` (issue 14) runs the ranks.
  if (command.nproc_per_node > 1) argv.insert(argv.end(), {"--nproc-per-node", std::to_string(command.nproc_per_node)});
  if (!command.output.empty()) argv.insert(argv.end(), {"--output", command.output});
}

}  // namespace

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

json kennel_trial_spec(const StudySpec& spec, const std::string& trial, const json& hyperparameters, int64_t threads) {
  json trial_spec = spec.training;
  for (const auto& [key, value] : hyperparameters.items()) trial_spec[key] = value;
  trial_spec["name"] = trial;
  if (!spec.space.find("threads")) trial_spec["threads"] = threads;
  return trial_spec;
}

std::string trial_output(const StudySpec& spec) {
  if (spec.output.empty()) return "";
  std::string prefix = spec.output;
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  return prefix + "/" + spec.name;
}

std::vector<std::string> kennel_train_argv(const KennelTrialCommand& command, const std::filesystem::path& spec_path) {
  auto argv = kennel_prefix(command);
  argv.insert(argv.end(), {"--spec", spec_path.string(), "--parent", command.study});
  add_suffix(argv, command);
  return argv;
}

std::vector<std::string> kennel_resume_argv(const KennelTrialCommand& command, const std::string& trial) {
  auto argv = kennel_prefix(command);
  argv.insert(argv.end(), {"--resume", trial});
  add_suffix(argv, command);
  return argv;
}

int64_t total_threads(const StudySpec& spec) {
  int64_t total = spec.threads;
  if (total <= 0 && spec.training.contains("threads")) {
    try {
      total = std::stoll(spec.training["threads"].is_string() ? spec.training["threads"].get<std::string>()
                                                              : spec.training["threads"].dump());
    } catch (const std::exception&) {
      total = 0;
    }
  }
  return total > 0 ? total : default_thread_count();
}

bool warms_feature_cache(const StudySpec& spec) {
  if (!spec.command.empty() || spec.max_parallel_jobs < 2) return false;
  for (const char* key : {"arch", "pretrained", "freeze", "augment", "feature_cache", "input_size", "resize"}) {
    if (spec.space.find(key)) return false;  // trials would not share one cache entry
  }
  job::TrainSpec base;
  if (!job::apply_spec_json(base, spec.training, "training").ok()) return false;
  return base.feature_cache && base.freeze == "backbone" && !base.augment;
}

}  // namespace kennel::tune

// Tuning strategy benchmark: how good a value the random and the bayesian (TPE)
// samplers find in N sequential trials (parallelism 1: trial i sees trials 0..i-1)
// on three known functions, over many seeds. Prints the median and the 25th/75th
// percentiles of the best value found, whether bayesian beats random, and the
// median best-so-far at every 10th trial. No Torch, no GPU: it only exercises
// kennel::tune.
//
//   tune_strategy_bench [--seeds S] [--trials N] [--startup K] [--csv PATH]
//     --seeds    seeds per (function, strategy); seed s in [0, S)        (default 50)
//     --trials   trials per study                                       (default 30)
//     --startup  bayesian startup_trials (random draws before TPE)      (default 5)
//     --independent  per-parameter TPE instead of the default multivariate one
//     --csv      write function,strategy,seed,trials,best,best_true rows to PATH
//
// Functions (all minimised):
//   branin      x1 in [-5, 10], x2 in [0, 15] (linear continuous); global min 0.397887.
//   noisy_quad  lr in [1e-5, 1] (log continuous), batch_size in {16..256} (categorical);
//               f = (log10(lr) + 2.5)^2 + 0.5 * (log2(batch) - 6)^2 / 4 + N(0, 0.05),
//               the noise seeded per (seed, trial). The samplers see the noisy value; the
//               reported "best" is the NOISE-FREE value of the trial with the best
//               observed (noisy) loss, so noise luck does not count as quality. min 0.
//   mixed       epochs in [1, 20] (integer), dropout in [0, 0.9] (linear continuous),
//               optimizer in {sgd, momentum, adam, adamw} (categorical);
//               f = ((epochs - 12) / 8)^2 + ((dropout - 0.3) / 0.3)^2
//                   + {sgd: 1, momentum: 0.5, adam: 0, adamw: 0.1}; min 0.
// "x times closer": (random median - min) / (bayesian median - min), for the final trial.
// Exit code 0 whatever the outcome (2 for a bad flag, 1 if a sampler fails).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <numbers>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kennel/tune/search_space.h"
#include "kennel/tune/strategy.h"

using namespace kennel::tune;
using nlohmann::json;

namespace {

struct Options {
  int64_t seeds = 50;
  int64_t trials = 30;
  int64_t startup = 5;
  bool independent = false;  // per-parameter TPE instead of the joint (multivariate) density
  std::string csv;
};

// What a function returns for one trial: the loss the sampler sees and the
// noise-free value the benchmark scores (equal for noise-free functions).
struct Evaluation {
  double observed = 0;
  double truth = 0;
};

struct Function {
  std::string name;   // short name (CSV)
  std::string label;  // table label
  double minimum = 0;
  SearchSpace space;
  std::function<Evaluation(const json& hp, uint64_t seed, int64_t trial)> evaluate;
};

Parameter continuous(const std::string& name, double min, double max, Scale scale) {
  Parameter p;
  p.name = name;
  p.type = ParamType::kContinuous;
  p.scale = scale;
  p.min = min;
  p.max = max;
  return p;
}

Parameter integer(const std::string& name, double min, double max) {
  Parameter p;
  p.name = name;
  p.type = ParamType::kInteger;
  p.scale = Scale::kLinear;
  p.min = min;
  p.max = max;
  return p;
}

Parameter categorical(const std::string& name, std::vector<json> choices) {
  Parameter p;
  p.name = name;
  p.type = ParamType::kCategorical;
  p.choices = std::move(choices);
  return p;
}

double number(const json& hp, const std::string& key) {
  const json& v = hp.at(key);
  if (!v.is_number()) throw std::runtime_error(fmt::format("{} is not a number: {}", key, v.dump()));
  return v.get<double>();
}

// Deterministic N(0, 1) from a 64-bit seed (SplitMix64 + Box-Muller), the same on every platform.
double standard_normal(uint64_t state) {
  auto next = [&state]() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  const double u1 = (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53;  // (0, 1)
  const double u2 = static_cast<double>(next() >> 11) * 0x1.0p-53;          // [0, 1)
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

std::vector<Function> make_functions() {
  std::vector<Function> functions;

  {
    Function f;
    f.name = "branin";
    f.label = "branin (min 0.3979)";
    f.minimum = 0.397887;
    f.space.parameters = {continuous("x1", -5, 10, Scale::kLinear), continuous("x2", 0, 15, Scale::kLinear)};
    f.evaluate = [](const json& hp, uint64_t, int64_t) {
      const double x1 = number(hp, "x1"), x2 = number(hp, "x2");
      constexpr double pi = std::numbers::pi;
      const double a = 1, b = 5.1 / (4 * pi * pi), c = 5 / pi, r = 6, s = 10, t = 1 / (8 * pi);
      const double y = a * std::pow(x2 - b * x1 * x1 + c * x1 - r, 2) + s * (1 - t) * std::cos(x1) + s;
      return Evaluation{y, y};
    };
    functions.push_back(std::move(f));
  }

  {
    Function f;
    f.name = "noisy_quad";
    f.label = "noisy quad lr x batch (min 0)";
    f.minimum = 0;
    f.space.parameters = {continuous("lr", 1e-5, 1, Scale::kLog),
                          categorical("batch_size", {16, 32, 64, 128, 256})};
    f.evaluate = [](const json& hp, uint64_t seed, int64_t trial) {
      const double lr = number(hp, "lr"), batch = number(hp, "batch_size");
      const double truth = std::pow(std::log10(lr) + 2.5, 2) + 0.5 * std::pow(std::log2(batch) - 6, 2) / 4;
      // Noise stream independent of the samplers' own trial_seed streams.
      const double noise = 0.05 * standard_normal(trial_seed(seed ^ 0x6E6F697365ull, trial));
      return Evaluation{truth + noise, truth};
    };
    functions.push_back(std::move(f));
  }

  {
    Function f;
    f.name = "mixed";
    f.label = "mixed epochs/dropout/opt (min 0)";
    f.minimum = 0;
    f.space.parameters = {integer("epochs", 1, 20), continuous("dropout", 0, 0.9, Scale::kLinear),
                          categorical("optimizer", {"sgd", "momentum", "adam", "adamw"})};
    f.evaluate = [](const json& hp, uint64_t, int64_t) {
      const double epochs = number(hp, "epochs"), dropout = number(hp, "dropout");
      const std::string optimizer = hp.at("optimizer").get<std::string>();
      double penalty = 0;
      if (optimizer == "sgd") penalty = 1;
      else if (optimizer == "momentum") penalty = 0.5;
      else if (optimizer == "adam") penalty = 0;
      else if (optimizer == "adamw") penalty = 0.1;
      else throw std::runtime_error("unknown optimizer " + optimizer);
      const double y = std::pow((epochs - 12) / 8, 2) + std::pow((dropout - 0.3) / 0.3, 2) + penalty;
      return Evaluation{y, y};
    };
    functions.push_back(std::move(f));
  }
  return functions;
}

// Linear-interpolated quantile (q in [0, 1]) of a copy of the values.
double quantile(std::vector<double> values, double q) {
  if (values.empty()) return std::nan("");
  std::sort(values.begin(), values.end());
  const double pos = q * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (pos - static_cast<double>(lo)) * (values[hi] - values[lo]);
}

std::string format_value(double v) {
  if (std::fabs(v) != 0 && (std::fabs(v) < 1e-3 || std::fabs(v) >= 1e5)) return fmt::format("{:.2e}", v);
  return fmt::format("{:.4f}", v);
}

std::string summary(const std::vector<double>& values) {
  return fmt::format("{} [{}, {}]", format_value(quantile(values, 0.5)), format_value(quantile(values, 0.25)),
                     format_value(quantile(values, 0.75)));
}

// One study: the noise-free value of the best-observed trial so far, after each trial.
struct Study {
  std::vector<double> best_truth;  // [trial] best-so-far (noise-free value of the argmin observed)
  double seconds = 0;              // time in suggest()
};

Study run_study(const Function& function, const std::string& kind, const Options& options, uint64_t seed) {
  SamplerConfig config;
  config.kind = kind;
  config.startup_trials = options.startup;
  config.multivariate = !options.independent;
  auto sampler = make_sampler(config, function.space, seed);
  if (!sampler.ok()) {
    throw std::runtime_error(fmt::format("make_sampler({}) for {}: {}", kind, function.name,
                                         sampler.status().to_string()));
  }
  Study study;
  std::vector<Observation> history;
  history.reserve(static_cast<size_t>(options.trials));
  double best_observed = INFINITY, best_truth = INFINITY;
  for (int64_t i = 0; i < options.trials; ++i) {
    const auto start = std::chrono::steady_clock::now();
    std::optional<json> suggestion = (*sampler)->suggest(i, history);
    study.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!suggestion) {
      throw std::runtime_error(fmt::format("{} sampler exhausted at trial {} on {}", kind, i, function.name));
    }
    const Evaluation e = function.evaluate(*suggestion, seed, i);
    if (e.observed < best_observed) {
      best_observed = e.observed;
      best_truth = e.truth;
    }
    history.push_back(Observation{*suggestion, e.observed, false});
    study.best_truth.push_back(best_truth);
  }
  return study;
}

bool parse_int(const char* text, int64_t min, int64_t& out) {
  char* end = nullptr;
  const long long v = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0' || v < min) return false;
  out = v;
  return true;
}

int usage(const char* program, const std::string& error) {
  if (!error.empty()) std::cerr << program << ": " << error << "\n";
  std::cerr << "usage: " << program << " [--seeds S (50)] [--trials N (30)] [--startup K (5)] [--independent] [--csv PATH]\n";
  return error.empty() ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_inline = false;
    if (const auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_inline = true;
    }
    if (arg == "--help" || arg == "-h") return usage(argv[0], "");
    if (arg == "--independent") {
      options.independent = true;
      continue;
    }
    const bool known = arg == "--seeds" || arg == "--trials" || arg == "--startup" || arg == "--csv";
    if (!known) return usage(argv[0], "unknown argument " + arg);
    if (!has_inline) {
      if (i + 1 >= argc) return usage(argv[0], arg + " needs a value");
      value = argv[++i];
    }
    if (arg == "--csv") {
      options.csv = value;
    } else {
      int64_t* target = arg == "--seeds" ? &options.seeds : arg == "--trials" ? &options.trials : &options.startup;
      if (!parse_int(value.c_str(), arg == "--startup" ? 0 : 1, *target)) {
        return usage(argv[0], fmt::format("{} wants an integer >= {}, not '{}'", arg, arg == "--startup" ? 0 : 1, value));
      }
    }
  }

  const std::vector<std::string> kinds = {"random", "bayesian"};
  const std::vector<Function> functions = make_functions();

  std::ofstream csv;
  if (!options.csv.empty()) {
    csv.open(options.csv);
    if (!csv) {
      std::cerr << "cannot write " << options.csv << "\n";
      return 2;
    }
    csv << "function,strategy,seed,trials,best\n";
  }

  // Checkpoints for the best-so-far table: every 10th trial, and the last one.
  std::vector<int64_t> checkpoints;
  for (int64_t t = 10; t < options.trials; t += 10) checkpoints.push_back(t);
  checkpoints.push_back(options.trials);

  fmt::print("tune strategy benchmark: {} seeds x {} trials, sequential (parallelism 1), {} bayesian startup_trials={}\n",
             options.seeds, options.trials, options.independent ? "independent" : "multivariate", options.startup);
  fmt::print("value = noise-free objective of the best-observed trial (noisy quad: the samplers see the noisy loss)\n\n");

  struct Row {
    const Function* function;
    // [strategy][seed][trial]
    std::vector<std::vector<std::vector<double>>> curves;
    std::vector<double> seconds;
  };
  std::vector<Row> rows;
  for (const Function& function : functions) {
    Row row{&function, {}, {}};
    for (const std::string& kind : kinds) {
      std::vector<std::vector<double>> per_seed;
      double seconds = 0;
      for (int64_t s = 0; s < options.seeds; ++s) {
        Study study;
        try {
          study = run_study(function, kind, options, static_cast<uint64_t>(s));
        } catch (const std::exception& e) {
          std::cerr << "error: " << e.what() << "\n";
          return 1;
        }
        seconds += study.seconds;
        if (csv) {
          csv << function.name << ',' << kind << ',' << s << ',' << options.trials << ','
              << fmt::format("{:.10g}", study.best_truth.back()) << '\n';
        }
        per_seed.push_back(std::move(study.best_truth));
      }
      row.curves.push_back(std::move(per_seed));
      row.seconds.push_back(seconds);
    }
    rows.push_back(std::move(row));
  }

  auto at_trial = [](const std::vector<std::vector<double>>& per_seed, int64_t trials) {
    std::vector<double> values;
    for (const auto& curve : per_seed) values.push_back(curve[static_cast<size_t>(trials - 1)]);
    return values;
  };

  fmt::print("{:<34}{:>7}{:>7}   {:<30}{:<30}{}\n", "function", "trials", "seeds", "random median [p25, p75]",
             "bayesian median [p25, p75]", "bayesian better");
  std::vector<std::string> losses;
  for (const Row& row : rows) {
    const auto random = at_trial(row.curves[0], options.trials);
    const auto bayes = at_trial(row.curves[1], options.trials);
    const double gap_random = quantile(random, 0.5) - row.function->minimum;
    const double gap_bayes = quantile(bayes, 0.5) - row.function->minimum;
    std::string verdict;
    if (gap_bayes < gap_random) {
      verdict = gap_bayes > 0 ? fmt::format("yes ({:.1f} times closer)", gap_random / gap_bayes) : "yes (at the minimum)";
    } else if (gap_bayes == gap_random) {
      verdict = "tie";
    } else {
      verdict = gap_random > 0 ? fmt::format("NO ({:.1f} times farther)", gap_bayes / gap_random) : "NO (random at the minimum)";
      losses.push_back(fmt::format("bayesian does NOT beat random on {}: median best {} vs random {} (min {}) after {} trials",
                                   row.function->name, format_value(quantile(bayes, 0.5)),
                                   format_value(quantile(random, 0.5)), row.function->minimum, options.trials));
    }
    fmt::print("{:<34}{:>7}{:>7}   {:<30}{:<30}{}\n", row.function->label, options.trials, options.seeds,
               summary(random), summary(bayes), verdict);
  }

  fmt::print("\nmedian best-so-far by trial (random / bayesian):\n");
  std::string header = fmt::format("{:<34}", "function");
  for (int64_t t : checkpoints) header += fmt::format("{:>24}", fmt::format("trial {}", t));
  fmt::print("{}\n", header);
  for (const Row& row : rows) {
    std::string line = fmt::format("{:<34}", row.function->label);
    for (int64_t t : checkpoints) {
      line += fmt::format("{:>24}", fmt::format("{} / {}", format_value(quantile(at_trial(row.curves[0], t), 0.5)),
                                                format_value(quantile(at_trial(row.curves[1], t), 0.5))));
    }
    fmt::print("{}\n", line);
  }

  fmt::print("\nwins per seed (bayesian best < random best, same seed) and time in suggest():\n");
  for (const Row& row : rows) {
    const auto random = at_trial(row.curves[0], options.trials);
    const auto bayes = at_trial(row.curves[1], options.trials);
    int64_t wins = 0, ties = 0;
    for (size_t s = 0; s < random.size(); ++s) {
      if (bayes[s] < random[s]) ++wins;
      else if (bayes[s] == random[s]) ++ties;
    }
    const double suggestions = static_cast<double>(options.seeds * options.trials);
    fmt::print("{:<34} bayesian wins {}/{} seeds ({} ties); suggest: random {:.1f} us, bayesian {:.1f} us each\n",
               row.function->label, wins, random.size(), ties, 1e6 * row.seconds[0] / suggestions,
               1e6 * row.seconds[1] / suggestions);
  }

  if (!losses.empty()) {
    fmt::print("\n");
    for (const std::string& line : losses) fmt::print("WARNING: {}\n", line);
  }
  if (!options.csv.empty()) fmt::print("\nper-seed best values written to {}\n", options.csv);
  return 0;
}

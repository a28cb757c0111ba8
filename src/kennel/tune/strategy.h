// Search strategies: which hyperparameters the next trial gets (samplers),
// and which running trials to stop early (stoppers).
//
// Samplers: random, grid, bayesian (TPE, as in Bergstra et al. 2011 and
// Optuna: good/bad Parzen densities over past trials, the candidate with the
// best l(x)/g(x) ratio; multivariate by default — one kernel per trial over
// all parameters, which follows correlated valleys that per-parameter
// densities miss — or independent per parameter). Every draw is a
// pure function of (seed, trial index, history), so a study is reproducible
// for a given seed and parallelism when the caller fixes the history each
// trial sees (the tuning job uses "trials with index <= i - parallelism").
//
// Stoppers: median (stop a trial whose intermediate objective is worse than
// the median of the other trials at the same epoch) and hyperband
// (asynchronous successive halving in brackets, as in ASHA / Optuna's
// HyperbandPruner: at each rung epoch keep the top 1/eta of its bracket).
//
// Everything here minimises a loss: a maximised objective is negated by the
// caller. Thread-safety: one strategy per thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kennel/tune/search_space.h"

namespace kennel::tune {

// A finished trial as a strategy sees it.
struct Observation {
  nlohmann::json hyperparameters;  // object; may lack parameters (warm start from a subset)
  double loss = 0;                 // objective, minimise orientation
  bool stopped_early = false;      // ranked after every completed trial
};

struct SamplerConfig {
  std::string kind = "random";  // random | grid | bayesian
  // bayesian
  int64_t startup_trials = 5;   // random draws before TPE takes over
  int64_t candidates = 24;      // draws from l(x) scored per suggestion
  bool multivariate = true;     // one joint density over all parameters (else one per parameter)
  // grid
  int64_t grid_points = 3;      // values per continuous parameter (integers: all when <= 10, else this many)
};

class Sampler {
 public:
  virtual ~Sampler() = default;
  // Hyperparameters for trial `trial_index`. nullopt: the space is exhausted (grid).
  virtual std::optional<nlohmann::json> suggest(int64_t trial_index, const std::vector<Observation>& history) = 0;
  // Number of distinct suggestions, when finite (grid).
  virtual std::optional<int64_t> size() const { return std::nullopt; }
};

Result<std::unique_ptr<Sampler>> make_sampler(const SamplerConfig& config, const SearchSpace& space, uint64_t seed);

// A trial's intermediate objective as a stopper sees it: losses[e] after epoch e
// (already "best so far" when the objective is taken at the best epoch).
struct TrialCurve {
  int64_t index = 0;
  std::vector<double> losses;
};

struct StopperConfig {
  std::string kind = "off";  // off | median | hyperband
  // median
  int64_t min_trials = 3;  // other trials that must have reached the epoch
  int64_t min_epochs = 1;  // never stop before this many epochs
  // hyperband
  int64_t min_resource = 1;  // epochs of the first rung in the most aggressive bracket
  int64_t max_resource = 0;  // the trials' epochs (set by the tuning job)
  int64_t eta = 3;           // keep the top 1/eta at each rung
};

class Stopper {
 public:
  virtual ~Stopper() = default;
  // Called after each epoch of a running trial with the curves of the trials
  // it may be compared with. Returns why it should stop, or nullopt.
  virtual std::optional<std::string> should_stop(const TrialCurve& trial, const std::vector<TrialCurve>& others) = 0;
};

// nullptr for "off".
Result<std::unique_ptr<Stopper>> make_stopper(const StopperConfig& config);

// Deterministic per-(seed, index) random stream seed (SplitMix64 of both).
uint64_t trial_seed(uint64_t seed, int64_t trial_index);

}  // namespace kennel::tune

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
// trial sees (the tuning job uses "trials with index <= i - parallelism",
// and the trials in between as pending). TPE treats pending (running) trials
// with the constant-liar rule: each counts as a bad observation, so parallel
// trials are not suggested on top of each other; they never count towards
// the startup trials.
//
// Warm start (trials of earlier studies): TPE learns from them as history;
// grid skips the points they evaluated; random redraws a configuration they
// evaluated (only possible when every parameter is discrete); hyperband's
// first trial runs their best configuration.
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
  double loss = 0;                 // objective, minimise orientation (ignored when pending)
  bool stopped_early = false;      // ranked after every completed trial
  bool pending = false;            // still running: TPE's constant liar counts it as bad
};

struct SamplerConfig {
  std::string kind = "random";  // random | grid | bayesian
  // bayesian
  int64_t startup_trials = 5;   // random draws before TPE takes over
  int64_t candidates = 24;      // draws from l(x) scored per suggestion
  bool multivariate = true;     // one joint density over all parameters (else one per parameter)
  // grid
  int64_t grid_points = 3;      // values per continuous parameter (integers: all when <= 10, else this many)
  // random (the hyperband strategy): trial 0 runs the warm start's best configuration
  bool start_from_best = false;
};

class Sampler {
 public:
  virtual ~Sampler() = default;
  // Hyperparameters for trial `trial_index`. nullopt: the space is exhausted (grid).
  virtual std::optional<nlohmann::json> suggest(int64_t trial_index, const std::vector<Observation>& history) = 0;
  // How suggest() chooses with this history: "random", "grid", "startup"
  // (TPE's random draws before it has startup_trials finished trials), "tpe",
  // or "warm-start-best". What `kennel tune describe` shows per trial.
  virtual std::string phase(int64_t trial_index, const std::vector<Observation>& history) const = 0;
  // Finished trials of earlier studies (see the file comment for what each strategy does with them).
  virtual void set_warm_start(const std::vector<Observation>& observations) { (void)observations; }
  // Number of distinct suggestions, when finite (grid).
  virtual std::optional<int64_t> size() const { return std::nullopt; }
};

// The first trial index that TPE (not its random startup) chooses, in a study
// that runs `parallel` trials at once under the index <= i - parallel rule,
// with `warm` warm-start observations; every trial before it is random.
int64_t first_tpe_trial(const SamplerConfig& config, int64_t parallel, int64_t warm);

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

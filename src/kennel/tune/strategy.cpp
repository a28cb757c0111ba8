#include "kennel/tune/strategy.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include <fmt/format.h>

namespace kennel::tune {

using nlohmann::json;

uint64_t trial_seed(uint64_t seed, int64_t trial_index) {
  // SplitMix64 over both, so neighbouring seeds and indices give unrelated streams.
  auto mix = [](uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  return mix(mix(seed) ^ static_cast<uint64_t>(trial_index));
}

namespace {

using Rng = std::mt19937_64;

double uniform01(Rng& rng) { return std::uniform_real_distribution<double>(0.0, 1.0)(rng); }

json random_value(const Parameter& parameter, Rng& rng) {
  if (parameter.type == ParamType::kCategorical) {
    return parameter.choices[std::uniform_int_distribution<size_t>(0, parameter.choices.size() - 1)(rng)];
  }
  return parameter.from_unit(uniform01(rng));
}

// Whether every parameter of `space` has the same value in `a` and `b`.
bool same_configuration(const SearchSpace& space, const json& a, const json& b) {
  for (const auto& parameter : space.parameters) {
    if (!a.is_object() || !b.is_object() || !a.contains(parameter.name) || !b.contains(parameter.name)) return false;
    const json& x = a[parameter.name];
    const json& y = b[parameter.name];
    if (x.is_number() && y.is_number() ? x.get<double>() != y.get<double>() : x != y) return false;
  }
  return true;
}

class RandomSampler final : public Sampler {
 public:
  RandomSampler(SearchSpace space, uint64_t seed, bool start_from_best)
      : space_(std::move(space)), seed_(seed), start_from_best_(start_from_best) {}

  std::optional<json> suggest(int64_t trial_index, const std::vector<Observation>&) override {
    if (trial_index == 0 && best_) return *best_;
    Rng rng(trial_seed(seed_, trial_index));
    json out = draw(rng);
    // A configuration an earlier study evaluated says nothing new: draw again
    // (a few times; only a space of discrete parameters can repeat one).
    for (int again = 0; again < 100 && evaluated(out); ++again) out = draw(rng);
    return out;
  }

  std::string phase(int64_t trial_index, const std::vector<Observation>&) const override {
    return trial_index == 0 && best_ ? "warm-start-best" : "random";
  }

  void set_warm_start(const std::vector<Observation>& observations) override {
    warm_.clear();
    best_.reset();
    const Observation* best = nullptr;
    for (const auto& observation : observations) {
      warm_.push_back(observation.hyperparameters);
      if (observation.pending || observation.stopped_early || !std::isfinite(observation.loss)) continue;
      if (!best || observation.loss < best->loss) best = &observation;
    }
    if (start_from_best_ && best) {
      // The best configuration, completed with draws for parameters it lacks.
      Rng rng(trial_seed(seed_, 0));
      json values = draw(rng);
      for (const auto& parameter : space_.parameters) {
        if (best->hyperparameters.contains(parameter.name)) values[parameter.name] = best->hyperparameters[parameter.name];
      }
      best_ = values;
    }
  }

 private:
  json draw(Rng& rng) const {
    json out = json::object();
    for (const auto& parameter : space_.parameters) out[parameter.name] = random_value(parameter, rng);
    return out;
  }
  bool evaluated(const json& values) const {
    return std::any_of(warm_.begin(), warm_.end(), [&](const json& seen) { return same_configuration(space_, seen, values); });
  }

  SearchSpace space_;
  uint64_t seed_;
  bool start_from_best_;
  std::vector<json> warm_;
  std::optional<json> best_;
};

// The cartesian product of each parameter's grid values, first parameter slowest.
class GridSampler final : public Sampler {
 public:
  GridSampler(const SearchSpace& space, int64_t grid_points) : space_(space) {
    for (const auto& parameter : space.parameters) {
      std::vector<json> values;
      if (parameter.type == ParamType::kCategorical) {
        values = parameter.choices;
      } else if (parameter.type == ParamType::kInteger && parameter.max - parameter.min + 1 <= 10) {
        for (auto v = static_cast<int64_t>(parameter.min); v <= static_cast<int64_t>(parameter.max); ++v) {
          values.emplace_back(v);
        }
      } else {
        for (int64_t i = 0; i < grid_points; ++i) {
          const double unit = grid_points == 1 ? 0.5 : static_cast<double>(i) / static_cast<double>(grid_points - 1);
          json value = parameter.from_unit(unit);
          if (parameter.type == ParamType::kContinuous) {
            // The ends of a log grid are exactly min and max, not exp(log(min)).
            if (i == 0) value = parameter.min;
            if (i == grid_points - 1) value = parameter.max;
          }
          if (std::find(values.begin(), values.end(), value) == values.end()) values.push_back(value);
        }
      }
      names_.push_back(parameter.name);
      values_.push_back(std::move(values));
    }
  }

  std::optional<json> suggest(int64_t trial_index, const std::vector<Observation>&) override {
    if (trial_index < 0 || trial_index >= *size()) return std::nullopt;
    return point(skipped_.empty() ? trial_index : remaining_[static_cast<size_t>(trial_index)]);
  }

  std::string phase(int64_t, const std::vector<Observation>&) const override { return "grid"; }

  // The points an earlier study evaluated are left out; the others keep their order.
  void set_warm_start(const std::vector<Observation>& observations) override {
    skipped_.clear();
    remaining_.clear();
    for (int64_t p = 0; p < full_size(); ++p) {
      const json values = point(p);
      const bool seen = std::any_of(observations.begin(), observations.end(), [&](const Observation& observation) {
        return same_configuration(space_, observation.hyperparameters, values);
      });
      (seen ? skipped_ : remaining_).push_back(p);
    }
  }

  std::optional<int64_t> size() const override {
    return skipped_.empty() ? full_size() : static_cast<int64_t>(remaining_.size());
  }

 private:
  int64_t full_size() const {
    int64_t total = 1;
    for (const auto& values : values_) total *= static_cast<int64_t>(values.size());
    return total;
  }

  json point(int64_t number) const {
    json out = json::object();
    int64_t rest = number;
    for (size_t p = values_.size(); p-- > 0;) {
      const auto count = static_cast<int64_t>(values_[p].size());
      out[names_[p]] = values_[p][static_cast<size_t>(rest % count)];
      rest /= count;
    }
    return out;
  }

  SearchSpace space_;
  std::vector<std::string> names_;
  std::vector<std::vector<json>> values_;
  std::vector<int64_t> skipped_, remaining_;  // grid point numbers
};

// ---- TPE ---------------------------------------------------------------------

constexpr double kSqrt2 = 1.4142135623730951;
constexpr double kLogSqrt2Pi = 0.91893853320467274;

double normal_cdf(double x) { return 0.5 * std::erfc(-x / kSqrt2); }

// A mixture of Gaussians on [0, 1], each truncated to the interval (Optuna's
// univariate Parzen estimator with a prior component at the centre).
struct ParzenEstimator {
  std::vector<double> mus, sigmas, weights;

  ParzenEstimator(std::vector<double> observations) {
    const size_t n = observations.size();
    // The prior: one wide component at the centre, so an empty or tight set still explores.
    observations.push_back(0.5);
    std::vector<size_t> order(observations.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return observations[a] < observations[b]; });
    std::vector<double> sorted;
    for (size_t i : order) sorted.push_back(observations[i]);
    const double min_sigma = 1.0 / std::min(100.0, 1.0 + static_cast<double>(sorted.size()));
    for (size_t k = 0; k < sorted.size(); ++k) {
      const double left = k == 0 ? sorted[k] - 0.0 : sorted[k] - sorted[k - 1];
      const double right = k + 1 == sorted.size() ? 1.0 - sorted[k] : sorted[k + 1] - sorted[k];
      double sigma = std::max(left, right);
      const bool is_prior = order[k] == n;
      if (is_prior) sigma = 1.0;
      mus.push_back(sorted[k]);
      sigmas.push_back(std::clamp(sigma, min_sigma, 1.0));
      weights.push_back(1.0);
    }
    const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
    for (auto& weight : weights) weight /= total;
  }

  double sample(Rng& rng) const {
    std::discrete_distribution<size_t> pick(weights.begin(), weights.end());
    const size_t k = pick(rng);
    std::normal_distribution<double> normal(mus[k], sigmas[k]);
    for (int attempt = 0; attempt < 100; ++attempt) {
      const double x = normal(rng);
      if (x >= 0.0 && x <= 1.0) return x;
    }
    return std::clamp(mus[k], 0.0, 1.0);
  }

  double log_density(double x) const {
    double density = 0;
    for (size_t k = 0; k < mus.size(); ++k) {
      const double z = (x - mus[k]) / sigmas[k];
      const double mass = normal_cdf((1.0 - mus[k]) / sigmas[k]) - normal_cdf((0.0 - mus[k]) / sigmas[k]);
      density += weights[k] * std::exp(-0.5 * z * z - kLogSqrt2Pi) / (sigmas[k] * std::max(mass, 1e-12));
    }
    return std::log(std::max(density, 1e-300));
  }
};

// Categorical: observed counts plus one pseudo-count per choice.
std::vector<double> categorical_probabilities(const std::vector<size_t>& observed, size_t choices) {
  std::vector<double> probabilities(choices, 1.0);
  for (size_t index : observed) probabilities[index] += 1.0;
  const double total = std::accumulate(probabilities.begin(), probabilities.end(), 0.0);
  for (auto& p : probabilities) p /= total;
  return probabilities;
}

// Multivariate Parzen estimator (Falkner et al. 2018; Optuna's multivariate
// TPE): one kernel per observation over every parameter plus a wide prior
// kernel. Numeric dimensions live on the unit interval with a Scott-rule
// bandwidth; a categorical dimension puts most of its mass (4/5 plus its share
// of the rest) on the observed choice and spreads the rest evenly.
struct JointEstimator {
  const SearchSpace* space = nullptr;
  std::vector<std::vector<double>> points;  // per kernel: unit value or choice index per parameter
  std::vector<double> sigmas;               // numeric bandwidth per parameter (shared by kernels)
  size_t observed = 0;                      // kernels from observations; the last one is the prior

  JointEstimator(const SearchSpace& search_space, const std::vector<std::vector<double>>& observations)
      : space(&search_space), points(observations), observed(observations.size()) {
    const size_t dims = space->parameters.size();
    const double n = static_cast<double>(std::max<size_t>(observed, 1));
    const double bandwidth = std::clamp(0.2 * std::pow(n, -1.0 / (static_cast<double>(dims) + 4.0)), 0.02, 1.0);
    sigmas.assign(dims, bandwidth);
    points.push_back(std::vector<double>(dims, 0.5));  // prior kernel
  }

  bool is_prior(size_t k) const { return k == observed; }

  double categorical_probability(size_t k, size_t d, size_t choice) const {
    const double choices = static_cast<double>(space->parameters[d].choices.size());
    if (is_prior(k)) return 1.0 / choices;
    // A prior weight of 1/4 (Optuna uses 1): sharper kernels found the best
    // categorical value far more often in bench/tune_strategy_bench.cpp.
    constexpr double kPriorWeight = 0.25;
    return ((static_cast<size_t>(points[k][d]) == choice ? 1.0 : 0.0) + kPriorWeight / choices) / (1.0 + kPriorWeight);
  }

  std::vector<double> sample(Rng& rng) const {
    const size_t k = std::uniform_int_distribution<size_t>(0, points.size() - 1)(rng);
    std::vector<double> x(points[k].size());
    for (size_t d = 0; d < x.size(); ++d) {
      const Parameter& parameter = space->parameters[d];
      if (parameter.type == ParamType::kCategorical) {
        std::vector<double> probabilities;
        for (size_t c = 0; c < parameter.choices.size(); ++c) probabilities.push_back(categorical_probability(k, d, c));
        x[d] = static_cast<double>(std::discrete_distribution<size_t>(probabilities.begin(), probabilities.end())(rng));
        continue;
      }
      const double sigma = is_prior(k) ? 1.0 : sigmas[d];
      std::normal_distribution<double> normal(points[k][d], sigma);
      double value = std::clamp(points[k][d], 0.0, 1.0);
      for (int attempt = 0; attempt < 100; ++attempt) {
        const double draw = normal(rng);
        if (draw >= 0.0 && draw <= 1.0) {
          value = draw;
          break;
        }
      }
      x[d] = value;
    }
    return x;
  }

  double log_density(const std::vector<double>& x) const {
    double total = 0;
    for (size_t k = 0; k < points.size(); ++k) {
      double log_p = 0;
      for (size_t d = 0; d < x.size(); ++d) {
        const Parameter& parameter = space->parameters[d];
        if (parameter.type == ParamType::kCategorical) {
          log_p += std::log(categorical_probability(k, d, static_cast<size_t>(x[d])));
          continue;
        }
        const double sigma = is_prior(k) ? 1.0 : sigmas[d];
        const double mu = points[k][d];
        const double z = (x[d] - mu) / sigma;
        const double mass = normal_cdf((1.0 - mu) / sigma) - normal_cdf((0.0 - mu) / sigma);
        log_p += -0.5 * z * z - kLogSqrt2Pi - std::log(sigma * std::max(mass, 1e-12));
      }
      total += std::exp(log_p);
    }
    return std::log(std::max(total / static_cast<double>(points.size()), 1e-300));
  }
};

class TpeSampler final : public Sampler {
 public:
  TpeSampler(SearchSpace space, const SamplerConfig& config, uint64_t seed)
      : space_(std::move(space)), config_(config), seed_(seed) {}

  std::optional<json> suggest(int64_t trial_index, const std::vector<Observation>& history) override {
    Rng rng(trial_seed(seed_, trial_index));
    std::vector<const Observation*> ranked, pending;
    for (const auto& observation : history) {
      if (observation.pending) {
        pending.push_back(&observation);
      } else if (std::isfinite(observation.loss)) {
        ranked.push_back(&observation);
      }
    }
    json out = json::object();
    if (in_startup(ranked.size())) {
      for (const auto& parameter : space_.parameters) out[parameter.name] = random_value(parameter, rng);
      return out;
    }
    // Completed trials by loss, then early-stopped ones by loss: a stopped trial is never "good".
    std::stable_sort(ranked.begin(), ranked.end(), [](const Observation* a, const Observation* b) {
      if (a->stopped_early != b->stopped_early) return !a->stopped_early;
      return a->loss < b->loss;
    });
    // Optuna's default split: the best 10 % (at least one, at most 25) of the
    // finished trials are "good".
    const size_t good_count =
        std::clamp<size_t>(static_cast<size_t>(std::ceil(0.1 * static_cast<double>(ranked.size()))), 1, 25);
    // The constant liar: running trials rank last, with the worst value, so the
    // density of "bad" points keeps the next suggestion away from them.
    ranked.insert(ranked.end(), pending.begin(), pending.end());
    if (config_.multivariate) {
      if (auto joint = suggest_joint(ranked, good_count, rng)) return *joint;
    }
    for (const auto& parameter : space_.parameters) {
      std::vector<json> good, bad;
      for (size_t i = 0; i < ranked.size(); ++i) {
        const auto& params = ranked[i]->hyperparameters;
        if (!params.is_object() || !params.contains(parameter.name)) continue;
        const json& value = params[parameter.name];
        if (!parameter.contains(value)) continue;
        (i < good_count ? good : bad).push_back(value);
      }
      out[parameter.name] = parameter.type == ParamType::kCategorical ? suggest_categorical(parameter, good, bad, rng)
                                                                       : suggest_numeric(parameter, good, bad, rng);
    }
    return out;
  }

  std::string phase(int64_t, const std::vector<Observation>& history) const override {
    const auto finished = std::count_if(history.begin(), history.end(), [](const Observation& observation) {
      return !observation.pending && std::isfinite(observation.loss);
    });
    return in_startup(static_cast<size_t>(finished)) ? "startup" : "tpe";
  }

 private:
  bool in_startup(size_t finished) const {
    return static_cast<int64_t>(finished) < std::max<int64_t>(config_.startup_trials, 2);
  }

  // nullopt when some observation lacks a parameter (a warm start from a subset): then per-parameter TPE.
  std::optional<json> suggest_joint(const std::vector<const Observation*>& ranked, size_t good_count, Rng& rng) const {
    std::vector<std::vector<double>> good, bad;
    for (size_t i = 0; i < ranked.size(); ++i) {
      std::vector<double> point;
      for (const auto& parameter : space_.parameters) {
        const auto& params = ranked[i]->hyperparameters;
        if (!params.is_object() || !params.contains(parameter.name) || !parameter.contains(params[parameter.name])) {
          return std::nullopt;
        }
        const json& value = params[parameter.name];
        point.push_back(parameter.type == ParamType::kCategorical ? static_cast<double>(*parameter.choice_index(value))
                                                                  : parameter.to_unit(value.get<double>()));
      }
      (i < good_count ? good : bad).push_back(std::move(point));
    }
    const JointEstimator below(space_, good), above(space_, bad);
    std::vector<double> best;
    double best_score = -INFINITY;
    for (int64_t c = 0; c < config_.candidates; ++c) {
      std::vector<double> x = below.sample(rng);
      for (size_t d = 0; d < x.size(); ++d) {
        const Parameter& parameter = space_.parameters[d];
        if (parameter.type == ParamType::kInteger) x[d] = parameter.to_unit(parameter.from_unit(x[d]).get<double>());
      }
      const double score = below.log_density(x) - above.log_density(x);
      if (score > best_score) {
        best_score = score;
        best = x;
      }
    }
    json out = json::object();
    for (size_t d = 0; d < space_.parameters.size(); ++d) {
      const Parameter& parameter = space_.parameters[d];
      out[parameter.name] = parameter.type == ParamType::kCategorical ? parameter.choices[static_cast<size_t>(best[d])]
                                                                       : parameter.from_unit(best[d]);
    }
    return out;
  }

  json suggest_numeric(const Parameter& parameter, const std::vector<json>& good, const std::vector<json>& bad,
                       Rng& rng) const {
    auto to_units = [&](const std::vector<json>& values) {
      std::vector<double> units;
      for (const auto& value : values) units.push_back(parameter.to_unit(value.get<double>()));
      return units;
    };
    const ParzenEstimator below(to_units(good)), above(to_units(bad));
    double best_unit = 0.5, best_score = -INFINITY;
    for (int64_t c = 0; c < config_.candidates; ++c) {
      double unit = below.sample(rng);
      // Integers: score the value that would actually run.
      if (parameter.type == ParamType::kInteger) unit = parameter.to_unit(parameter.from_unit(unit).get<double>());
      const double score = below.log_density(unit) - above.log_density(unit);
      if (score > best_score) {
        best_score = score;
        best_unit = unit;
      }
    }
    return parameter.from_unit(best_unit);
  }

  json suggest_categorical(const Parameter& parameter, const std::vector<json>& good, const std::vector<json>& bad,
                           Rng& rng) const {
    auto indices = [&](const std::vector<json>& values) {
      std::vector<size_t> out;
      for (const auto& value : values) out.push_back(*parameter.choice_index(value));
      return out;
    };
    const auto below = categorical_probabilities(indices(good), parameter.choices.size());
    const auto above = categorical_probabilities(indices(bad), parameter.choices.size());
    std::discrete_distribution<size_t> pick(below.begin(), below.end());
    size_t best = 0;
    double best_score = -INFINITY;
    for (int64_t c = 0; c < config_.candidates; ++c) {
      const size_t index = pick(rng);
      const double score = std::log(below[index]) - std::log(above[index]);
      if (score > best_score) {
        best_score = score;
        best = index;
      }
    }
    return parameter.choices[best];
  }

  SearchSpace space_;
  SamplerConfig config_;
  uint64_t seed_;
};

// ---- stoppers ----------------------------------------------------------------

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

class MedianStopper final : public Stopper {
 public:
  explicit MedianStopper(StopperConfig config) : config_(config) {}

  std::optional<std::string> should_stop(const TrialCurve& trial, const std::vector<TrialCurve>& others) override {
    const auto epochs = static_cast<int64_t>(trial.losses.size());
    if (epochs == 0 || epochs < config_.min_epochs) return std::nullopt;
    const size_t epoch = trial.losses.size() - 1;
    std::vector<double> at_epoch;
    for (const auto& other : others) {
      if (other.index != trial.index && other.losses.size() > epoch) at_epoch.push_back(other.losses[epoch]);
    }
    if (static_cast<int64_t>(at_epoch.size()) < config_.min_trials) return std::nullopt;
    const double middle = median(at_epoch);
    if (trial.losses[epoch] <= middle) return std::nullopt;
    return fmt::format("median rule: after epoch {} it is worse than the median of {} other trials", epoch + 1,
                       at_epoch.size());
  }

 private:
  StopperConfig config_;
};

// Asynchronous successive halving in Hyperband brackets. Bracket b's rungs sit
// at min_resource * eta^(b + k) epochs; a trial reaching a rung continues only
// if it ranks in the top 1/eta (at least the best one) of its bracket there.
class HyperbandStopper final : public Stopper {
 public:
  explicit HyperbandStopper(StopperConfig config) : config_(config) {
    const double ratio = static_cast<double>(config_.max_resource) / static_cast<double>(config_.min_resource);
    brackets_ = 1 + static_cast<int64_t>(std::floor(std::log(std::max(ratio, 1.0)) / std::log(config_.eta) + 1e-9));
  }

  int64_t bracket_of(int64_t index) const { return index % brackets_; }

  std::optional<std::string> should_stop(const TrialCurve& trial, const std::vector<TrialCurve>& others) override {
    const auto epochs = static_cast<int64_t>(trial.losses.size());
    const int64_t bracket = bracket_of(trial.index);
    if (!is_rung(bracket, epochs)) return std::nullopt;
    std::vector<double> competitors = {trial.losses.back()};
    for (const auto& other : others) {
      if (other.index == trial.index || bracket_of(other.index) != bracket) continue;
      if (static_cast<int64_t>(other.losses.size()) >= epochs) competitors.push_back(other.losses[epochs - 1]);
    }
    const size_t keep = std::max<size_t>(1, competitors.size() / static_cast<size_t>(config_.eta));
    const double value = trial.losses.back();
    const auto better = static_cast<size_t>(
        std::count_if(competitors.begin(), competitors.end(), [&](double other) { return other < value; }));
    if (better < keep) return std::nullopt;
    return fmt::format("hyperband rule: at the epoch-{} rung of bracket {} it ranks {} of {} (top {} continue)", epochs,
                       bracket, better + 1, competitors.size(), keep);
  }

 private:
  bool is_rung(int64_t bracket, int64_t epochs) const {
    if (epochs <= 0 || epochs >= config_.max_resource) return false;
    double rung = static_cast<double>(config_.min_resource) * std::pow(config_.eta, bracket);
    while (rung < static_cast<double>(config_.max_resource)) {
      if (static_cast<int64_t>(std::llround(rung)) == epochs) return true;
      rung *= static_cast<double>(config_.eta);
    }
    return false;
  }

  StopperConfig config_;
  int64_t brackets_ = 1;
};

}  // namespace

Result<std::unique_ptr<Sampler>> make_sampler(const SamplerConfig& config, const SearchSpace& space, uint64_t seed) {
  if (space.parameters.empty()) return invalid_argument("the search space is empty: give at least one --param");
  if (config.kind == "random") return std::unique_ptr<Sampler>(new RandomSampler(space, seed, config.start_from_best));
  if (config.kind == "grid") {
    if (config.grid_points < 1) return invalid_argument("grid_points must be >= 1, got {}", config.grid_points);
    return std::unique_ptr<Sampler>(new GridSampler(space, config.grid_points));
  }
  if (config.kind == "bayesian" || config.kind == "tpe") {
    if (config.startup_trials < 0) return invalid_argument("startup_trials must be >= 0, got {}", config.startup_trials);
    if (config.candidates < 1) return invalid_argument("candidates must be >= 1, got {}", config.candidates);
    return std::unique_ptr<Sampler>(new TpeSampler(space, config, seed));
  }
  return invalid_argument("strategy '{}' is not one of random, grid, bayesian, hyperband", config.kind);
}

int64_t first_tpe_trial(const SamplerConfig& config, int64_t parallel, int64_t warm) {
  // Trial i sees max(0, i - parallel + 1) finished trials of its own study.
  const int64_t needed = std::max<int64_t>(config.startup_trials, 2) - warm;
  if (needed <= 0) return 0;
  return needed + std::max<int64_t>(parallel, 1) - 1;
}

Result<std::unique_ptr<Stopper>> make_stopper(const StopperConfig& config) {
  if (config.kind == "off" || config.kind.empty()) return std::unique_ptr<Stopper>();
  if (config.kind == "median") {
    if (config.min_trials < 1) return invalid_argument("early_stopping min_trials must be >= 1, got {}", config.min_trials);
    return std::unique_ptr<Stopper>(new MedianStopper(config));
  }
  if (config.kind == "hyperband") {
    if (config.eta < 2) return invalid_argument("hyperband eta must be >= 2, got {}", config.eta);
    if (config.min_resource < 1) {
      return invalid_argument("hyperband min_epochs must be >= 1, got {}", config.min_resource);
    }
    if (config.max_resource <= config.min_resource) {
      return invalid_argument(
          "hyperband needs the trials' epochs ({}) above min_epochs ({}): there would be no rung to stop at",
          config.max_resource, config.min_resource);
    }
    return std::unique_ptr<Stopper>(new HyperbandStopper(config));
  }
  return invalid_argument("early_stopping '{}' is not one of off, median, hyperband", config.kind);
}

}  // namespace kennel::tune

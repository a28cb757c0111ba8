// The 16 built-in rules and the factory that builds them by name (rules.h).
// Each rule's meaning, parameters and defaults are documented in docs/debugger.md;
// the comments here say where this implementation had to choose.
#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <numeric>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "kennel/debug/detail/rule_base.h"
#include "kennel/debug/rules.h"

namespace kennel::debug {
namespace {

using detail::num;
using detail::ParamReader;
using detail::RuleBase;
using detail::TensorFilter;
using nlohmann::json;

constexpr const char* kTrainLoss = "losses/train_loss";
constexpr const char* kValidLoss = "losses/valid_loss";

std::string enable_hint(const std::string& collection) {
  return fmt::format("enable the '{}' collection in the debugger hook's configuration", collection);
}

// ---------------------------------------------------------------- VanishingGradient

class VanishingGradient : public RuleBase {
 public:
  struct Config {
    double threshold;
    std::string regex;
  };
  static Config read(ParamReader& p) { return {p.number("threshold", 1e-7, 0), p.regex("tensor_regex")}; }
  VanishingGradient(std::string name, json params, Config config)
      : RuleBase(std::move(name), std::move(params)), config_(config), filter_({"gradients"}, config.regex) {}

  void observe(const StepRecord& record) override {
    if (record.mode != Mode::kTrain) return;
    for (const TensorSummary& t : record.tensors) {
      if (!filter_.matches(t) || t.count <= 0) continue;
      double mean_abs = t.l1 / static_cast<double>(t.count);
      if (!std::isfinite(mean_abs)) continue;  // NaN/Inf is ExplodingTensor's business
      add_datapoint();
      if (mean_abs < config_.threshold) {
        report_issue(record.step, t.name,
                     fmt::format("mean |gradient| of {} is {} at step {}, below threshold {}: the layer has stopped "
                                 "learning. Try a larger learning rate, batch normalisation or residual connections, "
                                 "ReLU instead of sigmoid/tanh, or check that the layer contributes to the loss",
                                 t.name, num(mean_abs), record.step, num(config_.threshold)));
      }
    }
  }

 private:
  std::string no_data_reason() const override {
    return fmt::format("no gradients were recorded (the rule reads {}); {}", filter_.describe(),
                       enable_hint("gradients"));
  }
  Config config_;
  TensorFilter filter_;
};

// ---------------------------------------------------------------- ExplodingTensor

class ExplodingTensor : public RuleBase {
 public:
  struct Config {
    bool only_nan;
    std::vector<std::string> collections;
    std::string regex;
  };
  static Config read(ParamReader& p) {
    return {p.boolean("only_nan", false), p.collections("collections", {}), p.regex("tensor_regex")};
  }
  ExplodingTensor(std::string name, json params, Config config)
      : RuleBase(std::move(name), std::move(params)), config_(config), filter_(config.collections, config.regex) {}

  void observe(const StepRecord& record) override {
    for (const TensorSummary& t : record.tensors) {
      if (!filter_.matches(t)) continue;
      add_datapoint();
      // Trust the fractions, but also catch a hook that only filled the reductions.
      bool nan = t.fraction_nan > 0 || std::isnan(t.mean) ||
                 std::any_of(t.values.begin(), t.values.end(), [](double v) { return std::isnan(v); });
      bool inf = t.fraction_inf > 0 || std::isinf(t.mean) || std::isinf(t.min) || std::isinf(t.max) ||
                 std::any_of(t.values.begin(), t.values.end(), [](double v) { return std::isinf(v); });
      if (nan || (inf && !config_.only_nan)) {
        const char* what = nan ? "NaN" : "infinite";
        double share = nan ? t.fraction_nan : t.fraction_inf;
        report_issue(record.step, t.name,
                     fmt::format("{} has {} values at step {} ({} mode, {}% of {} elements). Try a lower learning "
                                 "rate, gradient clipping, checking the inputs and labels for bad values, or a "
                                 "numerically stable loss",
                                 t.name, what, record.step, mode_name(record.mode), num(share * 100), t.count));
      }
    }
  }

 private:
  std::string no_data_reason() const override {
    return fmt::format("no tensors were recorded in {}; enable at least one collection in the debugger hook",
                       filter_.describe());
  }
  Config config_;
  TensorFilter filter_;
};

// ---------------------------------------------------------------- PoorWeightInitialization

// Looks at the first `steps` train records only (one record per train step).
class PoorWeightInitialization : public RuleBase {
 public:
  struct Config {
    double threshold, distribution_range;
    int64_t patience, steps;
  };
  static Config read(ParamReader& p) {
    return {p.number("threshold", 10, 1), p.number("distribution_range", 0.001, 0), p.integer("patience", 5, 1),
            p.integer("steps", 10, 1)};
  }
  PoorWeightInitialization(std::string name, json params, Config config)
      : RuleBase(std::move(name), std::move(params)), config_(config) {}

  void observe(const StepRecord& record) override {
    if (record.mode != Mode::kTrain || train_steps_ >= config_.steps) return;
    ++train_steps_;
    last_step_ = record.step;
    std::vector<const TensorSummary*> gradients;
    for (const TensorSummary& t : record.tensors) {
      if (t.collection == "relu_input" && t.count > 0 && std::isfinite(t.variance)) {
        auto& [sum, n] = relu_variance_[t.name];
        sum += t.variance;
        ++n;
      } else if (t.collection == "gradients" && t.count > 0 && std::isfinite(t.min) && std::isfinite(t.max)) {
        gradients.push_back(&t);
      } else if (t.name == kTrainLoss) {
        observe_loss(record.step, detail::scalar_of(t));
      }
    }
    if (!gradients.empty()) {
      auto q05 = detail::pooled_quantile(gradients, 0.05);
      auto q95 = detail::pooled_quantile(gradients, 0.95);
      if (q05 && q95) gradient_spreads_.push_back(*q95 - *q05);
    }
    if (train_steps_ == config_.steps) evaluate_window();
  }

 private:
  void observe_loss(int64_t step, double loss) {
    if (!std::isfinite(loss)) return;
    saw_loss_ = true;
    if (!best_loss_ || loss < *best_loss_) {
      best_loss_ = loss;
      steps_without_improvement_ = 0;
      add_datapoint();
      return;
    }
    add_datapoint();
    if (++steps_without_improvement_ >= config_.patience) {
      report_issue(step, kTrainLoss,
                   fmt::format("the train loss did not go below {} for {} steps during the first {} steps "
                               "(patience {}): the initial weights may be poor. Try He/Xavier initialisation or a "
                               "different learning rate",
                               num(*best_loss_), steps_without_improvement_, config_.steps, config_.patience));
    }
  }

  void on_finish() override {
    if (!evaluated_) evaluate_window();
  }

  void evaluate_window() {
    evaluated_ = true;
    if (relu_variance_.size() >= 2) {
      add_datapoint();
      std::string min_layer, max_layer;
      double min_var = std::numeric_limits<double>::infinity(), max_var = -min_var;
      for (const auto& [layer, sum_n] : relu_variance_) {
        double mean = sum_n.first / sum_n.second;
        if (mean < min_var) min_var = mean, min_layer = layer;
        if (mean > max_var) max_var = mean, max_layer = layer;
      }
      double ratio = min_var > 0 ? max_var / min_var : std::numeric_limits<double>::infinity();
      if (max_var == 0) {
        report_issue(last_step_, max_layer,
                     fmt::format("over the first {} steps every activation input is zero ({} layers): the weights "
                                 "are all zero (or BatchNorm weights are). Initialise them randomly (He "
                                 "initialisation for ReLU networks) or load pretrained weights",
                                 train_steps_, relu_variance_.size()));
      } else if (ratio > config_.threshold) {
        report_issue(last_step_, max_layer,
                     fmt::format("over the first {} steps the variance of activation inputs differs by a factor of "
                                 "{} across layers ({} has {}, {} has {}), above threshold {}: the weights are "
                                 "poorly initialised. Try He initialisation for ReLU networks, or batch normalisation",
                                 train_steps_, num(ratio), max_layer, num(max_var), min_layer, num(min_var),
                                 num(config_.threshold)));
      }
    }
    if (!gradient_spreads_.empty()) {
      add_datapoint();
      double mean_spread = std::accumulate(gradient_spreads_.begin(), gradient_spreads_.end(), 0.0) /
                           static_cast<double>(gradient_spreads_.size());
      if (mean_spread < config_.distribution_range) {
        report_issue(last_step_, "gradients",
                     fmt::format("over the first {} steps the 5th-95th percentile range of the gradients is {}, "
                                 "below distribution_range {}: gradients are nearly all the same. Try a different "
                                 "weight initialisation",
                                 train_steps_, num(mean_spread), num(config_.distribution_range)));
      }
    }
  }

  std::string no_data_reason() const override {
    return "none of relu_input, gradients or losses/train_loss was recorded during the first steps; " +
           enable_hint("relu_input") + " (and 'gradients', 'losses')";
  }

  Config config_;
  int64_t train_steps_ = 0;
  int64_t last_step_ = 0;
  bool evaluated_ = false;
  std::map<std::string, std::pair<double, int64_t>> relu_variance_;  // layer -> (sum of variances, steps)
  std::vector<double> gradient_spreads_;                             // per step
  std::optional<double> best_loss_;
  int64_t steps_without_improvement_ = 0;
  bool saw_loss_ = false;
};

// ---------------------------------------------------------------- LossNotDecreasing

// Compares the mean loss of consecutive windows (window means, not point
// values: one noisy mini-batch should not decide), and only on evidence: a
// difference within `noise_sigmas` standard errors of the two means is no
// verdict yet, so both windows double (from num_steps up to max_num_steps)
// until the difference stands out of the mini-batch noise, and keep that size.
// At max_num_steps the means decide as they are. Why: a loss with label
// smoothing, augmentation and dropout moves by ~5 % from batch to batch while
// it falls by ~0.02 % a step late in a run, and ten-step windows then disagree
// with the trend in almost half of their comparisons.
class LossNotDecreasing : public RuleBase {
 public:
  struct Config {
    int64_t num_steps, max_num_steps;
    double diff_percent, increase_threshold_percent, noise_sigmas;
    std::string mode;
  };
  static Config read(ParamReader& p) {
    Config config;
    config.num_steps = p.integer("num_steps", 10, 1);
    config.max_num_steps = p.integer("max_num_steps", 16 * config.num_steps, 1);
    config.diff_percent = p.number("diff_percent", 0.1, 0, 100);
    config.increase_threshold_percent = p.number("increase_threshold_percent", 5, 0);
    config.noise_sigmas = p.number("noise_sigmas", 3, 0);
    config.mode = p.choice("mode", "train", {"train", "eval"});
    if (config.max_num_steps < config.num_steps) {
      p.fail(invalid_argument("rule 'LossNotDecreasing': max_num_steps {} is below num_steps {}; give "
                              "max_num_steps >= num_steps (equal: windows never grow)",
                              config.max_num_steps, config.num_steps));
    }
    return config;
  }
  LossNotDecreasing(std::string name, json params, Config config)
      : RuleBase(std::move(name), std::move(params)), config_(config), window_(config.num_steps) {}

  void observe(const StepRecord& record) override {
    const bool train = config_.mode == "train";
    if ((record.mode == Mode::kTrain) != train) return;
    const TensorSummary* loss = detail::find_tensor(record, train ? kTrainLoss : kValidLoss);
    if (!loss) return;
    double value = detail::scalar_of(*loss);
    if (!std::isfinite(value)) return;
    losses_.push_back(value);
    if (static_cast<int64_t>(losses_.size()) < 2 * window_) return;
    largest_compared_ = std::max(largest_compared_, window_);
    if (judge(record.step)) {
      // The later window is the next comparison's earlier one, at the size that gave a verdict:
      // the noise that made the windows grow is still there.
      losses_.erase(losses_.begin(), losses_.end() - window_);
    } else {
      ++inconclusive_;
      window_ = std::min(2 * window_, config_.max_num_steps);
    }
  }

 private:
  struct Moments {
    double mean = 0, variance = 0;
  };
  static Moments moments(std::vector<double>::const_iterator begin, std::vector<double>::const_iterator end) {
    const double n = static_cast<double>(end - begin);
    Moments m;
    m.mean = std::accumulate(begin, end, 0.0) / n;
    if (n > 1) {
      for (auto it = begin; it != end; ++it) m.variance += (*it - m.mean) * (*it - m.mean);
      m.variance /= n - 1;
    }
    return m;
  }

  // The two last windows of window_ losses; true when a verdict was reached.
  bool judge(int64_t step) {
    const auto middle = losses_.end() - window_;
    const Moments before = moments(middle - window_, middle), after = moments(middle, losses_.end());
    const double scale = std::fabs(before.mean) > 0 ? std::fabs(before.mean) : 1.0;
    const double decrease = (before.mean - after.mean) / scale * 100;
    const double n = static_cast<double>(window_);
    const double noise = config_.noise_sigmas * std::sqrt(before.variance / n + after.variance / n) / scale * 100;
    const bool last_chance = window_ >= config_.max_num_steps;
    const std::string tensor = config_.mode == "train" ? kTrainLoss : kValidLoss;
    if (-decrease > config_.increase_threshold_percent && (-decrease > noise || last_chance)) {
      add_datapoint();
      report_issue(step, tensor,
                   fmt::format("the mean {} loss rose by {}% (from {} to {}) over the last {} {}{}, above "
                               "increase_threshold_percent {}%. Try a lower learning rate or check the data",
                               config_.mode, num(-decrease), num(before.mean), num(after.mean), window_, unit(),
                               noise_note(noise), num(config_.increase_threshold_percent)));
      return true;
    }
    if (decrease < config_.diff_percent && (decrease + noise < config_.diff_percent || last_chance)) {
      add_datapoint();
      report_issue(step, tensor,
                   fmt::format("the mean {} loss decreased by only {}% (from {} to {}) over the last {} {}{}, below "
                               "diff_percent {}%: training has plateaued. Try a different learning rate or "
                               "schedule, or stop training",
                               config_.mode, num(decrease), num(before.mean), num(after.mean), window_, unit(),
                               noise_note(noise), num(config_.diff_percent)));
      return true;
    }
    if (decrease - noise >= config_.diff_percent || last_chance) {
      add_datapoint();
      return true;
    }
    return false;
  }
  std::string noise_note(double noise) const {
    return noise > 0 ? fmt::format(" (mini-batch noise: ±{}%)", num(noise)) : "";
  }
  const char* unit() const { return config_.mode == "train" ? "steps" : "validations"; }
  std::string no_data_reason() const override {
    const std::string loss = config_.mode == "train" ? kTrainLoss : kValidLoss;
    if (inconclusive_ > 0) {
      return fmt::format("no comparison of {} was conclusive: windows of up to {} {} differed by less than their "
                         "noise ({} sigmas) and the run ended before max_num_steps {}",
                         loss, largest_compared_, unit(), num(config_.noise_sigmas),
                         config_.max_num_steps);
    }
    if (!losses_.empty()) {
      return fmt::format("fewer than two windows of {} {} of {} were recorded; nothing to compare",
                         config_.num_steps, unit(), loss);
    }
    return fmt::format("{} was never recorded; {}", loss, enable_hint("losses"));
  }

  Config config_;
  int64_t window_;
  std::vector<double> losses_;  // since the earlier window of the next comparison began
  int64_t inconclusive_ = 0;
  int64_t largest_compared_ = 0;
};

// ---------------------------------------------------------------- train vs validation loss

// The train loss a validation is compared with: the mean of the train losses
// recorded since the previous validation (normally: that epoch's mean).
class TrainLossSinceValidation {
 public:
  void add(const StepRecord& record) {
    if (record.mode != Mode::kTrain) return;
    if (const TensorSummary* loss = detail::find_tensor(record, kTrainLoss)) {
      double value = detail::scalar_of(*loss);
      if (std::isfinite(value)) sum_ += value, ++count_;
    }
  }
  // Closes the window; the previous window's mean when no train step ran since.
  std::optional<double> take() {
    if (count_ > 0) last_ = sum_ / static_cast<double>(count_);
    sum_ = 0;
    count_ = 0;
    return last_;
  }

 private:
  double sum_ = 0;
  int64_t count_ = 0;
  std::optional<double> last_;
};

std::optional<double> valid_loss_of(const StepRecord& record) {
  if (record.mode != Mode::kEval) return std::nullopt;
  const TensorSummary* loss = detail::find_tensor(record, kValidLoss);
  if (!loss) return std::nullopt;
  double value = detail::scalar_of(*loss);
  return std::isfinite(value) ? std::optional<double>(value) : std::nullopt;
}

std::string validation_no_data(bool saw_train, bool saw_valid) {
  if (!saw_valid) {
    return fmt::format("{} was never recorded: run validation during training and {}", kValidLoss,
                       enable_hint("losses"));
  }
  if (!saw_train) return fmt::format("{} was never recorded; {}", kTrainLoss, enable_hint("losses"));
  return "no validation had a train loss to compare with";
}

class Overfit : public RuleBase {
 public:
  struct Config {
    double ratio_threshold;
    int64_t patience, start_step;
  };
  static Config read(ParamReader& p) {
    return {p.number("ratio_threshold", 0.1, 0), p.integer("patience", 1, 1), p.integer("start_step", 0, 0)};
  }
  Overfit(std::string name, json params, Config config) : RuleBase(std::move(name), std::move(params)), config_(config) {}

  void observe(const StepRecord& record) override {
    if (record.mode == Mode::kTrain) {
      saw_train_ = saw_train_ || detail::find_tensor(record, kTrainLoss) != nullptr;
      train_.add(record);
      return;
    }
    std::optional<double> valid = valid_loss_of(record);
    if (!valid) return;
    saw_valid_ = true;
    std::optional<double> train = train_.take();
    if (!train || *train <= 0 || record.step < config_.start_step) return;
    add_datapoint();
    double ratio = (*valid - *train) / *train;
    consecutive_ = ratio > config_.ratio_threshold ? consecutive_ + 1 : 0;
    if (consecutive_ >= config_.patience) {
      report_issue(record.step, kValidLoss,
                   fmt::format("validation loss {} is {}% above the train loss {} at step {} ({} consecutive "
                               "validations over ratio_threshold {}): the model is overfitting. Try more data "
                               "augmentation, dropout or weight decay, a smaller head, or early stopping",
                               num(*valid), num(ratio * 100), num(*train), record.step, consecutive_,
                               num(config_.ratio_threshold)));
    }
  }

 private:
  std::string no_data_reason() const override { return validation_no_data(saw_train_, saw_valid_); }
  Config config_;
  TrainLossSinceValidation train_;
  int64_t consecutive_ = 0;
  bool saw_train_ = false, saw_valid_ = false;
};

// Patience is counted in validations for both losses (the train loss is the
// mean since the previous validation), so both run on the same clock.
class Overtraining : public RuleBase {
 public:
  struct Config {
    double delta;
    int64_t patience_train, patience_validation;
  };
  static Config read(ParamReader& p) {
    return {p.number("delta", 0.01, 0), p.integer("patience_train", 5, 1), p.integer("patience_validation", 10, 1)};
  }
  Overtraining(std::string name, json params, Config config)
      : RuleBase(std::move(name), std::move(params)), config_(config) {}

  void observe(const StepRecord& record) override {
    if (record.mode == Mode::kTrain) {
      saw_train_ = saw_train_ || detail::find_tensor(record, kTrainLoss) != nullptr;
      train_.add(record);
      return;
    }
    std::optional<double> valid = valid_loss_of(record);
    if (!valid) return;
    saw_valid_ = true;
    std::optional<double> train = train_.take();
    if (!train) return;
    add_datapoint();
    update(best_train_, train_stale_, *train);
    update(best_valid_, valid_stale_, *valid);
    if (train_stale_ >= config_.patience_train && valid_stale_ >= config_.patience_validation) {
      report_issue(record.step, kValidLoss,
                   fmt::format("neither loss improved by more than delta {}: train loss (best {}) for {} "
                               "validations (patience_train {}) and validation loss (best {}) for {} validations "
                               "(patience_validation {}): training has converged. Stop training or lower the "
                               "learning rate",
                               num(config_.delta), num(*best_train_), train_stale_, config_.patience_train,
                               num(*best_valid_), valid_stale_, config_.patience_validation));
    }
  }

 private:
  void update(std::optional<double>& best, int64_t& stale, double value) const {
    if (!best || value < *best - config_.delta) {
      best = value;
      stale = 0;
    } else {
      ++stale;
    }
  }
  std::string no_data_reason() const override { return validation_no_data(saw_train_, saw_valid_); }
  Config config_;
  TrainLossSinceValidation train_;
  std::optional<double> best_train_, best_valid_;
  int64_t train_stale_ = 0, valid_stale_ = 0;
  bool saw_train_ = false, saw_valid_ = false;
};

// ---------------------------------------------------------------- per-unit activity (DeadRelu, SaturatedActivation)

// Running per-unit means across observed steps, per layer.
class UnitAverages {
 public:
  // Adds one observation; returns the running means.
  const std::vector<double>& add(const std::string& layer, const std::vector<double>& values) {
    Layer& l = layers_[layer];
    if (l.sum.size() != values.size()) l = Layer{std::vector<double>(values.size(), 0.0), {}, 0};
    for (size_t i = 0; i < values.size(); ++i) l.sum[i] += values[i];
    ++l.n;
    l.mean.resize(values.size());
    for (size_t i = 0; i < values.size(); ++i) l.mean[i] = l.sum[i] / static_cast<double>(l.n);
    return l.mean;
  }
  int64_t observations(const std::string& layer) const {
    auto it = layers_.find(layer);
    return it == layers_.end() ? 0 : it->second.n;
  }

 private:
  struct Layer {
    std::vector<double> sum, mean;
    int64_t n = 0;
  };
  std::map<std::string, Layer> layers_;
};

class DeadRelu : public RuleBase {
 public:
  struct Config {
    double threshold_inactivity, threshold_layer;
    std::string regex;
  };
  static Config read(ParamReader& p) {
    return {p.number("threshold_inactivity", 1.0, 0, 100), p.number("threshold_layer", 50.0, 0, 100),
            p.regex("tensor_regex")};
  }
  DeadRelu(std::string name, json params, Config config)
      : RuleBase(std::move(name), std::move(params)), config_(config), filter_({"relu_output"}, config.regex) {}

  void observe(const StepRecord& record) override {
    if (record.mode != Mode::kTrain) return;
    for (const TensorSummary& t : record.tensors) {
      if (!filter_.matches(t)) continue;
      // Without per-unit values the layer's fraction_positive stands for all its units.
      const std::vector<double> values = t.values.empty() ? std::vector<double>{t.fraction_positive} : t.values;
      const std::vector<double>& active = units_.add(t.name, values);
      add_datapoint();
      int64_t dead = std::count_if(active.begin(), active.end(),
                                   [&](double share) { return share * 100 < config_.threshold_inactivity; });
      double dead_percent = 100.0 * static_cast<double>(dead) / static_cast<double>(active.size());
      if (dead_percent > config_.threshold_layer) {
        report_issue(record.step, t.name,
                     fmt::format("{} of {} units ({}%) of {} were active in less than {}% of the samples "
                                 "(averaged over {} steps), more than threshold_layer {}%: dying ReLUs. Try a lower "
                                 "learning rate, leaky ReLU, He initialisation, or batch normalisation",
                                 dead, active.size(), num(dead_percent), t.name, num(config_.threshold_inactivity),
                                 units_.observations(t.name), num(config_.threshold_layer)));
      }
    }
  }

 private:
  std::string no_data_reason() const override {
    return fmt::format("no ReLU activity was recorded (the rule reads {}); {}", filter_.describe(),
                       enable_hint("relu_output"));
  }
  Config config_;
  TensorFilter filter_;
  UnitAverages units_;
};

// A unit is saturated when its mean |input| (averaged across steps) is beyond
// the threshold; without per-unit values, the histogram's share of elements
// beyond the threshold (accumulated across steps) stands for the layer.
class SaturatedActivation : public RuleBase {
 public:
  struct Config {
    double threshold_tanh, threshold_sigmoid, threshold_layer;
    std::string regex;
  };
  static Config read(ParamReader& p) {
    return {p.number("threshold_tanh", 9.4999, 0), p.number("threshold_sigmoid", 23, 0),
            p.number("threshold_layer", 50.0, 0, 100), p.regex("tensor_regex")};
  }
  SaturatedActivation(std::string name, json params, Config config)
      : RuleBase(std::move(name), std::move(params)),
        config_(config),
        filter_({"tanh_input", "sigmoid_input"}, config.regex) {}

  void observe(const StepRecord& record) override {
    if (record.mode != Mode::kTrain) return;
    for (const TensorSummary& t : record.tensors) {
      if (!filter_.matches(t)) continue;
      const double threshold = t.collection == "tanh_input" ? config_.threshold_tanh : config_.threshold_sigmoid;
      double saturated_percent = 0;
      std::string what;
      if (!t.values.empty()) {
        const std::vector<double>& mean_abs = units_.add(t.name, t.values);
        int64_t saturated = std::count_if(mean_abs.begin(), mean_abs.end(),
                                          [&](double v) { return std::fabs(v) > threshold; });
        saturated_percent = 100.0 * static_cast<double>(saturated) / static_cast<double>(mean_abs.size());
        what = fmt::format("{} of {} units", saturated, mean_abs.size());
      } else if (t.histogram) {
        auto& [beyond, total] = histogram_mass_[t.name];
        double n = static_cast<double>(std::max<int64_t>(t.count, 1));
        beyond += detail::histogram_share_beyond(*t.histogram, threshold) * n;
        total += n;
        saturated_percent = 100.0 * beyond / total;
        what = "of the inputs";
      } else {
        continue;
      }
      add_datapoint();
      if (saturated_percent > config_.threshold_layer) {
        report_issue(record.step, t.name,
                     fmt::format("{} ({}%) of {} have |input| above {} (averaged over the steps seen), more than "
                                 "threshold_layer {}%: the activation is saturated and passes almost no gradient. "
                                 "Try batch normalisation before it, a lower learning rate, or ReLU",
                                 what, num(saturated_percent), t.name, num(threshold), num(config_.threshold_layer)));
      }
    }
  }

 private:
  std::string no_data_reason() const override {
    return "the model has no tanh/sigmoid activations (no tensor in collection 'tanh_input' or 'sigmoid_input' "
           "was recorded); if it has, " +
           enable_hint("tanh_input") + " (or 'sigmoid_input')";
  }
  Config config_;
  TensorFilter filter_;
  UnitAverages units_;
  std::map<std::string, std::pair<double, double>> histogram_mass_;  // layer -> (elements beyond, elements)
};

// ---------------------------------------------------------------- WeightUpdateRatio

class WeightUpdateRatio : public RuleBase {
 public:
  struct Config {
    double large_threshold, small_threshold, epsilon;
  };
  static Config read(ParamReader& p) {
    Config c{p.number("large_threshold", 10, 0), p.number("small_threshold", 1e-8, 0), p.number("epsilon", 1e-9, 0)};
    if (c.small_threshold > c.large_threshold) {
      p.fail(invalid_argument("rule 'WeightUpdateRatio': small_threshold {} is above large_threshold {}",
                              c.small_threshold, c.large_threshold));
    }
    return c;
  }
  WeightUpdateRatio(std::string name, json params, Config config)
      : RuleBase(std::move(name), std::move(params)), config_(config) {}

  void observe(const StepRecord& record) override {
    // Step 0 compares against the freshly initialised weights; skip it as the cloud rule does.
    if (record.mode != Mode::kTrain || record.step == 0) return;
    static const std::string kPrefix = "optimizer/update_ratio/";
    for (const TensorSummary& t : record.tensors) {
      if (t.name.rfind(kPrefix, 0) != 0 || t.values.empty()) continue;
      double ratio = t.values[0];
      if (t.values.size() > 1 && std::fabs(t.values[1]) < config_.epsilon) continue;  // zero weight: ratio is meaningless
      if (std::isnan(ratio)) continue;
      add_datapoint();
      const std::string param = t.name.substr(kPrefix.size());
      if (ratio > config_.large_threshold) {
        report_issue(record.step, t.name,
                     fmt::format("the update of {} is {} times its weight at step {}, above large_threshold {}: "
                                 "updates are too large. Try a lower learning rate or gradient clipping",
                                 param, num(ratio), record.step, num(config_.large_threshold)));
      } else if (ratio < config_.small_threshold) {
        report_issue(record.step, t.name,
                     fmt::format("the update of {} is {} of its weight at step {}, below small_threshold {}: the "
                                 "parameter barely changes. Try a larger learning rate",
                                 param, num(ratio), record.step, num(config_.small_threshold)));
      }
    }
  }

 private:
  std::string no_data_reason() const override {
    return "no optimizer/update_ratio/<param> tensors were recorded after step 0; " + enable_hint("optimizer");
  }
  Config config_;
};

// ---------------------------------------------------------------- AllZero

class AllZero : public RuleBase {
 public:
  struct Config {
    double threshold;
    std::vector<std::string> collections;
    std::string regex;
  };
  static Config read(ParamReader& p) {
    return {p.number("threshold", 100, 0, 100), p.collections("collections", {"weights", "gradients", "relu_output"}),
            p.regex("tensor_regex")};
  }
  AllZero(std::string name, json params, Config config)
      : RuleBase(std::move(name), std::move(params)), config_(config), filter_(config.collections, config.regex) {}

  void observe(const StepRecord& record) override {
    for (const TensorSummary& t : record.tensors) {
      if (!filter_.matches(t) || t.count <= 0) continue;
      add_datapoint();
      double zero_percent = t.fraction_zero * 100;
      if (zero_percent >= config_.threshold - 1e-9) {
        report_issue(record.step, t.name,
                     fmt::format("{}% of the {} elements of {} are zero at step {} (threshold {}%). Check the "
                                 "initialisation, the learning rate, and for dead units or a detached layer",
                                 num(zero_percent), t.count, t.name, record.step, num(config_.threshold)));
      }
    }
  }

 private:
  std::string no_data_reason() const override {
    return fmt::format("no tensors were recorded in {}; enable them in the debugger hook", filter_.describe());
  }
  Config config_;
  TensorFilter filter_;
};

// ---------------------------------------------------------------- UnchangedTensor

// Compares the reductions (and the raw values, when present) of a tensor's
// num_steps most recent train observations.
class UnchangedTensor : public RuleBase {
 public:
  struct Config {
    int64_t num_steps;
    double rtol, atol;
    std::vector<std::string> collections;
    std::string regex;
  };
  static Config read(ParamReader& p) {
    return {p.integer("num_steps", 3, 2), p.number("rtol", 1e-5, 0), p.number("atol", 1e-8, 0),
            p.collections("collections", {"weights", "biases", "losses"}), p.regex("tensor_regex")};
  }
  UnchangedTensor(std::string name, json params, Config config)
      : RuleBase(std::move(name), std::move(params)), config_(config), filter_(config.collections, config.regex) {}

  void observe(const StepRecord& record) override {
    if (record.mode != Mode::kTrain) return;
    for (const TensorSummary& t : record.tensors) {
      if (!filter_.matches(t)) continue;
      std::vector<double> fingerprint = {t.min, t.max, t.mean, t.std, t.l1, t.l2};
      fingerprint.insert(fingerprint.end(), t.values.begin(), t.values.end());
      auto& history = history_[t.name];
      history.push_back(std::move(fingerprint));
      if (static_cast<int64_t>(history.size()) > config_.num_steps) history.pop_front();
      if (static_cast<int64_t>(history.size()) < config_.num_steps) continue;
      add_datapoint();
      bool unchanged = true;
      for (size_t i = 1; i < history.size() && unchanged; ++i) unchanged = allclose(history[i], history[i - 1]);
      if (unchanged) {
        report_issue(record.step, t.name,
                     fmt::format("{} did not change over its last {} observations (up to step {}; rtol {}, atol {}). "
                                 "Check that it is trainable and reached by the optimizer, and that the learning rate "
                                 "is not zero",
                                 t.name, config_.num_steps, record.step, num(config_.rtol), num(config_.atol)));
      }
    }
  }

 private:
  bool allclose(const std::vector<double>& a, const std::vector<double>& b) const {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (std::isnan(a[i]) || std::isnan(b[i])) return false;  // like numpy's equal_nan=False
      if (std::fabs(a[i] - b[i]) > config_.atol + config_.rtol * std::fabs(b[i])) return false;
    }
    return true;
  }
  std::string no_data_reason() const override {
    return fmt::format("fewer than {} train observations of any tensor in {} were recorded; enable them in the "
                       "debugger hook (or lower num_steps)",
                       config_.num_steps, filter_.describe());
  }
  Config config_;
  TensorFilter filter_;
  std::map<std::string, std::deque<std::vector<double>>> history_;
};

// ---------------------------------------------------------------- TensorVariance

// Defaults are wide bounds (1e-12, 1e12) on gradients so the rule works with
// no parameters: weights are left out by default because freshly initialised
// constant tensors (batch-norm scales = 1) have zero variance by design.
class TensorVariance : public RuleBase {
 public:
  struct Config {
    double min_threshold, max_threshold;
    std::vector<std::string> collections;
    std::string regex;
  };
  static Config read(ParamReader& p) {
    Config c{p.number("min_threshold", 1e-12, 0), p.number("max_threshold", 1e12, 0),
             p.collections("collections", {"gradients"}), p.regex("tensor_regex")};
    if (c.min_threshold > c.max_threshold) {
      p.fail(invalid_argument("rule 'TensorVariance': min_threshold {} is above max_threshold {}", c.min_threshold,
                              c.max_threshold));
    }
    return c;
  }
  TensorVariance(std::string name, json params, Config config)
      : RuleBase(std::move(name), std::move(params)), config_(config), filter_(config.collections, config.regex) {}

  void observe(const StepRecord& record) override {
    for (const TensorSummary& t : record.tensors) {
      if (!filter_.matches(t) || t.count < 2 || !std::isfinite(t.variance)) continue;  // a scalar has no variance
      add_datapoint();
      if (t.variance < config_.min_threshold || t.variance > config_.max_threshold) {
        bool low = t.variance < config_.min_threshold;
        report_issue(record.step, t.name,
                     fmt::format("the variance of {} is {} at step {}, {} {} {}: {}", t.name, num(t.variance),
                                 record.step, low ? "below min_threshold" : "above max_threshold",
                                 num(low ? config_.min_threshold : config_.max_threshold),
                                 low ? "(values are nearly constant)" : "(values are spreading out)",
                                 low ? "check for vanishing gradients or a layer that is not learning"
                                     : "try a lower learning rate, gradient clipping or weight decay"));
      }
    }
  }

 private:
  std::string no_data_reason() const override {
    return fmt::format("no tensors with 2 or more elements were recorded in {}; enable them in the debugger hook",
                       filter_.describe());
  }
  Config config_;
  TensorFilter filter_;
};

// ---------------------------------------------------------------- ClassImbalance

// Imbalance: on the cumulative train label counts, once `samples` labels were
// seen and every class could have appeared 20 times (so that 120 balanced
// classes are not flagged for a class that was merely unlucky early on).
// Misprediction: on the train confusion of each block of `samples` samples; a
// class is flagged when its misprediction rate is above the threshold while the
// block's overall rate is not (early in training every class is mispredicted;
// the rule is about one class being left behind).
class ClassImbalance : public RuleBase {
 public:
  struct Config {
    double threshold_imbalance, threshold_misprediction;
    int64_t samples;
    double noise_sigmas;
  };
  static Config read(ParamReader& p) {
    return {p.number("threshold_imbalance", 10, 1), p.number("threshold_misprediction", 0.7, 0, 1),
            p.integer("samples", 500, 1), p.number("noise_sigmas", 3, 0)};
  }
  ClassImbalance(std::string name, json params, Config config)
      : RuleBase(std::move(name), std::move(params)), config_(config) {}

  static constexpr int64_t kMinimumSupport = 5;     // per class in a block, for a misprediction rate to mean anything
  static constexpr int64_t kExpectedPerClass = 20;  // for the imbalance ratio

  void observe(const StepRecord& record) override {
    if (record.mode != Mode::kTrain) return;
    if (const TensorSummary* labels = detail::find_tensor(record, "labels/counts")) add_labels(record.step, *labels);
    if (const TensorSummary* confusion = detail::find_tensor(record, "predictions/confusion")) {
      add_confusion(record.step, *confusion);
    }
  }

 private:
  void add_labels(int64_t step, const TensorSummary& labels) {
    if (labels.values.empty()) return;
    if (counts_.size() < labels.values.size()) counts_.resize(labels.values.size(), 0);
    for (size_t c = 0; c < labels.values.size(); ++c) {
      counts_[c] += labels.values[c];
      labels_seen_ += labels.values[c];
    }
    const double classes = static_cast<double>(counts_.size());
    if (classes < 2 || labels_seen_ < static_cast<double>(config_.samples) ||
        labels_seen_ < kExpectedPerClass * classes) {
      return;
    }
    add_datapoint();
    auto [smallest, largest] = std::minmax_element(counts_.begin(), counts_.end());
    double ratio = *smallest > 0 ? *largest / *smallest : std::numeric_limits<double>::infinity();
    if (ratio > config_.threshold_imbalance) {
      report_issue(step, "labels/counts",
                   fmt::format("class {} has {} samples and class {} has {} after {} samples: ratio {} above "
                               "threshold_imbalance {}. Try oversampling the rare classes, class weights in the "
                               "loss, or collecting more data",
                               largest - counts_.begin(), num(*largest), smallest - counts_.begin(), num(*smallest),
                               num(labels_seen_), num(ratio), num(config_.threshold_imbalance)));
    }
  }

  void add_confusion(int64_t step, const TensorSummary& confusion) {
    const size_t cells = confusion.values.size();
    const size_t classes = static_cast<size_t>(std::llround(std::sqrt(static_cast<double>(cells))));
    if (classes < 2 || classes * classes != cells) return;
    if (block_.size() != cells) block_.assign(cells, 0.0);
    for (size_t i = 0; i < cells; ++i) block_[i] += confusion.values[i];
    double total = std::accumulate(block_.begin(), block_.end(), 0.0);
    if (total < static_cast<double>(config_.samples)) return;
    add_datapoint();
    double correct = 0;
    for (size_t c = 0; c < classes; ++c) correct += block_[c * classes + c];
    const double overall = 1 - correct / total;
    for (size_t c = 0; c < classes && overall <= config_.threshold_misprediction; ++c) {
      double support = std::accumulate(block_.begin() + c * classes, block_.begin() + (c + 1) * classes, 0.0);
      if (support < kMinimumSupport) continue;
      double mispredicted = 1 - block_[c * classes + c] / support;
      // "Left behind" needs the others to be ahead: mostly right (error at most 1 - threshold).
      // In the first blocks of a run the easy classes are learned within a few steps while the
      // rest are still guessed; that is early training, not a class left behind.
      const double others_support = total - support;
      const double others_error =
          others_support > 0 ? 1 - (correct - block_[c * classes + c]) / others_support : 1;
      // A rate from a few dozen samples is noisy: it must exceed the threshold by noise_sigmas
      // standard errors of a rate at the threshold (Shirt, 72 % wrong in 50 samples early in a
      // Fashion-MNIST run, is 0.3 of one).
      const double threshold = config_.threshold_misprediction;
      const double noise = config_.noise_sigmas * std::sqrt(threshold * (1 - threshold) / support);
      if (mispredicted > threshold + noise && others_error <= 1 - threshold) {
        report_issue(step, "predictions/confusion",
                     fmt::format("class {} was mispredicted in {}% of its {} samples over the last {} samples "
                                 "(threshold_misprediction {}%, beyond its sampling noise of ±{}%) while the other "
                                 "classes only {}% were: the class is left behind, often because it is rare. Try "
                                 "oversampling it or class weights",
                                 c, num(mispredicted * 100), num(support), num(total), num(threshold * 100),
                                 num(noise * 100), num(others_error * 100)));
        break;
      }
    }
    block_.assign(cells, 0.0);
  }

  std::string no_data_reason() const override {
    if (labels_seen_ > 0 || !block_.empty()) {
      return fmt::format("only {} labels were seen, fewer than samples={} (and {} per class) needed to judge",
                         num(labels_seen_), config_.samples, kExpectedPerClass);
    }
    return "neither labels/counts nor predictions/confusion was recorded; " + enable_hint("labels") +
           " (and 'predictions')";
  }

  Config config_;
  std::vector<double> counts_;
  double labels_seen_ = 0;
  std::vector<double> block_;
};

// ---------------------------------------------------------------- Confusion

// Judges each validation pass's confusion (all eval batches with the same
// step), when the next pass or a train step begins, or at finish().
// Cells are normalised by the true class's row: the diagonal is per-class
// recall, an off-diagonal cell the share of class i predicted as j.
class Confusion : public RuleBase {
 public:
  struct Config {
    double min_diag, max_off_diag;
  };
  static Config read(ParamReader& p) { return {p.number("min_diag", 0.9, 0, 1), p.number("max_off_diag", 0.1, 0, 1)}; }
  Confusion(std::string name, json params, Config config)
      : RuleBase(std::move(name), std::move(params)), config_(config) {}

  void observe(const StepRecord& record) override {
    if (record.mode == Mode::kTrain) {
      judge_pass();
      return;
    }
    const TensorSummary* confusion = detail::find_tensor(record, "predictions/confusion");
    if (!confusion) return;
    saw_eval_ = true;
    if (pass_step_ && *pass_step_ != record.step) judge_pass();
    const size_t cells = confusion->values.size();
    const size_t classes = static_cast<size_t>(std::llround(std::sqrt(static_cast<double>(cells))));
    if (classes < 1 || classes * classes != cells) return;
    if (pass_.size() != cells) pass_.assign(cells, 0.0);
    for (size_t i = 0; i < cells; ++i) pass_[i] += confusion->values[i];
    pass_step_ = record.step;
  }

 private:
  void on_finish() override { judge_pass(); }

  void judge_pass() {
    if (!pass_step_ || pass_.empty()) {
      pass_step_.reset();
      return;
    }
    const int64_t step = *pass_step_;
    const size_t classes = static_cast<size_t>(std::llround(std::sqrt(static_cast<double>(pass_.size()))));
    add_datapoint();
    for (size_t i = 0; i < classes; ++i) {
      double support = std::accumulate(pass_.begin() + i * classes, pass_.begin() + (i + 1) * classes, 0.0);
      if (support <= 0) continue;
      double recall = pass_[i * classes + i] / support;
      if (recall < config_.min_diag) {
        report_issue(step, "predictions/confusion",
                     fmt::format("in the validation at step {} class {} was predicted correctly for {}% of its {} "
                                 "samples, below min_diag {}%. Look at which classes it is confused with; try more "
                                 "data or augmentation for it",
                                 step, i, num(recall * 100), num(support), num(config_.min_diag * 100)));
      }
      for (size_t j = 0; j < classes; ++j) {
        if (j == i) continue;
        double share = pass_[i * classes + j] / support;
        if (share > config_.max_off_diag) {
          report_issue(step, "predictions/confusion",
                       fmt::format("in the validation at step {} class {} was predicted as class {} for {}% of its "
                                   "{} samples, above max_off_diag {}%. The two classes may look alike or be "
                                   "mislabelled",
                                   step, i, j, num(share * 100), num(support), num(config_.max_off_diag * 100)));
        }
      }
    }
    pass_.clear();
    pass_step_.reset();
  }

  std::string no_data_reason() const override {
    return "no predictions/confusion was recorded during validation; run validation during training and " +
           enable_hint("predictions");
  }

  Config config_;
  std::vector<double> pass_;
  std::optional<int64_t> pass_step_;
  bool saw_eval_ = false;
};

// ---------------------------------------------------------------- CheckInputImages

class CheckInputImages : public RuleBase {
 public:
  struct Config {
    double threshold_mean;
    int64_t threshold_samples;
  };
  static Config read(ParamReader& p) {
    return {p.number("threshold_mean", 0.2, 0), p.integer("threshold_samples", 500, 1)};
  }
  CheckInputImages(std::string name, json params, Config config)
      : RuleBase(std::move(name), std::move(params)), config_(config) {}

  void observe(const StepRecord& record) override {
    if (record.mode != Mode::kTrain) return;
    const TensorSummary* images = detail::find_tensor(record, "inputs/images");
    if (!images || !std::isfinite(images->mean)) return;
    // Without a shape, a record counts as one image (threshold_samples then counts batches).
    double batch = images->shape.empty() ? 1.0 : static_cast<double>(std::max<int64_t>(images->shape[0], 1));
    weighted_mean_sum_ += images->mean * batch;
    if (channel_sums_.size() != images->values.size()) {
      channel_sums_.assign(images->values.size(), 0.0);
      channel_images_ = 0;
    }
    for (size_t c = 0; c < images->values.size(); ++c) channel_sums_[c] += images->values[c] * batch;
    channel_images_ += batch;
    images_ += batch;
    if (images_ < static_cast<double>(config_.threshold_samples)) return;
    add_datapoint();
    double mean = weighted_mean_sum_ / images_;
    if (std::fabs(mean) > config_.threshold_mean) {
      report(record.step, fmt::format("the mean of the normalised input images is {}", num(mean)));
      return;
    }
    for (size_t c = 0; c < channel_sums_.size(); ++c) {
      double channel_mean = channel_sums_[c] / channel_images_;
      if (std::fabs(channel_mean) > config_.threshold_mean) {
        report(record.step, fmt::format("the mean of channel {} of the normalised input images is {}", c,
                                        num(channel_mean)));
        return;
      }
    }
  }

 private:
  void report(int64_t step, const std::string& what) {
    report_issue(step, "inputs/images",
                 fmt::format("{} over {} images, |mean| above threshold_mean {}: inputs are not normalised. Set the "
                             "normalisation mean/std to the dataset's (or the pretrained model's) statistics",
                             what, num(images_), num(config_.threshold_mean)));
  }
  std::string no_data_reason() const override {
    if (images_ > 0) {
      return fmt::format("only {} images were seen, fewer than threshold_samples={}", num(images_),
                         config_.threshold_samples);
    }
    return "inputs/images was never recorded; " + enable_hint("inputs");
  }
  Config config_;
  double images_ = 0, weighted_mean_sum_ = 0, channel_images_ = 0;
  std::vector<double> channel_sums_;
};

// ---------------------------------------------------------------- StalledTraining

// Before the first record, the first tick starts the clock (a job stuck
// before its first step is stalled too). A gap between two records longer
// than the threshold is reported even if training recovered.
class StalledTraining : public RuleBase {
 public:
  struct Config {
    double threshold;
  };
  static Config read(ParamReader& p) { return {p.number("threshold", 1800, 1e-9)}; }
  StalledTraining(std::string name, json params, Config config)
      : RuleBase(std::move(name), std::move(params)), config_(config) {}

  void observe(const StepRecord& record) override {
    add_datapoint();
    if (last_record_time_ && record.wall_time - *last_record_time_ > config_.threshold) {
      report(record.step, record.wall_time - *last_record_time_, "between two recorded steps");
    }
    if (!last_record_time_ || record.wall_time > *last_record_time_) last_record_time_ = record.wall_time;
    last_step_ = record.step;
  }

  void tick(double now) override {
    if (!started_) started_ = now;
    double since = last_record_time_.value_or(*started_);
    add_datapoint();
    if (now - since > config_.threshold) {
      report(last_step_.value_or(0), now - since,
             last_step_ ? fmt::format("since step {}", *last_step_) : std::string("before the first step"));
    }
  }

 private:
  void report(int64_t step, double idle, const std::string& when) {
    report_issue(step, "",
                 fmt::format("no training step was recorded for {} s {}, above threshold {} s: training looks "
                             "stalled. Check the data loader, a deadlock between workers, or the disk",
                             num(idle), when, num(config_.threshold)));
  }
  std::string no_data_reason() const override {
    return "no step was recorded and the rule was never ticked (it needs the rule runner's clock)";
  }
  Config config_;
  std::optional<double> started_, last_record_time_;
  std::optional<int64_t> last_step_;
};

// ---------------------------------------------------------------- factory

using Factory = Result<std::unique_ptr<Rule>> (*)(const std::string&, const json&);

template <typename R>
Result<std::unique_ptr<Rule>> build(const std::string& name, const json& given) {
  ParamReader reader(name, given);
  typename R::Config config = R::read(reader);
  Status status = reader.status();
  if (!status.ok()) return status;
  return std::unique_ptr<Rule>(std::make_unique<R>(name, reader.resolved(), config));
}

const std::vector<std::pair<std::string, Factory>>& factories() {
  static const std::vector<std::pair<std::string, Factory>> kFactories = {
      {"VanishingGradient", &build<VanishingGradient>},
      {"ExplodingTensor", &build<ExplodingTensor>},
      {"PoorWeightInitialization", &build<PoorWeightInitialization>},
      {"LossNotDecreasing", &build<LossNotDecreasing>},
      {"Overfit", &build<Overfit>},
      {"Overtraining", &build<Overtraining>},
      {"DeadRelu", &build<DeadRelu>},
      {"SaturatedActivation", &build<SaturatedActivation>},
      {"WeightUpdateRatio", &build<WeightUpdateRatio>},
      {"AllZero", &build<AllZero>},
      {"UnchangedTensor", &build<UnchangedTensor>},
      {"TensorVariance", &build<TensorVariance>},
      {"ClassImbalance", &build<ClassImbalance>},
      {"Confusion", &build<Confusion>},
      {"CheckInputImages", &build<CheckInputImages>},
      {"StalledTraining", &build<StalledTraining>},
  };
  return kFactories;
}

}  // namespace

const std::vector<std::string>& builtin_rule_names() {
  static const std::vector<std::string> kNames = [] {
    std::vector<std::string> names;
    for (const auto& [name, factory] : factories()) names.push_back(name);
    return names;
  }();
  return kNames;
}

Result<std::unique_ptr<Rule>> make_rule(const std::string& name, const nlohmann::json& parameters) {
  for (const auto& [known, factory] : factories()) {
    if (known == name) return factory(name, parameters);
  }
  return invalid_argument("unknown debugger rule '{}' (built-in rules: {})", name,
                          fmt::join(builtin_rule_names(), ", "));
}

}  // namespace kennel::debug

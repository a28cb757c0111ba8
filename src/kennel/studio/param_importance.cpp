#include "kennel/studio/param_importance.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include <fmt/format.h>

namespace kennel::studio {

namespace {

// A leaf of a fitted tree: its box in the search space and its prediction.
struct Leaf {
  std::vector<double> low, high;
  double value = 0;
};

class TreeBuilder {
 public:
  TreeBuilder(const std::vector<ImportanceDimension>& dimensions,
              const std::vector<std::vector<double>>& points, const std::vector<double>& objective,
              const ImportanceOptions& options)
      : dimensions_(dimensions), points_(points), objective_(objective), options_(options) {}

  std::vector<Leaf> build(const std::vector<size_t>& sample) {
    leaves_.clear();
    Leaf root;
    for (const auto& dimension : dimensions_) {
      root.low.push_back(dimension.low);
      root.high.push_back(dimension.high);
    }
    grow(sample, std::move(root), 0);
    return std::move(leaves_);
  }

 private:
  double mean(const std::vector<size_t>& sample) const {
    double sum = 0;
    for (size_t i : sample) sum += objective_[i];
    return sum / static_cast<double>(sample.size());
  }

  // The split of least summed squared error (CART), over every dimension and
  // every midpoint between distinct values; false when nothing splits.
  bool best_split(const std::vector<size_t>& sample, size_t& dimension, double& threshold) const {
    const size_t minimum = static_cast<size_t>(std::max(1, options_.min_samples_leaf));
    double best_error = INFINITY;
    std::vector<size_t> order(sample);
    for (size_t d = 0; d < dimensions_.size(); ++d) {
      std::sort(order.begin(), order.end(),
                [&](size_t a, size_t b) { return points_[a][d] < points_[b][d]; });
      double total = 0, total_squares = 0;
      for (size_t i : order) {
        total += objective_[i];
        total_squares += objective_[i] * objective_[i];
      }
      double left = 0, left_squares = 0;
      for (size_t k = 0; k + 1 < order.size(); ++k) {
        left += objective_[order[k]];
        left_squares += objective_[order[k]] * objective_[order[k]];
        const double here = points_[order[k]][d], next = points_[order[k + 1]][d];
        if (!(here < next) || k + 1 < minimum || order.size() - (k + 1) < minimum) continue;
        const double n_left = static_cast<double>(k + 1),
                     n_right = static_cast<double>(order.size() - k - 1);
        const double right = total - left, right_squares = total_squares - left_squares;
        const double error =
            (left_squares - left * left / n_left) + (right_squares - right * right / n_right);
        if (error < best_error - 1e-12) {
          best_error = error;
          dimension = d;
          threshold = 0.5 * (here + next);
        }
      }
    }
    return std::isfinite(best_error);
  }

  void grow(const std::vector<size_t>& sample, Leaf box, int depth) {
    const auto [low, high] =
        std::minmax_element(sample.begin(), sample.end(),
                            [&](size_t a, size_t b) { return objective_[a] < objective_[b]; });
    size_t dimension = 0;
    double threshold = 0;
    if (depth >= options_.max_depth || objective_[*low] == objective_[*high] ||
        sample.size() < 2 * static_cast<size_t>(std::max(1, options_.min_samples_leaf)) ||
        !best_split(sample, dimension, threshold)) {
      box.value = mean(sample);
      leaves_.push_back(std::move(box));
      return;
    }
    std::vector<size_t> left, right;
    for (size_t i : sample) (points_[i][dimension] <= threshold ? left : right).push_back(i);
    Leaf left_box = box, right_box = std::move(box);
    left_box.high[dimension] = threshold;
    right_box.low[dimension] = threshold;
    grow(left, std::move(left_box), depth + 1);
    grow(right, std::move(right_box), depth + 1);
  }

  const std::vector<ImportanceDimension>& dimensions_;
  const std::vector<std::vector<double>>& points_;
  const std::vector<double>& objective_;
  const ImportanceOptions& options_;
  std::vector<Leaf> leaves_;
};

// Main-effect variance fractions of one tree, exactly, under the uniform
// measure over the search space. The leaves partition the space, so the tree's
// mean is the volume-weighted mean of the leaves, and the marginal of
// dimension d on an interval between consecutive split points is the sum of
// the leaves crossing it, each weighted by its volume in the other dimensions.
// Empty when the tree predicts a constant.
std::vector<double> tree_fractions(const std::vector<ImportanceDimension>& dimensions,
                                   const std::vector<Leaf>& leaves) {
  const size_t count = dimensions.size();
  std::vector<std::vector<double>> widths(leaves.size(), std::vector<double>(count));
  std::vector<double> volume(leaves.size(), 1.0);
  for (size_t l = 0; l < leaves.size(); ++l) {
    for (size_t d = 0; d < count; ++d) {
      widths[l][d] =
          (leaves[l].high[d] - leaves[l].low[d]) / (dimensions[d].high - dimensions[d].low);
      volume[l] *= widths[l][d];
    }
  }
  double mean = 0;
  for (size_t l = 0; l < leaves.size(); ++l) mean += volume[l] * leaves[l].value;
  double total = 0;
  for (size_t l = 0; l < leaves.size(); ++l)
    total += volume[l] * std::pow(leaves[l].value - mean, 2);
  if (!(total > 1e-300)) return {};

  std::vector<double> fractions(count, 0.0);
  for (size_t d = 0; d < count; ++d) {
    std::vector<double> cuts;
    for (const auto& leaf : leaves) {
      cuts.push_back(leaf.low[d]);
      cuts.push_back(leaf.high[d]);
    }
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    if (cuts.size() < 3) continue;  // never split on d: no main effect
    // Difference array over the intervals [cuts[k], cuts[k+1]).
    std::vector<double> marginal(cuts.size(), 0.0);
    for (size_t l = 0; l < leaves.size(); ++l) {
      const double others = widths[l][d] > 0 ? volume[l] / widths[l][d] : 0.0;
      const size_t first =
          std::lower_bound(cuts.begin(), cuts.end(), leaves[l].low[d]) - cuts.begin();
      const size_t last =
          std::lower_bound(cuts.begin(), cuts.end(), leaves[l].high[d]) - cuts.begin();
      marginal[first] += leaves[l].value * others;
      marginal[last] -= leaves[l].value * others;
    }
    double running = 0, variance = 0;
    const double span = dimensions[d].high - dimensions[d].low;
    for (size_t k = 0; k + 1 < cuts.size(); ++k) {
      running += marginal[k];
      variance += (cuts[k + 1] - cuts[k]) / span * std::pow(running - mean, 2);
    }
    fractions[d] = std::clamp(variance / total, 0.0, 1.0);
  }
  return fractions;
}

}  // namespace

Result<std::vector<double>> fanova_importance(const std::vector<ImportanceDimension>& dimensions,
                                              const std::vector<std::vector<double>>& points,
                                              const std::vector<double>& objective,
                                              const ImportanceOptions& options) {
  if (points.size() != objective.size()) {
    return invalid_argument("{} points but {} objective values", points.size(), objective.size());
  }
  for (const auto& dimension : dimensions) {
    if (!(dimension.low < dimension.high) || !std::isfinite(dimension.low) ||
        !std::isfinite(dimension.high)) {
      return invalid_argument("parameter '{}' has an empty range [{}, {}]", dimension.name,
                              dimension.low, dimension.high);
    }
  }
  std::vector<std::vector<double>> clamped = points;
  for (size_t i = 0; i < clamped.size(); ++i) {
    if (clamped[i].size() != dimensions.size()) {
      return invalid_argument("point {} has {} values, expected {}", i, clamped[i].size(),
                              dimensions.size());
    }
    if (!std::isfinite(objective[i])) return invalid_argument("objective {} is not finite", i);
    for (size_t d = 0; d < dimensions.size(); ++d) {
      if (!std::isfinite(clamped[i][d]))
        return invalid_argument("point {} has a non-finite '{}'", i, dimensions[d].name);
      clamped[i][d] = std::clamp(clamped[i][d], dimensions[d].low, dimensions[d].high);
    }
  }
  if (objective.size() < 2)
    return failed_precondition("{} trial(s) with an objective: need at least 2", objective.size());
  if (std::all_of(objective.begin(), objective.end(),
                  [&](double value) { return value == objective.front(); })) {
    return failed_precondition("every trial has the same objective: nothing to explain");
  }
  std::vector<double> sum(dimensions.size(), 0.0);
  int counted = 0;
  std::mt19937_64 rng(options.seed);
  std::uniform_int_distribution<size_t> pick(0, objective.size() - 1);
  TreeBuilder builder(dimensions, clamped, objective, options);
  for (int tree = 0; tree < std::max(1, options.trees); ++tree) {
    std::vector<size_t> sample(objective.size());
    for (auto& index : sample) index = pick(rng);  // bootstrap
    const std::vector<double> fractions = tree_fractions(dimensions, builder.build(sample));
    if (fractions.empty()) continue;
    for (size_t d = 0; d < dimensions.size(); ++d) sum[d] += fractions[d];
    ++counted;
  }
  if (counted > 0) {
    for (double& value : sum) value /= counted;
  }
  return sum;
}

}  // namespace kennel::studio

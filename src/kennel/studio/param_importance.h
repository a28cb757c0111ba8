// Hyperparameter importance by functional ANOVA (fANOVA; Hutter, Hoos and
// Leyton-Brown, "An Efficient Approach for Assessing Hyperparameter
// Importance", ICML 2014), as optuna-dashboard shows it: a random forest of
// regression trees is fitted to (hyperparameters -> objective), and for each
// tree the variance of the objective over the whole search space is split
// exactly into the part each parameter explains alone (its main effect: the
// variance of the tree's prediction averaged over every other parameter).
// A parameter's importance is that fraction, averaged over the trees. Unlike a
// correlation it sees non-monotonic effects (an lr that is best in the middle)
// and categorical parameters. The fractions of all parameters sum to at most 1;
// the rest is interactions.
//
// Pure computation: no I/O. Thread-safety: pure functions. Deterministic for a seed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kennel/util/status.h"

namespace kennel::studio {

// One dimension of the search space, as the trees see it: a numeric interval.
// Log-scale parameters are given as log10 values; a categorical parameter with
// k choices is the interval [-0.5, k - 0.5] holding its choice's index, so
// every choice weighs the same.
struct ImportanceDimension {
  std::string name;
  double low = 0, high = 1;
};

struct ImportanceOptions {
  int trees = 64;            // more: steadier fractions, linear cost
  int min_samples_leaf = 1;  // as optuna's and fANOVA's forests
  int max_depth = 32;
  uint64_t seed = 0;
};

// `points[i][d]` is trial i's value of dimension d (clamped into [low, high]);
// `objective[i]` its objective. kInvalidArgument when the shapes disagree, a
// dimension is empty (low >= high) or a value is not finite; kFailedPrecondition
// when there are fewer than 2 trials or the objective never varies (nothing to
// explain). Returns one fraction in [0, 1] per dimension.
Result<std::vector<double>> fanova_importance(const std::vector<ImportanceDimension>& dimensions,
                                              const std::vector<std::vector<double>>& points,
                                              const std::vector<double>& objective,
                                              const ImportanceOptions& options = {});

}  // namespace kennel::studio

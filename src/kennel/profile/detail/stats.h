// Small descriptive statistics shared by the profiler rules and the profile
// report, so both quote the same percentiles for the same data. Every function
// ignores NaN and infinite values (a monitor sample can hold them) and answers
// nullopt, not a number, when nothing finite is left. Not part of the profile
// module's contract. Thread-safety: pure functions.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <optional>
#include <vector>

namespace kennel::profile::detail {

inline std::vector<double> finite_values(const std::vector<double>& values) {
  std::vector<double> finite;
  finite.reserve(values.size());
  for (const double value : values) {
    if (std::isfinite(value)) finite.push_back(value);
  }
  return finite;
}

// The q-th percentile (q in 0..100) with linear interpolation between the
// closest ranks (NumPy's default), so p50 of {1, 2} is 1.5.
inline std::optional<double> percentile(std::vector<double> values, double q) {
  values = finite_values(values);
  if (values.empty() || !std::isfinite(q)) return std::nullopt;
  std::sort(values.begin(), values.end());
  const double rank = std::clamp(q, 0.0, 100.0) / 100.0 * static_cast<double>(values.size() - 1);
  const auto below = static_cast<size_t>(std::floor(rank));
  const size_t above = std::min(below + 1, values.size() - 1);
  const double fraction = rank - static_cast<double>(below);
  return values[below] + (values[above] - values[below]) * fraction;
}

inline std::optional<double> mean(const std::vector<double>& values) {
  double sum = 0;
  size_t count = 0;
  for (const double value : values) {
    if (!std::isfinite(value)) continue;
    sum += value;
    ++count;
  }
  if (count == 0) return std::nullopt;
  return sum / static_cast<double>(count);
}

// Population standard deviation (the spread of these values, not an estimate
// of a larger population's): what "mean + k·σ" outlier tests use.
inline std::optional<double> standard_deviation(const std::vector<double>& values) {
  const std::optional<double> average = mean(values);
  if (!average) return std::nullopt;
  double squares = 0;
  size_t count = 0;
  for (const double value : values) {
    if (!std::isfinite(value)) continue;
    squares += (value - *average) * (value - *average);
    ++count;
  }
  return std::sqrt(squares / static_cast<double>(count));
}

struct Distribution {
  size_t count = 0;  // finite values described; 0: every other field is nullopt
  std::optional<double> min, p50, p95, p99, max, mean, std;
};

inline Distribution describe(const std::vector<double>& values) {
  Distribution out;
  std::vector<double> finite = finite_values(values);
  out.count = finite.size();
  if (finite.empty()) return out;
  std::sort(finite.begin(), finite.end());
  out.min = finite.front();
  out.max = finite.back();
  out.p50 = percentile(finite, 50);
  out.p95 = percentile(finite, 95);
  out.p99 = percentile(finite, 99);
  out.mean = detail::mean(finite);
  out.std = standard_deviation(finite);
  return out;
}

}  // namespace kennel::profile::detail

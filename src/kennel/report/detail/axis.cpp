#include "kennel/report/detail/axis.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace kennel::report::detail {

namespace {

// Ticks are generated in a loop over step indices; cap it so pathological
// ranges (1e-300 .. 1e300 on a linear axis) cannot produce absurd output.
constexpr int kMaxTicks = 64;
constexpr int kMaxLogLabels = 8;
constexpr int kMaxCategoryLabels = 16;
constexpr size_t kMaxCategoryLabelChars = 16;

// The 1-2-5 step at or above `raw`.
double nice_step(double raw) {
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double fraction = raw / magnitude;
  const double nice = fraction <= 1.0 ? 1.0 : fraction <= 2.0 ? 2.0 : fraction <= 5.0 ? 5.0 : 10.0;
  return nice * magnitude;
}

std::string decade_label(int exponent) {
  if (exponent >= -4 && exponent <= 5) return fmt::format("{:g}", std::pow(10.0, exponent));
  return fmt::format("1e{}", exponent);
}

// Keeps at most `max_chars` code points (not bytes, so UTF-8 stays whole).
std::string shorten(const std::string& text, size_t max_chars) {
  size_t chars = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) continue;
    if (++chars > max_chars) return text.substr(0, i) + "\xE2\x80\xA6";  // "…"
  }
  return text;
}

}  // namespace

bool Axis::accepts(double value) const {
  return std::isfinite(value) && (!log || value > 0);
}

double Axis::to_axis_units(double value) const {
  return log ? std::log10(value) : value;
}

std::string format_tick(double value, double step) {
  if (std::abs(value) < step * 1e-9) value = 0;  // k * step can land on -0 or 1e-17
  const double magnitude = std::max(std::abs(value), step);
  if (magnitude >= 1e6 || step < 1e-4) return fmt::format("{:g}", value);
  const int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
  return fmt::format("{:.{}f}", value, decimals);
}

Axis make_linear_axis(double min, double max, int target_ticks) {
  target_ticks = std::max(target_ticks, 2);
  // A zero-width range (one point, all values equal, or a difference lost in
  // rounding) gets a margin proportional to the value, or +-1 around zero.
  const double scale = std::max(std::abs(min), std::abs(max));
  if (!(max - min > scale * 1e-12)) {
    const double pad = scale > 0 ? scale * 0.1 : 1.0;
    min = std::max(min - pad, -std::numeric_limits<double>::max());
    max = std::min(max + pad, std::numeric_limits<double>::max());
    if (!(max > min)) {  // the pad underflowed (subnormal values)
      min -= 1.0;
      max += 1.0;
    }
  }
  // Divide before subtracting: max - min can overflow to inf near DBL_MAX.
  const double step = nice_step(max / target_ticks - min / target_ticks);
  const double first = std::floor(min / step + 1e-9);
  const double last = std::ceil(max / step - 1e-9);
  Axis axis;
  axis.lo = first * step;
  axis.hi = last * step;
  if (!(axis.hi > axis.lo) || !std::isfinite(axis.lo) || !std::isfinite(axis.hi)) {
    // Only near the limits of double: rounding to whole steps overflowed.
    axis.lo = min;
    axis.hi = max;
    return axis;
  }
  for (double k = first; k <= last && axis.ticks.size() < kMaxTicks; k += 1) {
    axis.ticks.push_back({k * step, format_tick(k * step, step)});
  }
  return axis;
}

Axis make_log_axis(double min, double max) {
  // Keep log10 finite (a padded range can step past the limits of double).
  constexpr double kSmallest = std::numeric_limits<double>::denorm_min();
  constexpr double kLargest = std::numeric_limits<double>::max();
  min = std::clamp(min, kSmallest, kLargest);
  max = std::clamp(max, min, kLargest);
  Axis axis;
  axis.log = true;
  int lo = static_cast<int>(std::floor(std::log10(min) + 1e-12));
  int hi = static_cast<int>(std::ceil(std::log10(max) - 1e-12));
  if (hi <= lo) hi = lo + 1;  // all values in one decade (or exactly on one)
  const int every = std::max(1, (hi - lo + kMaxLogLabels - 1) / kMaxLogLabels);
  // Align thinned labels to multiples of `every` (1e-6, 1e-3, 1, ...) and widen
  // the domain so both ends carry a tick.
  lo = static_cast<int>(std::floor(static_cast<double>(lo) / every)) * every;
  hi = static_cast<int>(std::ceil(static_cast<double>(hi) / every)) * every;
  axis.lo = lo;
  axis.hi = hi;
  for (int exponent = lo; exponent <= hi; exponent += every) {
    axis.ticks.push_back({static_cast<double>(exponent), decade_label(exponent)});
  }
  return axis;
}

Axis make_category_axis(const std::vector<std::string>& categories) {
  Axis axis;
  const size_t count = std::max<size_t>(categories.size(), 1);
  axis.lo = -0.5;
  axis.hi = static_cast<double>(count) - 0.5;
  const size_t every = (categories.size() + kMaxCategoryLabels - 1) / kMaxCategoryLabels;
  for (size_t i = 0; i < categories.size(); ++i) {
    const bool labelled = every <= 1 || i % every == 0;
    axis.ticks.push_back(
        {static_cast<double>(i), labelled ? shorten(categories[i], kMaxCategoryLabelChars) : ""});
  }
  return axis;
}

}  // namespace kennel::report::detail

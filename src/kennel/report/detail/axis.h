// Axis scaling for svg_chart.cpp: the domain an axis spans and where its
// ticks go. Linear axes step by 1, 2 or 5 times a power of ten and widen the
// domain to whole steps; log axes work in log10 units with ticks on decades;
// categorical axes put one tick per category. Degenerate input (one value,
// all values equal) still gets a domain of non-zero width, so mapping a value
// to pixels never divides by zero.
// Internal to the report module and its tests. Thread-safety: pure.
#pragma once

#include <string>
#include <vector>

namespace kennel::report::detail {

struct AxisTick {
  double position = 0;  // in axis units (log10 of the value on a log axis)
  std::string label;
};

struct Axis {
  bool log = false;
  double lo = 0, hi = 1;  // domain in axis units; hi > lo always
  std::vector<AxisTick> ticks;

  // Whether a data value can be placed on this axis (finite; positive on log axes).
  bool accepts(double value) const;
  // A data value in axis units: log10 on log axes, unchanged otherwise.
  double to_axis_units(double value) const;
  // Where an accepted value falls in the domain: 0 at lo, 1 at hi.
  double fraction(double value) const { return (to_axis_units(value) - lo) / (hi - lo); }
};

// `min`/`max` are the smallest and largest data values (min <= max, finite).
// About `target_ticks` ticks (between half and twice as many).
Axis make_linear_axis(double min, double max, int target_ticks = 5);
// `min`/`max` positive. Ticks on decades, thinned to at most ~8 labels.
Axis make_log_axis(double min, double max);
// Categories at positions 0..n-1, domain [-0.5, n-0.5]; with many categories
// only every k-th is labelled so labels do not overlap.
Axis make_category_axis(const std::vector<std::string>& categories);

// Human-friendly tick label: `value` rounded to the precision `step` implies
// ("0.25" for step 0.05, "2e+06" for big values), never "-0".
std::string format_tick(double value, double step);

}  // namespace kennel::report::detail

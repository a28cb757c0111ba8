#include "kennel/report/svg_chart.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include <fmt/format.h>

#include "kennel/report/detail/axis.h"

namespace kennel::report {

namespace {

using detail::Axis;

// Tableau 10: distinguishable, and readable on white.
constexpr const char* kSvgPalette[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
constexpr size_t kSvgPaletteSize = sizeof(kSvgPalette) / sizeof(kSvgPalette[0]);

// Layout, in SVG user units. Text widths are estimated (no font metrics in a
// pure function): ~6.5 units per character of 11-unit sans-serif.
constexpr double kFontSize = 11;
constexpr double kCharWidth = 6.5;
constexpr double kTitleHeight = 26;
constexpr double kLegendRowHeight = 16;
constexpr double kLegendSwatch = 12;
constexpr double kMarginRight = 16;
constexpr double kMarginBottom = 46;  // tick labels plus the x-axis label
constexpr double kTickLength = 4;
constexpr double kPointRadius = 3.5;
constexpr double kLinePointRadius = 2.5;  // hover targets on lines that have tooltips

struct PlotArea {
  double left = 0, top = 0, width = 0, height = 0;
  double right() const { return left + width; }
  double bottom() const { return top + height; }
};

struct LegendEntry {
  double x = 0, y = 0;
  size_t series = 0;
};

// A series point that survived filtering, in pixels.
struct PlacedPoint {
  size_t index = 0;  // into the series' x/y/tooltips
  double px = 0, py = 0;
};

std::string number(double value) {
  return fmt::format("{:.2f}", value);
}

double svg_text_width(const std::string& text) {
  return static_cast<double>(text.size()) * kCharWidth;
}

std::string series_color(const Series& series, size_t index) {
  return series.color.empty() ? kSvgPalette[index % kSvgPaletteSize] : series.color;
}

bool x_accepted(const ChartOptions& options, const Axis& axis, double x) {
  if (options.x_categories.empty()) return axis.accepts(x);
  return std::isfinite(x) && x > -0.5 && x < static_cast<double>(options.x_categories.size()) - 0.5;
}

// The data range along one coordinate over points both axes accept.
struct Range {
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
  bool empty() const { return min > max; }
  void add(double value) {
    min = std::min(min, value);
    max = std::max(max, value);
  }
};

// `pad` widens the range by that fraction of its span on each side (in log10
// units on log axes), so markers do not sit on the frame where half of them
// is hidden; nice rounding then widens it further.
Axis make_axis(bool log, Range range, int target_ticks, double pad) {
  if (log) {
    const double lo = std::log10(range.min), hi = std::log10(range.max);
    const double margin = (hi - lo) * pad;
    return detail::make_log_axis(std::pow(10.0, lo - margin), std::pow(10.0, hi + margin));
  }
  const double margin =
      (range.max / 2 - range.min / 2) * 2 * pad;  // halves: no overflow near DBL_MAX
  if (std::isfinite(range.min - margin) && std::isfinite(range.max + margin)) {
    range.min -= margin;
    range.max += margin;
  }
  return detail::make_linear_axis(range.min, range.max, target_ticks);
}

std::string svg_open(const ChartOptions& options, int width, int height) {
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"{0}\" height=\"{1}\" "
      "viewBox=\"0 0 {0} {1}\" role=\"img\" aria-label=\"{2}\" font-family=\"system-ui, "
      "sans-serif\" "
      "font-size=\"{3}\">\n",
      width, height, html_escape(options.title.empty() ? "chart" : options.title), kFontSize);
}

std::string svg_title(const ChartOptions& options, int width) {
  if (options.title.empty()) return "";
  return fmt::format(
      "<text x=\"{}\" y=\"17\" text-anchor=\"middle\" font-size=\"13\" "
      "font-weight=\"600\">{}</text>\n",
      number(width / 2.0), html_escape(options.title));
}

// Lays legend entries out left to right, wrapping; returns their positions
// (relative to the first row's baseline) and the number of rows.
std::vector<LegendEntry> layout_legend(const std::vector<Series>& series, double left,
                                       double max_width, int& rows) {
  std::vector<LegendEntry> entries;
  double x = 0;
  rows = series.empty() ? 0 : 1;
  for (size_t i = 0; i < series.size(); ++i) {
    const double width = kLegendSwatch + 4 + svg_text_width(series[i].name) + 14;
    if (x > 0 && x + width > max_width) {
      x = 0;
      ++rows;
    }
    entries.push_back({left + x, (rows - 1) * kLegendRowHeight, i});
    x += width;
  }
  return entries;
}

std::string render_legend(const std::vector<Series>& series,
                          const std::vector<LegendEntry>& entries, double top) {
  std::string out = "<g class=\"legend\">\n";
  for (const auto& entry : entries) {
    const Series& s = series[entry.series];
    const std::string color = series_color(s, entry.series);
    const double y = top + entry.y;
    if (s.style == Series::Style::kPoints) {
      out += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"{}\" fill=\"{}\"/>",
                         number(entry.x + kLegendSwatch / 2), number(y - 4), kPointRadius,
                         html_escape(color));
    } else {
      out += fmt::format(
          "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"2\"/>",
          number(entry.x), number(y - 4), number(entry.x + kLegendSwatch), number(y - 4),
          html_escape(color));
    }
    out += fmt::format("<text x=\"{}\" y=\"{}\">{}</text>\n", number(entry.x + kLegendSwatch + 4),
                       number(y), html_escape(s.name));
  }
  return out + "</g>\n";
}

std::string render_axes(const ChartOptions& options, const PlotArea& area, const Axis& x_axis,
                        const Axis& y_axis) {
  std::string out = "<g class=\"axes\">\n";
  for (const auto& tick : y_axis.ticks) {
    const double y =
        area.bottom() - (tick.position - y_axis.lo) / (y_axis.hi - y_axis.lo) * area.height;
    out += fmt::format(
        "<line x1=\"{0}\" y1=\"{2}\" x2=\"{1}\" y2=\"{2}\" stroke=\"#e6e6e6\"/>"
        "<line x1=\"{3}\" y1=\"{2}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#444\"/>"
        "<text x=\"{4}\" y=\"{5}\" text-anchor=\"end\">{6}</text>\n",
        number(area.left), number(area.right()), number(y), number(area.left - kTickLength),
        number(area.left - kTickLength - 2), number(y + 4), html_escape(tick.label));
  }
  for (const auto& tick : x_axis.ticks) {
    const double x = area.left + (tick.position - x_axis.lo) / (x_axis.hi - x_axis.lo) * area.width;
    out += fmt::format(
        "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#e6e6e6\"/>"
        "<line x1=\"{0}\" y1=\"{2}\" x2=\"{0}\" y2=\"{3}\" stroke=\"#444\"/>",
        number(x), number(area.top), number(area.bottom()), number(area.bottom() + kTickLength));
    if (!tick.label.empty()) {
      out += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>", number(x),
                         number(area.bottom() + kTickLength + 12), html_escape(tick.label));
    }
    out += "\n";
  }
  out += fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n",
      number(area.left), number(area.top), number(area.width), number(area.height));
  if (!options.x_label.empty()) {
    out += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                       number(area.left + area.width / 2), number(area.bottom() + 36),
                       html_escape(options.x_label));
  }
  if (!options.y_label.empty()) {
    const double x = 14, y = area.top + area.height / 2;
    out += fmt::format(
        "<text x=\"{0}\" y=\"{1}\" text-anchor=\"middle\" transform=\"rotate(-90 {0} "
        "{1})\">{2}</text>\n",
        number(x), number(y), html_escape(options.y_label));
  }
  return out + "</g>\n";
}

// Pixel runs of a series: a new run starts wherever a point was skipped, so a
// line never bridges a gap in the data.
std::vector<std::vector<PlacedPoint>> place_series(const ChartOptions& options,
                                                   const Series& series, const PlotArea& area,
                                                   const Axis& x_axis, const Axis& y_axis) {
  std::vector<std::vector<PlacedPoint>> runs(1);
  const size_t count = std::min(series.x.size(), series.y.size());
  for (size_t i = 0; i < count; ++i) {
    const double x = series.x[i], y = series.y[i];
    std::optional<PlacedPoint> point;
    if (x_accepted(options, x_axis, x) && y_axis.accepts(y)) {
      const double px = area.left + x_axis.fraction(x) * area.width;
      const double py = area.bottom() - y_axis.fraction(y) * area.height;
      if (std::isfinite(px) && std::isfinite(py)) point = PlacedPoint{i, px, py};
    }
    if (point) {
      runs.back().push_back(*point);
    } else if (!runs.back().empty()) {
      runs.emplace_back();
    }
  }
  if (runs.back().empty()) runs.pop_back();
  return runs;
}

std::string path_data(const std::vector<PlacedPoint>& run, bool steps) {
  std::string d;
  for (size_t i = 0; i < run.size(); ++i) {
    if (i == 0) {
      d += fmt::format("M{},{}", number(run[i].px), number(run[i].py));
    } else if (steps) {
      d += fmt::format(" H{} V{}", number(run[i].px), number(run[i].py));
    } else {
      d += fmt::format(" L{},{}", number(run[i].px), number(run[i].py));
    }
  }
  return d;
}

std::string render_series(const ChartOptions& options, const Series& series, size_t index,
                          const PlotArea& area, const Axis& x_axis, const Axis& y_axis) {
  const std::string color = html_escape(series_color(series, index));
  std::string out = "<g class=\"series\">";
  if (!series.name.empty()) out += "<title>" + html_escape(series.name) + "</title>";
  out += "\n";
  const auto runs = place_series(options, series, area, x_axis, y_axis);
  const bool points_only = series.style == Series::Style::kPoints;
  if (!points_only) {
    for (const auto& run : runs) {
      out += fmt::format(
          "<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" "
          "stroke-linejoin=\"round\"/>\n",
          path_data(run, series.style == Series::Style::kStepLine), color);
    }
  }
  // Lines get markers only where a path alone would show nothing (a run of
  // one point) or where they carry tooltips, as hover targets.
  const bool has_tooltips = !series.tooltips.empty();
  const double radius = points_only ? kPointRadius : kLinePointRadius;
  for (const auto& run : runs) {
    if (!points_only && !has_tooltips && run.size() > 1) continue;
    for (const auto& point : run) {
      out += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"{}\" fill=\"{}\" fill-opacity=\"0.85\"",
                         number(point.px), number(point.py), radius, color);
      if (point.index < series.tooltips.size() && !series.tooltips[point.index].empty()) {
        out += "><title>" + html_escape(series.tooltips[point.index]) + "</title></circle>\n";
      } else {
        out += "/>\n";
      }
    }
  }
  return out + "</g>\n";
}

std::string render_no_data(const ChartOptions& options, int width, int height, double top) {
  std::string out = svg_open(options, width, height) + svg_title(options, width);
  out +=
      fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n",
                  number(width / 2.0), number((top + height) / 2.0));
  return out + "</svg>\n";
}

}  // namespace

std::string render_svg_chart(const ChartOptions& options, const std::vector<Series>& series) {
  const int width = std::clamp(options.width, 160, 4000);
  const int height = std::clamp(options.height, 120, 4000);
  const double title_height = options.title.empty() ? 8 : kTitleHeight;

  // Axis types come from the options; filtering needs them before the ranges exist.
  Axis x_probe, y_probe;
  x_probe.log = options.x_log && options.x_categories.empty();
  y_probe.log = options.y_log;
  Range x_range, y_range;
  for (const auto& s : series) {
    const size_t count = std::min(s.x.size(), s.y.size());
    for (size_t i = 0; i < count; ++i) {
      if (!x_accepted(options, x_probe, s.x[i]) || !y_probe.accepts(s.y[i])) continue;
      x_range.add(s.x[i]);
      y_range.add(s.y[i]);
    }
  }
  if (y_range.empty()) return render_no_data(options, width, height, title_height);

  // Only markers need room at the edges; a line may run edge to edge (epochs 0..n).
  const bool has_markers = std::any_of(series.begin(), series.end(), [](const Series& s) {
    return s.style == Series::Style::kPoints || !s.tooltips.empty();
  });
  const double pad = has_markers ? 0.04 : 0.0;
  const Axis x_axis = options.x_categories.empty()
                          ? make_axis(x_probe.log, x_range, std::max(2, width / 110), pad)
                          : detail::make_category_axis(options.x_categories);
  const Axis y_axis = make_axis(y_probe.log, y_range, std::max(2, height / 60), pad);

  // The left margin fits the widest y tick label.
  double widest_label = 0;
  for (const auto& tick : y_axis.ticks)
    widest_label = std::max(widest_label, svg_text_width(tick.label));
  PlotArea area;
  area.left = std::min(width / 3.0, std::max(44.0, widest_label + 30));

  int legend_rows = 0;
  std::vector<LegendEntry> legend;
  if (series.size() > 1) {
    legend = layout_legend(series, area.left, width - area.left - kMarginRight, legend_rows);
  }
  const double legend_top = title_height + kLegendRowHeight - 4;
  area.top = title_height + legend_rows * kLegendRowHeight + 6;
  area.width = width - area.left - kMarginRight;
  area.height = std::max(20.0, height - area.top - kMarginBottom);

  std::string out = svg_open(options, width, height) + svg_title(options, width);
  out += render_axes(options, area, x_axis, y_axis);
  for (size_t i = 0; i < series.size(); ++i)
    out += render_series(options, series[i], i, area, x_axis, y_axis);
  if (!legend.empty()) out += render_legend(series, legend, legend_top);
  return out + "</svg>\n";
}

}  // namespace kennel::report

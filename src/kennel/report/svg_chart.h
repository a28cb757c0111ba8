// Charts as inline SVG for Kennel's HTML reports: line, point and step series
// on linear, log10 or categorical axes, with 1-2-5 ticks, axis labels, a
// legend, and per-point tooltips through SVG <title> elements (no script).
// The output is a standalone <svg> element that is well-formed XML: every
// piece of text is escaped and no element ids are used, so any number of
// charts can share one page. Bad data never throws: NaN/inf points (and
// non-positive ones on log axes) are skipped, and a chart with nothing left
// to draw says "no data". Thread-safety: pure functions.
#pragma once

#include <string>
#include <vector>

#include "kennel/report/html.h"

namespace kennel::report {

struct Series {
  std::string name;
  // Pairs (x[i], y[i]); values beyond the shorter of the two are ignored.
  std::vector<double> x, y;
  std::vector<std::string> tooltips;  // optional, one per point; shown on hover via <title>
  // kLine joins points in the order given and breaks where a point is skipped;
  // kStepLine holds each y until the next x (a "best so far" curve).
  enum class Style { kLine, kPoints, kStepLine } style = Style::kLine;
  std::string color;  // any CSS colour; empty: the next colour of a fixed palette
};

struct ChartOptions {
  std::string title, x_label, y_label;
  bool x_log = false, y_log = false;      // log10 axes; non-positive values are skipped
  std::vector<std::string> x_categories;  // non-empty: categorical x axis; x values are indices
  int width = 640, height = 320;          // SVG user units; clamped to [160, 4000] x [120, 4000]
};

// An <svg> element (no XML prolog), ready to embed in HTML. A legend is drawn
// when there is more than one series.
std::string render_svg_chart(const ChartOptions& options, const std::vector<Series>& series);

}  // namespace kennel::report

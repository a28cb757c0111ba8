// Charts as PNG images, for people who want a picture rather than a page
// (`kennel debug --plot loss.png`): the same Series/ChartOptions as the SVG
// charts, drawn with OpenCV onto a white canvas (linear or log10 axes with
// the SVG charts' ticks, a legend, NaN/inf points skipped). Several charts
// stack vertically into one image. Thread-safety: pure functions.
#pragma once

#include <filesystem>
#include <utility>
#include <vector>

#include "kennel/report/svg_chart.h"
#include "kennel/util/status.h"

namespace kennel::report {

using Chart = std::pair<ChartOptions, std::vector<Series>>;

// Encodes the charts (top to bottom) as PNG bytes.
std::vector<unsigned char> render_png_charts(const std::vector<Chart>& charts);

// render_png_charts written atomically to `path`.
Status write_png_charts(const std::filesystem::path& path, const std::vector<Chart>& charts);

}  // namespace kennel::report

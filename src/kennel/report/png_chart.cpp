#include "kennel/report/png_chart.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "kennel/report/detail/axis.h"
#include "kennel/util/fs.h"

namespace kennel::report {

namespace {

// The SVG charts' Tableau 10 palette, as BGR.
const cv::Scalar kPngPalette[] = {{167, 121, 78}, {43, 142, 242}, {89, 87, 225},  {178, 183, 118}, {79, 161, 89},
                               {72, 201, 237}, {161, 122, 176}, {167, 157, 255}, {95, 117, 156}, {172, 176, 186}};
const cv::Scalar kInk{40, 40, 40}, kGrid{225, 225, 225}, kWhite{255, 255, 255};
constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;
constexpr double kTextScale = 0.4;

cv::Scalar color_of(const Series& series, size_t index) {
  const std::string& css = series.color;
  if (css.size() == 7 && css[0] == '#') {
    char* end = nullptr;
    const long rgb = std::strtol(css.c_str() + 1, &end, 16);
    if (end == css.c_str() + 7) return {double(rgb & 0xff), double((rgb >> 8) & 0xff), double((rgb >> 16) & 0xff)};
  }
  return kPngPalette[index % (sizeof(kPngPalette) / sizeof(kPngPalette[0]))];
}

void put_text(cv::Mat& image, const std::string& text, cv::Point at, double scale = kTextScale,
              const cv::Scalar& color = kInk) {
  cv::putText(image, text, at, kFont, scale, color, 1, cv::LINE_AA);
}

int png_text_width(const std::string& text, double scale = kTextScale) {
  int baseline = 0;
  return cv::getTextSize(text, kFont, scale, 1, &baseline).width;
}

detail::Axis axis_for(const std::vector<double>& values, bool log) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (double v : values) {
    if (!std::isfinite(v) || (log && v <= 0)) continue;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  if (!(lo <= hi)) return log ? detail::make_log_axis(1, 10) : detail::make_linear_axis(0, 1);  // nothing to place
  return log ? detail::make_log_axis(lo, hi) : detail::make_linear_axis(lo, hi);
}

cv::Mat render_chart(const ChartOptions& options, const std::vector<Series>& series) {
  const int width = std::clamp(options.width, 160, 4000), height = std::clamp(options.height, 120, 4000);
  cv::Mat image(height, width, CV_8UC3, kWhite);
  std::vector<double> xs, ys;
  for (const auto& s : series) {
    const size_t n = std::min(s.x.size(), s.y.size());
    xs.insert(xs.end(), s.x.begin(), s.x.begin() + static_cast<std::ptrdiff_t>(n));
    ys.insert(ys.end(), s.y.begin(), s.y.begin() + static_cast<std::ptrdiff_t>(n));
  }
  const detail::Axis x_axis = axis_for(xs, options.x_log), y_axis = axis_for(ys, options.y_log);
  int label_width = 0;
  for (const auto& tick : y_axis.ticks) label_width = std::max(label_width, png_text_width(tick.label));
  const int left = 24 + label_width, top = 30, right = width - 16, bottom = height - 40;
  put_text(image, options.title, {left, 18}, 0.5);
  auto px = [&](double x) { return left + static_cast<int>(std::lround(x_axis.fraction(x) * (right - left))); };
  auto py = [&](double y) { return bottom - static_cast<int>(std::lround(y_axis.fraction(y) * (bottom - top))); };
  for (const auto& tick : y_axis.ticks) {
    const int y = bottom - static_cast<int>(std::lround((tick.position - y_axis.lo) / (y_axis.hi - y_axis.lo) *
                                                        (bottom - top)));
    cv::line(image, {left, y}, {right, y}, kGrid, 1);
    put_text(image, tick.label, {left - 6 - png_text_width(tick.label), y + 4});
  }
  for (const auto& tick : x_axis.ticks) {
    const int x = left + static_cast<int>(std::lround((tick.position - x_axis.lo) / (x_axis.hi - x_axis.lo) *
                                                      (right - left)));
    cv::line(image, {x, bottom}, {x, bottom + 4}, kInk, 1);
    put_text(image, tick.label, {x - png_text_width(tick.label) / 2, bottom + 16});
  }
  cv::rectangle(image, {left, top}, {right, bottom}, kInk, 1);
  put_text(image, options.x_label, {(left + right - png_text_width(options.x_label)) / 2, height - 8});
  put_text(image, options.y_label, {4, top - 6});

  bool drew = false;
  for (size_t i = 0; i < series.size(); ++i) {
    const Series& s = series[i];
    const cv::Scalar color = color_of(s, i);
    std::optional<cv::Point> previous;
    const size_t n = std::min(s.x.size(), s.y.size());
    for (size_t k = 0; k < n; ++k) {
      if (!x_axis.accepts(s.x[k]) || !y_axis.accepts(s.y[k])) {
        previous.reset();  // a gap, as in the SVG charts
        continue;
      }
      const cv::Point point{px(s.x[k]), py(s.y[k])};
      if (s.style == Series::Style::kPoints || n == 1) {
        cv::circle(image, point, 3, color, cv::FILLED, cv::LINE_AA);
      } else if (previous) {
        if (s.style == Series::Style::kStepLine) {
          cv::line(image, *previous, {point.x, previous->y}, color, 2, cv::LINE_AA);
          cv::line(image, {point.x, previous->y}, point, color, 2, cv::LINE_AA);
        } else {
          cv::line(image, *previous, point, color, 2, cv::LINE_AA);
        }
      }
      previous = point;
      drew = true;
    }
  }
  if (!drew) put_text(image, "no data", {(left + right) / 2 - 24, (top + bottom) / 2}, 0.5);
  if (series.size() > 1) {
    int x = left + 8;
    for (size_t i = 0; i < series.size(); ++i) {
      const int w = png_text_width(series[i].name) + 24;
      if (x + w > right) break;  // the legend never spills over the plot's edge
      cv::rectangle(image, {x, top + 6}, {x + 10, top + 16}, color_of(series[i], i), cv::FILLED);
      put_text(image, series[i].name, {x + 14, top + 15});
      x += w;
    }
  }
  return image;
}

}  // namespace

std::vector<unsigned char> render_png_charts(const std::vector<Chart>& charts) {
  std::vector<cv::Mat> images;
  for (const auto& [options, series] : charts) images.push_back(render_chart(options, series));
  if (images.empty()) images.push_back(render_chart(ChartOptions{}, {}));
  int width = 0;
  for (const auto& image : images) width = std::max(width, image.cols);
  for (auto& image : images) {
    if (image.cols < width) cv::copyMakeBorder(image, image, 0, 0, 0, width - image.cols, cv::BORDER_CONSTANT, kWhite);
  }
  cv::Mat stacked;
  cv::vconcat(images, stacked);
  std::vector<unsigned char> png;
  cv::imencode(".png", stacked, png);
  return png;
}

Status write_png_charts(const std::filesystem::path& path, const std::vector<Chart>& charts) {
  const auto png = render_png_charts(charts);
  return write_file_atomic(path, std::string(png.begin(), png.end()));
}

}  // namespace kennel::report

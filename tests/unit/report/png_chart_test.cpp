#include "kennel/report/png_chart.h"

#include <limits>

#include <gtest/gtest.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

namespace kennel::report {
namespace {

Series line(std::string name, std::vector<double> x, std::vector<double> y, std::string color) {
  Series series;
  series.name = std::move(name);
  series.x = std::move(x);
  series.y = std::move(y);
  series.color = std::move(color);
  return series;
}

cv::Mat decode(const std::vector<unsigned char>& png) {
  return cv::imdecode(png, cv::IMREAD_COLOR);
}

int pixels_of(const cv::Mat& image, cv::Vec3b bgr) {
  int n = 0;
  for (auto it = image.begin<cv::Vec3b>(); it != image.end<cv::Vec3b>(); ++it) n += *it == bgr;
  return n;
}

TEST(PngChart, DrawsEachSeriesInItsColourAndStacksCharts) {
  ChartOptions options;
  options.title = "loss";
  const std::vector<Chart> charts = {
      {options, {line("train", {0, 1, 2, 3}, {2.0, 1.5, 1.0, 0.8}, "#ff0000"),
                 line("valid", {0, 3}, {2.1, 1.1}, "#0000ff")}},
      {options, {line("grad", {0, 10}, {1e-3, 1e-4}, "#00ff00")}}};
  const cv::Mat image = decode(render_png_charts(charts));
  ASSERT_FALSE(image.empty());
  EXPECT_EQ(image.cols, 640);
  EXPECT_EQ(image.rows, 2 * 320);
  EXPECT_GT(pixels_of(image, {0, 0, 255}), 50);  // red train line (BGR)
  EXPECT_GT(pixels_of(image, {255, 0, 0}), 20);  // blue valid line
  EXPECT_GT(pixels_of(image(cv::Rect(0, 320, 640, 320)), {0, 255, 0}), 20);  // green, in the second chart
}

TEST(PngChart, BadValuesAreSkippedNotDrawn) {
  constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  constexpr double kInf = std::numeric_limits<double>::infinity();
  ChartOptions options;
  options.y_log = true;
  const cv::Mat image = decode(
      render_png_charts({{options, {line("bad", {0, 1, 2, 3}, {kNaN, kInf, -1, 0}, "#ff0000")}}}));
  ASSERT_FALSE(image.empty());
  EXPECT_EQ(pixels_of(image, {0, 0, 255}), 0);
  const cv::Mat empty = decode(render_png_charts({}));
  EXPECT_FALSE(empty.empty());
}

}  // namespace
}  // namespace kennel::report

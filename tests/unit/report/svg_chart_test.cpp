#include "kennel/report/svg_chart.h"

#include <cmath>
#include <limits>
#include <random>

#include <gtest/gtest.h>

#include "kennel/report/detail/axis.h"
#include "unit/report/markup_check.h"

namespace kennel::report {
namespace {

using testing::count_occurrences;
using testing::markup_error;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

Series line(std::string name, std::vector<double> x, std::vector<double> y) {
  Series series;
  series.name = std::move(name);
  series.x = std::move(x);
  series.y = std::move(y);
  return series;
}

// The chart is drawn and sane: well-formed, with no coordinate that came
// from a division by zero or a log of a non-positive number.
void expect_sane_svg(const std::string& svg) {
  EXPECT_EQ(markup_error(svg), "") << svg;
  EXPECT_EQ(count_occurrences(svg, "<svg"), 1u);
  EXPECT_EQ(count_occurrences(svg, "</svg>"), 1u);
  EXPECT_EQ(svg.find("nan"), std::string::npos) << svg;
  EXPECT_EQ(svg.find("inf"), std::string::npos) << svg;
}

// ---- html.h ----

TEST(HtmlEscapeTest, EscapesMarkupCharacters) {
  EXPECT_EQ(html_escape("<script>alert(\"x\" & 'y')</script>"),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;");
  EXPECT_EQ(html_escape("plain text"), "plain text");
}

TEST(HtmlEscapeTest, KeepsValidUtf8AndReplacesWhatXmlForbids) {
  EXPECT_EQ(html_escape("caf\xC3\xA9 \xE2\x86\x92 \xF0\x9F\x90\x95"),
            "caf\xC3\xA9 \xE2\x86\x92 \xF0\x9F\x90\x95");
  EXPECT_EQ(html_escape("tab\tnew\nline"), "tab\tnew\nline");
  const std::string replacement = "\xEF\xBF\xBD";
  EXPECT_EQ(html_escape(std::string("a\x01"
                                    "b",
                                    3)),
            "a" + replacement + "b");
  EXPECT_EQ(html_escape("bad \xC3"), "bad " + replacement);       // truncated sequence
  EXPECT_EQ(html_escape("\xC0\xAF"), replacement + replacement);  // overlong '/'
  EXPECT_EQ(html_escape("\xED\xA0\x80"), replacement + replacement + replacement);  // surrogate
  EXPECT_EQ(html_escape("\xEF\xBF\xBF"), replacement + replacement + replacement);  // U+FFFF
}

TEST(HtmlTableTest, EscapesCellsPadsRowsAndMarksNumbers) {
  const std::string table =
      html_table({"name", "value", "note"}, {{"<b>", "0.5"}, {"x", "-3", "a & b"}});
  EXPECT_NE(table.find("<th>name</th>"), std::string::npos);
  EXPECT_NE(table.find("<td>&lt;b&gt;</td>"), std::string::npos);
  EXPECT_EQ(table.find("<b>"), std::string::npos);
  EXPECT_NE(table.find("<td class=\"num\">0.5</td><td></td>"), std::string::npos);  // padded
  EXPECT_NE(table.find("<td class=\"num\">-3</td>"), std::string::npos);
  EXPECT_NE(table.find("<td>a &amp; b</td>"), std::string::npos);
  EXPECT_EQ(markup_error(table), "");
}

TEST(HtmlPageTest, IsACompleteSelfContainedDocument) {
  const std::string page = html_page("Study <1>", "<p>body</p>");
  EXPECT_EQ(page.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(page.find("<title>Study &lt;1&gt;</title>"), std::string::npos);
  EXPECT_NE(page.find("<style>"), std::string::npos);
  EXPECT_NE(page.find("<p>body</p>"), std::string::npos);
  EXPECT_EQ(page.find("http://"), std::string::npos);  // nothing fetched from anywhere
  EXPECT_EQ(page.find("<script"), std::string::npos);
  EXPECT_EQ(markup_error(page, {"meta"}), "");
}

// ---- detail/axis.h ----

// The step between ticks is 1, 2 or 5 times a power of ten.
bool is_one_two_five(double step) {
  const double mantissa = step / std::pow(10.0, std::floor(std::log10(step) + 1e-9));
  return std::abs(mantissa - 1) < 1e-6 || std::abs(mantissa - 2) < 1e-6 ||
         std::abs(mantissa - 5) < 1e-6;
}

TEST(AxisTest, LinearTicksStepByOneTwoFiveAndCoverTheData) {
  std::mt19937 random(7);
  std::uniform_real_distribution<double> exponent(-6, 6), unit(-1, 1);
  for (int round = 0; round < 500; ++round) {
    const double scale = std::pow(10.0, exponent(random));
    double a = unit(random) * scale, b = unit(random) * scale;
    if (a > b) std::swap(a, b);
    const auto axis = detail::make_linear_axis(a, b, 5);
    ASSERT_GE(axis.ticks.size(), 2u) << a << " " << b;
    ASSERT_LE(axis.ticks.size(), 12u) << a << " " << b;
    EXPECT_LE(axis.lo, a);
    EXPECT_GE(axis.hi, b);
    EXPECT_DOUBLE_EQ(axis.ticks.front().position, axis.lo);
    EXPECT_DOUBLE_EQ(axis.ticks.back().position, axis.hi);
    const double step = axis.ticks[1].position - axis.ticks[0].position;
    EXPECT_TRUE(is_one_two_five(step)) << step << " for " << a << ".." << b;
  }
}

TEST(AxisTest, LinearLabelsAreRoundNumbers) {
  const auto axis = detail::make_linear_axis(0.13, 0.87, 5);
  std::vector<std::string> labels;
  for (const auto& tick : axis.ticks) labels.push_back(tick.label);
  EXPECT_EQ(labels, (std::vector<std::string>{"0.0", "0.2", "0.4", "0.6", "0.8", "1.0"}));
  EXPECT_EQ(detail::make_linear_axis(-1, 1, 4).ticks[2].label, "0.0");
  // Rounding noise of k * step never shows, nor does a negative zero.
  EXPECT_EQ(detail::format_tick(3 * 0.1, 0.1), "0.3");
  EXPECT_EQ(detail::format_tick(-0.0, 0.5), "0.0");
  EXPECT_EQ(detail::format_tick(-1e-17, 0.1), "0.0");
  EXPECT_EQ(detail::format_tick(40, 20), "40");
  EXPECT_EQ(detail::format_tick(3e6, 1e6), "3e+06");
}

TEST(AxisTest, DegenerateRangesGetAWidth) {
  for (double value : {0.0, 1.0, -3.5, 1e-300, 5e-324, 1e300, std::numeric_limits<double>::max()}) {
    const auto axis = detail::make_linear_axis(value, value, 5);
    EXPECT_GT(axis.hi, axis.lo) << value;
    EXPECT_TRUE(std::isfinite(axis.lo) && std::isfinite(axis.hi)) << value;
    EXPECT_LE(axis.lo, value);
    EXPECT_GE(axis.hi, value);
  }
  const auto log_axis = detail::make_log_axis(1.0, 1.0);
  EXPECT_GT(log_axis.hi, log_axis.lo);
}

TEST(AxisTest, LogTicksAreDecades) {
  const auto axis = detail::make_log_axis(0.0003, 0.07);
  ASSERT_TRUE(axis.log);
  std::vector<std::string> labels;
  std::vector<double> positions;
  for (const auto& tick : axis.ticks) {
    labels.push_back(tick.label);
    positions.push_back(tick.position);
  }
  EXPECT_EQ(labels, (std::vector<std::string>{"0.0001", "0.001", "0.01", "0.1"}));
  EXPECT_EQ(positions, (std::vector<double>{-4, -3, -2, -1}));
  EXPECT_NEAR(axis.fraction(0.001), 1.0 / 3.0, 1e-12);
}

TEST(AxisTest, WideLogRangesAreThinnedToAlignedDecades) {
  const auto axis = detail::make_log_axis(1e-30, 1e30);
  EXPECT_LE(axis.ticks.size(), 9u);
  ASSERT_GE(axis.ticks.size(), 2u);
  const double every = axis.ticks[1].position - axis.ticks[0].position;
  for (const auto& tick : axis.ticks) {
    EXPECT_EQ(std::fmod(tick.position, every), 0.0)
        << tick.position;  // 1e-30, 1e-22, ... not 1e-29
    EXPECT_DOUBLE_EQ(std::stod(tick.label), std::pow(10.0, tick.position)) << tick.label;
  }
}

TEST(AxisTest, CategoriesSitAtTheirIndices) {
  const auto axis = detail::make_category_axis({"16", "32", "64"});
  EXPECT_DOUBLE_EQ(axis.lo, -0.5);
  EXPECT_DOUBLE_EQ(axis.hi, 2.5);
  ASSERT_EQ(axis.ticks.size(), 3u);
  EXPECT_EQ(axis.ticks[1].label, "32");
  EXPECT_DOUBLE_EQ(axis.fraction(1), 0.5);
}

// ---- render_svg_chart ----

TEST(SvgChartTest, EscapesEveryPieceOfText) {
  ChartOptions options;
  options.title = "<title> & co";
  options.x_label = "x<";
  options.y_label = "\"y\"";
  Series evil = line("<script>alert(1)</script>", {1, 2}, {1, 2});
  evil.tooltips = {"<b>one</b>", "two & three"};
  evil.color = "red\"/><script>";
  const std::string svg = render_svg_chart(options, {evil, line("ok", {1, 2}, {2, 1})});
  EXPECT_EQ(svg.find("<script>"), std::string::npos);
  EXPECT_NE(svg.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(svg.find("<title>&lt;b&gt;one&lt;/b&gt;</title>"), std::string::npos);
  EXPECT_NE(svg.find("&lt;title&gt; &amp; co"), std::string::npos);
  expect_sane_svg(svg);
}

TEST(SvgChartTest, SaysNoDataWhenNothingCanBeDrawn) {
  ChartOptions options;
  options.title = "empty";
  for (const auto& series : std::vector<std::vector<Series>>{
           {},
           {line("none", {}, {})},
           {line("nan", {1, 2}, {kNaN, kInf})},
           {line("unpaired", {1, 2, 3}, {})},
       }) {
    const std::string svg = render_svg_chart(options, series);
    EXPECT_NE(svg.find(">no data<"), std::string::npos) << svg;
    expect_sane_svg(svg);
  }
  options.y_log = true;
  const std::string svg = render_svg_chart(options, {line("non-positive", {1, 2}, {0, -1})});
  EXPECT_NE(svg.find(">no data<"), std::string::npos);
}

TEST(SvgChartTest, OnePointAndEqualValuesGetASensibleRange) {
  ChartOptions options;
  for (const auto& series : std::vector<Series>{
           line("one", {3}, {0.5}),
           line("flat", {1, 2, 3}, {7, 7, 7}),
           line("zero", {0, 0}, {0, 0}),
           line("huge", {1, 2},
                {std::numeric_limits<double>::max(), -std::numeric_limits<double>::max()}),
           line("tiny", {5e-324, 5e-324}, {5e-324, 5e-324}),
       }) {
    const std::string svg = render_svg_chart(options, {series});
    EXPECT_EQ(svg.find("no data"), std::string::npos) << series.name;
    expect_sane_svg(svg);
  }
  // A lone point of a line is still visible.
  EXPECT_NE(render_svg_chart(options, {line("one", {3}, {0.5})}).find("<circle"),
            std::string::npos);
}

TEST(SvgChartTest, SkipsNonFiniteAndNonPositivePointsAndBreaksLinesThere) {
  ChartOptions options;
  const std::string svg =
      render_svg_chart(options, {line("gappy", {1, 2, 3, 4, 5}, {1, 2, kNaN, 4, 5})});
  EXPECT_EQ(count_occurrences(svg, "<path"), 2u);
  expect_sane_svg(svg);

  options.y_log = true;
  const std::string log_svg = render_svg_chart(options, {line("log", {1, 2, 3}, {0.01, -1, 10})});
  EXPECT_EQ(count_occurrences(log_svg, "<path"), 2u);    // each run is a lone point...
  EXPECT_EQ(count_occurrences(log_svg, "<circle"), 2u);  // ...drawn as a marker
  expect_sane_svg(log_svg);
}

TEST(SvgChartTest, ExtremeLogValuesStayFinite) {
  ChartOptions options;
  options.x_log = options.y_log = true;
  Series points = line("extremes", {5e-324, std::numeric_limits<double>::max()}, {1e-300, 1e300});
  points.style = Series::Style::kPoints;
  const std::string svg = render_svg_chart(options, {points});
  EXPECT_EQ(count_occurrences(svg, "<circle"), 2u);
  expect_sane_svg(svg);
}

// The number in attribute `name="..."` of the first match at or after `from`.
double attribute(const std::string& svg, const std::string& name, size_t from) {
  const size_t at = svg.find(" " + name + "=\"", from);
  return at == std::string::npos ? kNaN : std::stod(svg.substr(at + name.size() + 3));
}

TEST(SvgChartTest, MarkersAreKeptOffTheFrame) {
  // Points at the data's extremes would sit on the frame, half hidden, if the
  // axes ended exactly there.
  Series points = line("edges", {0, 1, 0.5}, {0, 1, 0.5});
  points.style = Series::Style::kPoints;
  const std::string svg = render_svg_chart(ChartOptions{}, {points});
  const size_t frame = svg.find("<rect");
  ASSERT_NE(frame, std::string::npos);
  const double left = attribute(svg, "x", frame), top = attribute(svg, "y", frame);
  const double right = left + attribute(svg, "width", frame),
               bottom = top + attribute(svg, "height", frame);
  size_t circles = 0;
  for (size_t at = svg.find("<circle"); at != std::string::npos;
       at = svg.find("<circle", at + 1), ++circles) {
    const double cx = attribute(svg, "cx", at), cy = attribute(svg, "cy", at),
                 r = attribute(svg, "r", at);
    EXPECT_GT(cx - r, left);
    EXPECT_LT(cx + r, right);
    EXPECT_GT(cy - r, top);
    EXPECT_LT(cy + r, bottom);
  }
  EXPECT_EQ(circles, 3u);
  expect_sane_svg(svg);
}

TEST(SvgChartTest, LogAxisLabelsAreDecades) {
  ChartOptions options;
  options.x_log = true;
  Series points = line("lr", {0.0002, 0.003, 0.05}, {0.5, 0.6, 0.4});
  points.style = Series::Style::kPoints;
  const std::string svg = render_svg_chart(options, {points});
  for (const char* decade : {">0.0001<", ">0.001<", ">0.01<", ">0.1<"}) {
    EXPECT_NE(svg.find(decade), std::string::npos) << decade;
  }
  EXPECT_EQ(svg.find(">0.005<"), std::string::npos);
  EXPECT_EQ(count_occurrences(svg, "<circle"), 3u);
  expect_sane_svg(svg);
}

TEST(SvgChartTest, CategoricalAxisLabelsCategoriesAndDropsOutOfRangeIndices) {
  ChartOptions options;
  options.x_categories = {"adam", "sgd"};
  Series points = line("opt", {0, 1, 2, -1}, {0.3, 0.4, 0.5, 0.6});
  points.style = Series::Style::kPoints;
  const std::string svg = render_svg_chart(options, {points});
  EXPECT_NE(svg.find(">adam<"), std::string::npos);
  EXPECT_NE(svg.find(">sgd<"), std::string::npos);
  EXPECT_EQ(count_occurrences(svg, "<circle"), 2u);
  expect_sane_svg(svg);
}

TEST(SvgChartTest, LegendOnlyWithSeveralSeries) {
  ChartOptions options;
  const std::string one = render_svg_chart(options, {line("alpha", {1, 2}, {1, 2})});
  EXPECT_EQ(one.find("class=\"legend\""), std::string::npos);
  const std::string two =
      render_svg_chart(options, {line("alpha", {1, 2}, {1, 2}), line("beta", {1, 2}, {2, 1})});
  EXPECT_NE(two.find("class=\"legend\""), std::string::npos);
  EXPECT_NE(two.find(">alpha</text>"), std::string::npos);
  EXPECT_NE(two.find(">beta</text>"), std::string::npos);
  expect_sane_svg(two);
}

TEST(SvgChartTest, StepLinesHoldEachValueUntilTheNextX) {
  Series best = line("best", {0, 1, 2}, {1, 3, 3});
  best.style = Series::Style::kStepLine;
  const std::string svg = render_svg_chart(ChartOptions{}, {best});
  EXPECT_NE(svg.find(" H"), std::string::npos);
  EXPECT_NE(svg.find(" V"), std::string::npos);
  expect_sane_svg(svg);
}

TEST(SvgChartTest, TinySizesAreClamped) {
  ChartOptions options;
  options.width = -5;
  options.height = 0;
  const std::string svg = render_svg_chart(options, {line("a", {1, 2}, {1, 2})});
  EXPECT_NE(svg.find("width=\"160\""), std::string::npos);
  EXPECT_NE(svg.find("height=\"120\""), std::string::npos);
  expect_sane_svg(svg);
}

}  // namespace
}  // namespace kennel::report

#include "kennel/report/tuning_report.h"

#include <algorithm>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "unit/report/markup_check.h"

namespace kennel::report {
namespace {

using nlohmann::json;
using testing::count_occurrences;
using testing::markup_error;
using testing::svg_elements;

json trial(int index, const std::string& status, json objective, double lr, json batch_size,
           bool early = false) {
  return {{"index", index},
          {"name", fmt::format("fashion-tune-{:03d}", index)},
          {"status", status},
          {"objective", objective},
          {"hyperparameters", {{"lr", lr}, {"batch_size", batch_size}, {"epochs", 2 + index}}},
          {"started_at", 1764050000.0 + 60 * index},
          {"ended_at", 1764050030.5 + 60 * index},
          {"epochs_run", early ? 1 : 2 + index},
          {"reason", status == "Failed" ? "CUDA out of memory" : ""},
          {"early_stopped", early}};
}

json sample_study() {
  return {
      {"name", "fashion-tune"},
      {"status", "Completed"},
      {"strategy", "bayesian"},
      {"early_stopping", "median"},
      {"objective", {{"metric", "valid_accuracy"}, {"goal", "maximize"}, {"at", "final"}}},
      {"parameters",
       {{"lr", {{"type", "continuous"}, {"scale", "log"}, {"min", 0.0001}, {"max", 0.1}}},
        {"batch_size", {{"type", "categorical"}, {"choices", {16, 32, 64}}}},
        {"epochs", {{"type", "integer"}, {"scale", "linear"}, {"min", 2}, {"max", 10}}}}},
      {"trials",
       {trial(0, "Completed", 0.51, 0.003, 32), trial(1, "Completed", 0.44, 0.05, 64),
        trial(2, "Failed", nullptr, 0.09, 16), trial(3, "Completed", 0.62, 0.0004, 16),
        trial(4, "Stopped", 0.30, 0.0002, 64, /*early=*/true)}},
      {"best",
       {{"name", "fashion-tune-003"},
        {"objective", 0.62},
        {"curve",
         {{{"epoch", 0}, {"train_loss", 1.2}, {"valid_loss", 1.1}, {"valid_accuracy", 0.4}},
          {{"epoch", 1}, {"train_loss", 0.9}, {"valid_loss", 0.95}, {"valid_accuracy", 0.55}},
          {{"epoch", 2}, {"train_loss", 0.7}, {"valid_loss", 0.9}, {"valid_accuracy", 0.62}}}}}}};
}

// The first cell of each table body row, top to bottom.
std::vector<std::string> table_trial_column(const std::string& html) {
  std::vector<std::string> names;
  const size_t body = html.find("<tbody>");
  if (body == std::string::npos) return names;
  for (size_t at = html.find("<tr><td>", body); at != std::string::npos;
       at = html.find("<tr><td>", at + 1)) {
    const size_t start = at + 8;
    names.push_back(html.substr(start, html.find("</td>", start) - start));
  }
  return names;
}

void expect_well_formed(const std::string& html) {
  EXPECT_EQ(markup_error(html, {"meta"}), "");
  const auto svgs = svg_elements(html);
  EXPECT_EQ(count_occurrences(html, "<svg"), count_occurrences(html, "</svg>"));
  for (const auto& svg : svgs) EXPECT_EQ(markup_error(svg), "") << svg;
  EXPECT_EQ(html.find(">nan<"), std::string::npos);
}

TEST(TuningReportTest, SummarisesTheStudyAndItsBestTrial) {
  const std::string html = render_tuning_report(sample_study());
  EXPECT_NE(html.find("<title>Tuning study fashion-tune</title>"), std::string::npos);
  EXPECT_NE(html.find("<dd>bayesian</dd>"), std::string::npos);
  EXPECT_NE(html.find("<dd>median</dd>"), std::string::npos);
  EXPECT_NE(html.find("valid_accuracy (maximize, taken at the final epoch)"), std::string::npos);
  EXPECT_NE(html.find("<dd>5: 3 Completed, 1 Stopped (early), 1 Failed</dd>"), std::string::npos);
  EXPECT_NE(html.find("<dd>fashion-tune-003</dd>"), std::string::npos);
  EXPECT_NE(html.find("<dd>0.62</dd>"), std::string::npos);
  // Looked up from the trial, since "best" carries no hyperparameters here.
  EXPECT_NE(html.find("<dd>batch_size=16, epochs=5, lr=0.0004</dd>"), std::string::npos);
  expect_well_formed(html);
}

TEST(TuningReportTest, DrawsTimeParameterAndLearningCurveCharts) {
  const std::string html = render_tuning_report(sample_study());
  // 1 over time + 3 parameters + losses + other metrics.
  EXPECT_EQ(svg_elements(html).size(), 6u);
  for (const char* title :
       {">Objective per trial over time<", ">lr vs objective<", ">batch_size vs objective<",
        ">epochs vs objective<", ">fashion-tune-003: loss<", ">fashion-tune-003: metrics<"}) {
    EXPECT_NE(html.find(title), std::string::npos) << title;
  }
  EXPECT_NE(html.find(">minutes since the first trial started<"), std::string::npos);
  EXPECT_NE(html.find(">best so far</text>"), std::string::npos);
  EXPECT_NE(html.find(">lr (log scale)<"), std::string::npos);
  EXPECT_NE(html.find(">0.001<"), std::string::npos);  // a decade on the lr axis
  EXPECT_NE(html.find(">train_loss</text>"), std::string::npos);
  EXPECT_NE(html.find(">valid_accuracy</text>"), std::string::npos);
  // Tooltips name the trial; the failed trial has no objective and no point.
  EXPECT_NE(html.find("<title>fashion-tune-003 \u2014 Completed"), std::string::npos);
  EXPECT_EQ(html.find("<title>fashion-tune-002"), std::string::npos);
}

// Regression: the best trial's "metrics" chart plotted metrics.jsonl's `time` (Unix seconds,
// ~1.8e9) on the accuracies' axis, which flattened every accuracy to a line at 0.
TEST(TuningReportTest, LearningCurvesKeepTimestampsOutAndScalesApart) {
  json study = sample_study();
  json& curve = study["best"]["curve"];
  for (size_t i = 0; i < curve.size(); ++i) {
    curve[i]["time"] = 1.8e9 + 30.0 * i;
    curve[i]["images_per_second"] = 310.0 + i;
    curve[i]["train_accuracy"] = 0.3 + 0.1 * i;
  }
  const std::string html = render_tuning_report(study);
  std::string metrics_chart, throughput_chart;
  for (const auto& svg : svg_elements(html)) {
    if (svg.find(">fashion-tune-003: metrics<") != std::string::npos) metrics_chart = svg;
    if (svg.find(">fashion-tune-003: images_per_second<") != std::string::npos) throughput_chart = svg;
    EXPECT_EQ(svg.find(">time</text>"), std::string::npos) << "a timestamp was plotted";
  }
  ASSERT_FALSE(metrics_chart.empty());
  EXPECT_NE(metrics_chart.find(">valid_accuracy</text>"), std::string::npos);
  EXPECT_NE(metrics_chart.find(">train_accuracy</text>"), std::string::npos);
  EXPECT_EQ(metrics_chart.find("images_per_second"), std::string::npos);
  // The accuracies' axis spans accuracies: no tick anywhere near 1e9 or even 2.
  EXPECT_EQ(metrics_chart.find("e+09"), std::string::npos);
  EXPECT_EQ(metrics_chart.find(">300<"), std::string::npos);
  ASSERT_FALSE(throughput_chart.empty());
  expect_well_formed(html);
}

TEST(TuningReportTest, CategoricalParametersUseTheirChoicesAsTheAxis) {
  json study = sample_study();
  study["parameters"]["optimizer"] = {{"type", "categorical"}, {"choices", {"adam", "sgd"}}};
  study["trials"][0]["hyperparameters"]["optimizer"] = "sgd";
  study["trials"][1]["hyperparameters"]["optimizer"] =
      "rmsprop";                                               // outside the choices: still placed
  study["trials"][3]["hyperparameters"]["batch_size"] = 16.0;  // a float equal to a choice
  const std::string html = render_tuning_report(study);
  const auto svgs = svg_elements(html);
  const auto chart = std::find_if(svgs.begin(), svgs.end(), [](const std::string& svg) {
    return svg.find(">optimizer vs objective<") != std::string::npos;
  });
  ASSERT_NE(chart, svgs.end());
  for (const char* label : {">adam<", ">sgd<", ">rmsprop<"})
    EXPECT_NE(chart->find(label), std::string::npos);
  const auto batch = std::find_if(svgs.begin(), svgs.end(), [](const std::string& svg) {
    return svg.find(">batch_size vs objective<") != std::string::npos;
  });
  ASSERT_NE(batch, svgs.end());
  EXPECT_EQ(batch->find(">16.0<"), std::string::npos);  // matched the choice 16, no new category
  expect_well_formed(html);
}

TEST(TuningReportTest, TableListsTheBestTrialFirstForEitherGoal) {
  json study = sample_study();
  const std::string maximized = render_tuning_report(study);
  // Stopped early ranks after every completed trial even with a better value
  // for minimisation; the failed trial (no objective) is always last.
  EXPECT_EQ(table_trial_column(maximized),
            (std::vector<std::string>{"fashion-tune-003", "fashion-tune-000", "fashion-tune-001",
                                      "fashion-tune-004", "fashion-tune-002"}));
  // nlohmann::json objects keep keys sorted, so parameters come alphabetically.
  EXPECT_NE(maximized.find(
                "<th>trial</th><th>status</th><th>objective</th><th>batch_size</th><th>epochs</th>"
                "<th>lr</th><th>epochs run</th><th>duration (s)</th><th>reason</th>"),
            std::string::npos);
  EXPECT_NE(maximized.find("<td class=\"num\">30.5</td><td>CUDA out of memory</td>"),
            std::string::npos);

  study["objective"]["goal"] = "minimize";
  study["best"] = nullptr;
  EXPECT_EQ(table_trial_column(render_tuning_report(study)),
            (std::vector<std::string>{"fashion-tune-001", "fashion-tune-000", "fashion-tune-003",
                                      "fashion-tune-004", "fashion-tune-002"}));
}

TEST(TuningReportTest, MissingGoalFollowsTheMetricName) {
  json study = sample_study();
  study["objective"] = {{"metric", "valid_loss"}};
  EXPECT_EQ(table_trial_column(render_tuning_report(study)).front(), "fashion-tune-001");
  study["objective"] = {{"metric", "valid_accuracy"}};
  EXPECT_EQ(table_trial_column(render_tuning_report(study)).front(), "fashion-tune-003");
}

TEST(TuningReportTest, AllTrialsFailedAndNoBestStillRenders) {
  json study = sample_study();
  study["status"] = "Failed";
  for (auto& entry : study["trials"]) {
    entry["status"] = "Failed";
    entry["objective"] = nullptr;
    entry["early_stopped"] = false;
  }
  study["best"] = nullptr;
  std::string html;
  ASSERT_NO_THROW(html = render_tuning_report(study));
  EXPECT_NE(html.find("<dd>5: 5 Failed</dd>"), std::string::npos);
  EXPECT_NE(html.find("none: no trial produced an objective"), std::string::npos);
  EXPECT_NE(html.find(">no data<"), std::string::npos);
  EXPECT_NE(html.find("No learning curve was recorded"), std::string::npos);
  EXPECT_EQ(table_trial_column(html).size(), 5u);
  expect_well_formed(html);
}

TEST(TuningReportTest, MalformedInputNeverThrows) {
  const std::vector<json> inputs = {
      json(),
      json::array(),
      json(42),
      json::object(),
      json{{"trials", "not a list"}, {"parameters", {1, 2}}, {"best", "nobody"}, {"objective", 3}},
      json{{"trials",
            {nullptr,
             7,
             json::object(),
             {{"objective", "high"}, {"hyperparameters", {{"lr", "fast"}}}}}},
           {"best", {{"curve", {nullptr, {{"epoch", "one"}}, {{"loss", true}}}}}}},
      json{
          {"trials",
           {{{"name", "no-times"},
             {"status", "Completed"},
             {"objective", 1.5},
             {"hyperparameters", {{"depth", 3}}}}}},
          {"best", {{"name", "no-times"}, {"objective", 1.5}, {"curve", {{{"valid_loss", 0.5}}}}}}},
  };
  for (const auto& input : inputs) {
    std::string html;
    ASSERT_NO_THROW(html = render_tuning_report(input)) << input.dump();
    expect_well_formed(html);
  }
  // Without timestamps the time chart falls back to trial order.
  const std::string html = render_tuning_report(inputs.back());
  EXPECT_NE(html.find(">trial</text>"), std::string::npos);
  EXPECT_NE(html.find(">depth vs objective<"),
            std::string::npos);  // undeclared parameters are charted too
}

TEST(TuningReportTest, EscapesNamesFromTheStudy) {
  json study = sample_study();
  study["name"] = "<script>alert(1)</script>";
  study["trials"][0]["name"] = "<img src=x onerror=alert(1)>";
  study["trials"][0]["reason"] = "a & b";
  const std::string html = render_tuning_report(study);
  EXPECT_EQ(html.find("<script>"), std::string::npos);
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  expect_well_formed(html);
}

}  // namespace
}  // namespace kennel::report

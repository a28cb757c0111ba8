#include "kennel/profile/profile_report.h"

#include <cmath>
#include <limits>
#include <regex>

#include <gtest/gtest.h>

#include "kennel/profile/profiler_rules.h"
#include "unit/report/markup_check.h"

namespace kennel::profile {
namespace {

using nlohmann::json;
using report::testing::count_occurrences;
using report::testing::markup_error;
using report::testing::svg_elements;


// A GPU job: 1200 one-second samples, 100 steps of 100 ms (60% waiting for
// data) with steps 50 and 80 taking a second.
ProfileData sample_job(int cores = 4, bool gpu = true) {
  ProfileData data;
  data.job = "fashion-profile";
  data.device = gpu ? "cuda:0" : "cpu";
  data.cores = cores;
  data.decode_threads = 1;
  data.compute_threads = 3;
  data.job_start = 10000;
  data.first_step_start = 10060;
  data.loop_end = 11000;
  data.job_end = 11030;
  for (int i = 0; i < 1200; ++i) {
    SystemSample sample;
    sample.time = 10000 + i;
    sample.interval = 1;
    for (int core = 0; core < cores; ++core) sample.cpu_per_core.push_back(20 + core);
    sample.cpu = i < 600 ? 40 : 60;
    sample.iowait = 2;
    sample.process_cpu = 150;
    sample.process_rss = 3 * kGiB;
    sample.memory_used = 16 * kGiB;
    sample.memory_available = 48 * kGiB;
    sample.disk_read = 10 * 1024 * 1024;
    if (gpu) {
      GpuSample device;
      device.index = 0;
      device.name = "Test GPU";
      device.utilization = 50;
      device.memory_used = 4 * kGiB;
      device.memory_total = 16 * kGiB;
      sample.gpus.push_back(device);
    }
    data.system.push_back(sample);
  }
  for (int i = 0; i < 100; ++i) {
    StepTiming step;
    step.step = i;
    step.epoch = i / 50;
    step.batch_size = 32;
    step.start = 10060 + i * 0.1;
    step.total = i == 50 || i == 80 ? 1.0 : 0.1;
    step.data = step.total * 0.6;
    step.copy = step.total * 0.05;
    step.forward = step.total * 0.15;
    step.backward = step.total * 0.15;
    step.optimizer = step.total * 0.05;
    data.steps.push_back(step);
  }
  return data;
}

json operators() {
  return json::array(
      {{{"name", "aten::conv2d"}, {"calls", 300}, {"self_ms", 120.5}, {"total_ms", 900.25}},
       {{"name", "aten::addmm"}, {"calls", 100}, {"self_ms", 30}, {"total_ms", 35}}});
}

json summary_of(const ProfileData& data, const json& top_operators = operators()) {
  return profile_summary_json(data, evaluate_profiler_rules(data), top_operators);
}

const json& usage_row(const json& summary, const std::string& metric) {
  for (const auto& row : summary["system_usage"]) {
    if (row["metric"] == metric) return row;
  }
  static const json kMissing;
  ADD_FAILURE() << "no system usage row " << metric;
  return kMissing;
}

void expect_well_formed(const std::string& html) {
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_EQ(markup_error(html, {"meta"}), "");
  EXPECT_EQ(count_occurrences(html, "<svg"), count_occurrences(html, "</svg>"));
  for (const auto& svg : svg_elements(html)) EXPECT_EQ(markup_error(svg), "") << svg;
  EXPECT_FALSE(std::regex_search(html, std::regex("\\b(nan|inf)\\b")))
      << "a non-finite number was printed";
  EXPECT_EQ(html.find("<script"), std::string::npos);
  // Nothing loaded from elsewhere (the SVG namespace URI is a name, not a fetch).
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(html.find(" src=\""), std::string::npos);
  EXPECT_EQ(html.find("url("), std::string::npos);
}

const char* const kSectionTitles[] = {
    "<h2>Job summary</h2>",    "<h2>System usage</h2>",  "<h2>Utilisation over time</h2>",
    "<h2>Step durations</h2>", "<h2>Time by phase</h2>", "<h2>Top operators</h2>",
    "<h2>Rules</h2>"};

// ---- The summary. ----

TEST(ProfileSummaryTest, TimesTheJobsParts) {
  const json summary = summary_of(sample_job());
  const json& job = summary["job"];
  EXPECT_EQ(job["name"], "fashion-profile");
  EXPECT_EQ(job["device"], "cuda:0");
  EXPECT_DOUBLE_EQ(job["init_seconds"].get<double>(), 60);
  EXPECT_DOUBLE_EQ(job["loop_seconds"].get<double>(), 940);
  EXPECT_DOUBLE_EQ(job["finalisation_seconds"].get<double>(), 30);
  EXPECT_DOUBLE_EQ(job["total_seconds"].get<double>(), 1030);
  EXPECT_EQ(job["steps"], 100);
  EXPECT_EQ(job["system_samples"], 1200);
  EXPECT_EQ(job["gpus"], json::array({"GPU 0: Test GPU"}));
  EXPECT_EQ(job["rules"], 11);
  EXPECT_NE(std::find(job["rules_triggered"].begin(), job["rules_triggered"].end(),
                      "DataloaderBottleneck"),
            job["rules_triggered"].end());
}

TEST(ProfileSummaryTest, TabulatesSystemUsageWithPercentiles) {
  const json summary = summary_of(sample_job());
  for (const char* metric : {"cpu", "iowait", "process_cpu", "process_rss", "memory_used",
                             "disk_read", "disk_write", "net_receive", "net_transmit",
                             "gpu0_utilization", "gpu0_memory_used", "gpu0_memory_percent"}) {
    const json& row = usage_row(summary, metric);
    EXPECT_EQ(row["count"], 1200) << metric;
    for (const char* key : {"unit", "min", "p50", "p95", "p99", "max"})
      EXPECT_TRUE(row.contains(key)) << metric << key;
  }
  const json& cpu = usage_row(summary, "cpu");
  EXPECT_DOUBLE_EQ(cpu["min"].get<double>(), 40);
  EXPECT_DOUBLE_EQ(cpu["p50"].get<double>(), 50);  // interpolated between the halves
  EXPECT_DOUBLE_EQ(cpu["p95"].get<double>(), 60);
  EXPECT_DOUBLE_EQ(usage_row(summary, "process_rss")["p50"].get<double>(), 3072);  // MiB
  EXPECT_DOUBLE_EQ(usage_row(summary, "memory_used")["max"].get<double>(), 16);    // GiB
  EXPECT_DOUBLE_EQ(usage_row(summary, "disk_read")["p99"].get<double>(), 10);      // MiB/s
  EXPECT_DOUBLE_EQ(usage_row(summary, "gpu0_memory_percent")["p50"].get<double>(), 25);
}

TEST(ProfileSummaryTest, DownsamplesUtilisationToAtMost500Points) {
  const json summary = summary_of(sample_job());
  const json& utilisation = summary["utilisation"];
  EXPECT_EQ(utilisation["samples"], 1200);
  EXPECT_EQ(utilisation["time"].size(), 500u);
  EXPECT_EQ(utilisation["cpu"].size(), 500u);
  EXPECT_EQ(utilisation["process_cpu"].size(), 500u);
  ASSERT_EQ(utilisation["per_core"].size(), 4u);
  EXPECT_EQ(utilisation["per_core"][3].size(), 500u);
  EXPECT_DOUBLE_EQ(utilisation["per_core"][3][0].get<double>(), 23);
  ASSERT_EQ(utilisation["gpus"].size(), 1u);
  EXPECT_EQ(utilisation["gpus"][0]["utilization"].size(), 500u);
  EXPECT_DOUBLE_EQ(utilisation["process_cpu"][0].get<double>(),
                   37.5);  // 150% of one core on 4 cores
  EXPECT_DOUBLE_EQ(utilisation["cpu"][0].get<double>(), 40);
  EXPECT_DOUBLE_EQ(utilisation["cpu"][499].get<double>(), 60);
  EXPECT_LT(utilisation["time"][0].get<double>(), utilisation["time"][499].get<double>());

  ProfileData small = sample_job();
  small.system.resize(30);
  EXPECT_EQ(summary_of(small)["utilisation"]["time"].size(), 30u);  // nothing to thin out
  EXPECT_DOUBLE_EQ(summary_of(small)["utilisation"]["time"][29].get<double>(), 29);
}

TEST(ProfileSummaryTest, DescribesStepDurationsAndListsOutliers) {
  const json steps = summary_of(sample_job())["steps"];
  EXPECT_EQ(steps["count"], 97);  // StepOutlier's 3 warm-up steps left out
  EXPECT_EQ(steps["skipped"], 3);
  EXPECT_NEAR(steps["p50_ms"].get<double>(), 100, 1e-9);
  EXPECT_NEAR(steps["max_ms"].get<double>(), 1000, 1e-9);
  EXPECT_NEAR(steps["mean_ms"].get<double>(), (95 * 100.0 + 2 * 1000) / 97, 1e-9);
  EXPECT_GT(steps["std_ms"].get<double>(), 0);
  int64_t binned = 0;
  for (const auto& bin : steps["histogram"]) {
    EXPECT_LE(bin["from_ms"].get<double>(), bin["to_ms"].get<double>());
    binned += bin["count"].get<int64_t>();
  }
  EXPECT_EQ(binned, 97);
  EXPECT_EQ(steps["outlier_count"], 2);
  ASSERT_EQ(steps["outliers"].size(), 2u);
  EXPECT_EQ(steps["outliers"][0]["biggest_phase"], "data");
  EXPECT_NEAR(steps["outliers"][0]["total_ms"].get<double>(), 1000, 1e-9);
  EXPECT_NEAR(steps["outliers"][0]["data_ms"].get<double>(), 600, 1e-9);
}

TEST(ProfileSummaryTest, OutliersFollowTheStepOutlierRulesParameters) {
  const ProfileData data = sample_job();
  const auto rules =
      evaluate_profiler_rules(data, {{"StepOutlier", {{"skip_steps", 60}, {"stddev", 2}}}});
  const json steps = profile_summary_json(data, rules, json::array())["steps"];
  EXPECT_EQ(steps["skipped"], 60);
  EXPECT_EQ(steps["count"], 40);
  EXPECT_EQ(steps["outlier_stddev"], 2);
  ASSERT_EQ(steps["outliers"].size(), 1u);  // step 50 is in the warm-up now
  EXPECT_EQ(steps["outliers"][0]["step"], 80);
}

TEST(ProfileSummaryTest, SharesTimeByPhase) {
  const json summary = summary_of(sample_job());
  double share = 0;
  std::vector<std::string> names;
  for (const auto& phase : summary["phases"]) {
    names.push_back(phase["phase"]);
    share += phase["share"].get<double>();
  }
  EXPECT_EQ(names, (std::vector<std::string>{"data", "copy", "forward", "backward", "optimizer",
                                             "callbacks", "other"}));
  EXPECT_NEAR(share, 1, 1e-9);
  EXPECT_NEAR(summary["phases"][0]["share"].get<double>(), 0.6, 1e-9);
  EXPECT_NEAR(summary["phases"][0]["seconds"].get<double>(), (98 * 0.1 + 2 * 1.0) * 0.6, 1e-9);
  EXPECT_NEAR(summary["phases"][6]["share"].get<double>(), 0, 1e-9);
  EXPECT_EQ(summary["phase_series"]["step"].size(), 100u);
}

TEST(ProfileSummaryTest, ADataParallelJobShowsTheTimeSpentWaitingForTheOtherRanks) {
  ProfileData data = sample_job();
  for (auto& step : data.steps) {
    step.sync = step.optimizer;  // some of the step waited for the other rank
    step.optimizer = 0;
    step.rank_busy = {step.total * 0.8, step.total * 0.8};
  }
  const json summary = summary_of(data);
  std::vector<std::string> names;
  for (const auto& phase : summary["phases"]) names.push_back(phase["phase"]);
  EXPECT_EQ(names, (std::vector<std::string>{"data", "copy", "forward", "backward", "sync", "optimizer",
                                             "callbacks", "other"}));
  EXPECT_TRUE(summary["phase_series"].contains("sync_ms"));
  EXPECT_FALSE(summary_of(sample_job())["phase_series"].contains("sync_ms"));
}

TEST(ProfileSummaryTest, PassesOperatorsAndRulesThrough) {
  const ProfileData data = sample_job();
  const auto rules = evaluate_profiler_rules(data);
  const json summary = profile_summary_json(data, rules, operators());
  EXPECT_EQ(summary["top_operators"], operators());
  ASSERT_EQ(summary["rules"].size(), rules.size());
  EXPECT_EQ(summary["rules"][3], to_json(rules[3]));
  EXPECT_EQ(profile_summary_json(data, rules, json("not a list"))["top_operators"], json::array());
}

TEST(ProfileSummaryTest, EmptyAndOddDataGiveNullsNotNaN) {
  const json empty = profile_summary_json(ProfileData{}, {}, json());
  EXPECT_TRUE(empty["job"]["init_seconds"].is_null());
  EXPECT_EQ(empty["steps"]["count"], 0);
  EXPECT_TRUE(empty["steps"]["mean_ms"].is_null());
  EXPECT_EQ(empty["utilisation"]["time"].size(), 0u);
  EXPECT_TRUE(usage_row(empty, "cpu")["p50"].is_null());

  ProfileData odd = sample_job();
  for (auto& sample : odd.system) sample.cpu = kNaN;
  odd.steps[10].total = kNaN;
  odd.steps[11].data = std::numeric_limits<double>::infinity();
  const json summary = summary_of(odd);
  EXPECT_TRUE(usage_row(summary, "cpu")["p50"].is_null());
  EXPECT_EQ(usage_row(summary, "cpu")["count"], 0);
  EXPECT_EQ(summary["steps"]["count"], 96);
  EXPECT_EQ(summary.dump().find("NaN"), std::string::npos);
  json parsed;
  EXPECT_NO_THROW(parsed = json::parse(summary.dump()));
  EXPECT_EQ(parsed["steps"]["count"], 96);
}

// ---- The page. ----

TEST(ProfileReportTest, HasEverySectionAndIsWellFormed) {
  const std::string html = render_profile_report(summary_of(sample_job()));
  for (const char* title : kSectionTitles) EXPECT_NE(html.find(title), std::string::npos) << title;
  expect_well_formed(html);
  EXPECT_NE(html.find("<title>Profile of fashion-profile</title>"), std::string::npos);
  EXPECT_NE(html.find("<dd>60.0 s (job start to the first step)</dd>"), std::string::npos);
  EXPECT_NE(html.find("<dd>15.7 min (940 s) (first step to the loop&#39;s end)</dd>"),
            std::string::npos);
  // Utilisation, per-core, GPU memory, histogram, step durations, phases.
  EXPECT_EQ(svg_elements(html).size(), 6u);
  for (const char* chart :
       {">CPU and GPU utilisation<", ">CPU per core (4 cores)<", ">GPU memory used<",
        ">Step duration histogram<", ">Step duration over the run<", ">Phase time per step<"}) {
    EXPECT_NE(html.find(chart), std::string::npos) << chart;
  }
  EXPECT_NE(html.find(">process CPU, % of 4 cores</text>"), std::string::npos);
  EXPECT_NE(html.find("<td>aten::conv2d</td><td class=\"num\">300</td>"), std::string::npos);
  EXPECT_NE(html.find("<td>data</td><td class=\"num\">7.08</td><td class=\"num\">60.0</td>"),
            std::string::npos);
}

TEST(ProfileReportTest, MarksTriggeredRulesAndShowsTheirAdvice) {
  const ProfileData data = sample_job();
  const auto rules = evaluate_profiler_rules(data);
  const std::string html = render_profile_report(profile_summary_json(data, rules, operators()));
  size_t triggered = 0;
  for (const auto& rule : rules) {
    triggered += rule.triggered ? 1 : 0;
    EXPECT_NE(html.find("<td><strong>" + rule.rule + "</strong></td>"), std::string::npos)
        << rule.rule;
  }
  ASSERT_GT(triggered, 0u);
  EXPECT_EQ(count_occurrences(html, "<tr class=\"triggered\""), triggered);
  EXPECT_NE(html.find(fmt::format("{} of {} rules triggered.", triggered, rules.size())),
            std::string::npos);
  EXPECT_NE(html.find("skip_steps=2, threshold_share=25"), std::string::npos);
  EXPECT_NE(html.find("raise the &#39;threads&#39; spec key or the loader workers"),
            std::string::npos);
}

TEST(ProfileReportTest, EscapesEverythingFromTheSummary) {
  ProfileData data = sample_job();
  data.job = "<script>alert('x')</script>";
  data.device = "cuda & <b>";
  json hostile_operators = json::array({{{"name", "<img src=x onerror=alert(1)>"}, {"calls", 1}}});
  std::vector<RuleResult> rules = evaluate_profiler_rules(data);
  rules[0].message = "</td></tr></table><script>bad()</script>";
  const std::string html =
      render_profile_report(profile_summary_json(data, rules, hostile_operators));
  expect_well_formed(html);
  EXPECT_NE(html.find("<title>Profile of &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</title>"),
            std::string::npos);
  EXPECT_NE(html.find("<dd>cuda &amp; &lt;b&gt;</dd>"), std::string::npos);
  EXPECT_NE(html.find("&lt;img src=x"), std::string::npos);
  EXPECT_EQ(html.find("<img"), std::string::npos);
}

TEST(ProfileReportTest, RendersEmptyDataWithEverySection) {
  const std::string html = render_profile_report(
      profile_summary_json(ProfileData{}, evaluate_profiler_rules(ProfileData{}), json()));
  for (const char* title : kSectionTitles) EXPECT_NE(html.find(title), std::string::npos) << title;
  expect_well_formed(html);
  EXPECT_NE(html.find("<title>Profile</title>"), std::string::npos);
  EXPECT_NE(html.find("No system samples were recorded"), std::string::npos);
  EXPECT_NE(html.find("No training steps were recorded."), std::string::npos);
  EXPECT_NE(html.find("No operator trace recorded"), std::string::npos);
  EXPECT_NE(html.find("0 of 11 rules triggered."), std::string::npos);
  EXPECT_EQ(html.find("<tr class=\"triggered\""), std::string::npos);
}

TEST(ProfileReportTest, SurvivesSummariesOfTheWrongShape) {
  for (const json& summary :
       {json(), json("text"), json::array({1, 2}), json::object(),
        json{{"job", 5},
             {"system_usage", "x"},
             {"utilisation", {{"time", {1, "a", nullptr}}, {"per_core", 3}}},
             {"steps", {{"count", 3}, {"histogram", {1, {{"from_ms", "a"}}}}, {"outliers", {7}}}},
             {"phases", {{{"phase", 1}, {"seconds", "x"}}}},
             {"top_operators", {1, nullptr}},
             {"rules", {1, {{"rule", 2}, {"triggered", "yes"}, {"parameters", {1, 2}}}}}}}) {
    std::string html;
    ASSERT_NO_THROW(html = render_profile_report(summary)) << summary.dump();
    for (const char* title : kSectionTitles)
      EXPECT_NE(html.find(title), std::string::npos) << title;
    expect_well_formed(html);
  }
}

TEST(ProfileReportTest, ASavedSummaryDrawsTheSamePage) {
  const json summary = summary_of(sample_job());
  EXPECT_EQ(render_profile_report(json::parse(summary.dump())), render_profile_report(summary));
}

TEST(ProfileReportTest, ManyCoresAreDrawnAsAnEnvelope) {
  const std::string html = render_profile_report(summary_of(sample_job(32)));
  expect_well_formed(html);
  EXPECT_NE(html.find(">CPU per core (32 cores)<"), std::string::npos);
  EXPECT_NE(html.find(">busiest core</text>"), std::string::npos);
  EXPECT_EQ(html.find(">core 31</text>"), std::string::npos);
}

TEST(ProfileReportTest, CpuOnlyJobsDrawNoGpuCharts) {
  const std::string html = render_profile_report(summary_of(sample_job(4, false), json::array()));
  expect_well_formed(html);
  EXPECT_EQ(html.find(">GPU memory used<"), std::string::npos);
  EXPECT_NE(html.find("<dd>none</dd>"), std::string::npos);  // GPUs
  EXPECT_NE(html.find("No operator trace recorded"), std::string::npos);
  EXPECT_NE(html.find("no GPU"), std::string::npos);  // the rules say so
}

}  // namespace
}  // namespace kennel::profile

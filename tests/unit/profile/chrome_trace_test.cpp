#include "kennel/profile/chrome_trace.h"

#include <gtest/gtest.h>

#include "kennel/profile/profiler_hook.h"
#include "unit/test_util.h"

namespace kennel::profile {
namespace {

TraceSpan span(std::string name, int64_t tid, double start, double duration, int priority = 0) {
  TraceSpan out;
  out.name = std::move(name);
  out.tid = tid;
  out.start_us = start;
  out.duration_us = duration;
  out.priority = priority;
  return out;
}

TEST(ChromeTrace, ChildrenThatOverrunTheirParentAreClampedSoSpansNest) {
  ChromeTrace trace;
  trace.set_thread_name(1, "loop");
  trace.add_span(span("step", 1, 0, 100));
  trace.add_span(span("forward", 1, 10, 50));
  trace.add_span(span("backward", 1, 60, 45));  // overruns the step by 5 us (clock rounding)
  trace.add_span(span("op", 2, 0, 200));        // another thread: independent
  const auto json = trace.to_json(1 << 20);
  EXPECT_EQ(check_trace_nesting(json), "");
  bool clamped = false;
  for (const auto& event : json["traceEvents"]) {
    if (event.value("name", "") == "backward") clamped = event["dur"].get<double>() == 40;
  }
  EXPECT_TRUE(clamped);
  nlohmann::json broken = json;
  broken["traceEvents"].push_back({{"name", "bad"}, {"ph", "X"}, {"pid", 1}, {"tid", 1}, {"ts", 90}, {"dur", 30}});
  EXPECT_NE(check_trace_nesting(broken).find("bad"), std::string::npos);
}

TEST(ChromeTrace, TheSizeCapKeepsImportantSpansAndWarns) {
  ChromeTrace trace;
  trace.add_span(span("step", 1, 0, 1000, /*priority=*/2));
  for (int i = 0; i < 2000; ++i) trace.add_span(span("aten::add", 2, i, 0.5));
  int64_t dropped = 0;
  const auto json = trace.to_json(64 << 10, &dropped);
  EXPECT_GT(dropped, 0);
  EXPECT_LT(json.dump().size(), size_t{64} << 10);
  bool kept_step = false;
  for (const auto& event : json["traceEvents"]) kept_step |= event.value("name", "") == "step";
  EXPECT_TRUE(kept_step);
  EXPECT_NE(json["otherData"]["warning"].get<std::string>().find("dropped"), std::string::npos);
}

TEST(ChromeTrace, LargeTracesAreGzippedAndReadBack) {
  testing::TempDir dir;
  ChromeTrace trace;
  for (int i = 0; i < 500; ++i) trace.add_span(span("aten::conv2d", 1, i * 10, 5));
  trace.add_counter({"CPU %", 5, {{"all cores", 50}}});
  TraceWriteOptions small;
  small.gzip_above_bytes = 1024;
  auto written = trace.write(dir / "trace.json", small);
  ASSERT_TRUE(written.ok()) << written.status().message();
  EXPECT_EQ(written->path.filename(), "trace.json.gz");
  EXPECT_FALSE(std::filesystem::exists(dir / "trace.json"));
  auto read = read_chrome_trace(written->path);
  ASSERT_TRUE(read.ok()) << read.status().message();
  EXPECT_EQ((*read)["traceEvents"].size(), static_cast<size_t>(written->events));
  // Written again small: the stale .gz goes away.
  auto plain = trace.write(dir / "trace.json");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->path.filename(), "trace.json");
  EXPECT_FALSE(std::filesystem::exists(dir / "trace.json.gz"));
}

TEST(OperatorStats, SelfTimeIsDurationMinusDirectChildrenPerThread) {
  const std::vector<OperatorEvent> events = {
      {"aten::linear", 1, 0.0, 0.010},  // children: addmm 6 ms -> self 4 ms
      {"aten::addmm", 1, 0.001, 0.006},
      {"aten::relu", 1, 0.012, 0.002},
      {"aten::addmm", 2, 0.0, 0.003},   // another thread, not a child of linear
  };
  const auto stats = operator_stats(events);
  ASSERT_EQ(stats.size(), 3u);
  EXPECT_EQ(stats[0].name, "aten::addmm");
  EXPECT_EQ(stats[0].calls, 2);
  EXPECT_NEAR(stats[0].self_ms, 9, 1e-9);
  EXPECT_EQ(stats[1].name, "aten::linear");
  EXPECT_NEAR(stats[1].self_ms, 4, 1e-9);
  EXPECT_NEAR(stats[1].total_ms, 10, 1e-9);
  EXPECT_NEAR(stats[2].self_ms, 2, 1e-9);
}

}  // namespace
}  // namespace kennel::profile

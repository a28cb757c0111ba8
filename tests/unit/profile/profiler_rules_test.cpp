#include "kennel/profile/profiler_rules.h"

#include <cmath>
#include <functional>
#include <limits>

#include <gtest/gtest.h>

namespace kennel::profile {
namespace {

using nlohmann::json;


// ---- Synthetic jobs. ----

struct SampleShape {
  double core = 40;  // every core's % busy
  double iowait = 1;
  double process_cpu = 300;
  double memory_percent = 30;             // of a 64 GiB machine
  std::optional<double> gpu_utilization;  // nullopt: no GPU in the sample
  double gpu_memory_percent = 30;
};

SystemSample make_sample(double time, const SampleShape& shape, int cores = 8) {
  SystemSample sample;
  sample.time = time;
  sample.interval = 1;
  sample.cpu_per_core.assign(static_cast<size_t>(cores), shape.core);
  sample.cpu = shape.core;
  sample.iowait = shape.iowait;
  sample.process_cpu = shape.process_cpu;
  sample.process_rss = 2 * kGiB;
  sample.memory_used = 64 * kGiB * shape.memory_percent / 100;
  sample.memory_available = 64 * kGiB - sample.memory_used;
  if (shape.gpu_utilization) {
    GpuSample gpu;
    gpu.index = 0;
    gpu.name = "Test GPU";
    gpu.utilization = *shape.gpu_utilization;
    gpu.memory_total = 16 * kGiB;
    gpu.memory_used = gpu.memory_total * shape.gpu_memory_percent / 100;
    sample.gpus.push_back(gpu);
  }
  return sample;
}

StepTiming make_step(int64_t index, double total, double data_share = 0.1) {
  StepTiming step;
  step.step = index;
  step.batch_size = 32;
  step.start = 1000 + static_cast<double>(index) * total;
  step.total = total;
  step.data = total * data_share;
  step.copy = total * 0.05;
  step.forward = total * (1 - data_share - 0.05) * 0.4;
  step.backward = total * (1 - data_share - 0.05) * 0.5;
  step.optimizer = total * (1 - data_share - 0.05) * 0.1;
  return step;
}

// A job of `samples` system samples shaped by `shape_at(i)` and `steps` steps.
ProfileData make_job(size_t samples, const std::function<SampleShape(size_t)>& shape_at,
                     size_t steps = 50, double data_share = 0.1) {
  ProfileData data;
  data.job = "test";
  data.cores = 8;
  data.decode_threads = 4;
  data.compute_threads = 4;
  data.job_start = 1000;
  data.first_step_start = 1060;
  data.loop_end = 1060 + static_cast<double>(steps) * 0.1;
  data.job_end = data.loop_end + 5;
  for (size_t i = 0; i < samples; ++i) {
    const SampleShape shape = shape_at(i);
    data.system.push_back(make_sample(1000 + static_cast<double>(i), shape));
    if (shape.gpu_utilization) data.device = "cuda:0";
  }
  if (data.device.empty()) data.device = "cpu";
  for (size_t i = 0; i < steps; ++i)
    data.steps.push_back(make_step(static_cast<int64_t>(i), 0.1, data_share));
  return data;
}

SampleShape gpu_shape(double utilization) {
  SampleShape shape;
  shape.gpu_utilization = utilization;
  return shape;
}

const RuleResult& find(const std::vector<RuleResult>& results, const std::string& name) {
  for (const auto& result : results) {
    if (result.rule == name) return result;
  }
  static const RuleResult kMissing;
  ADD_FAILURE() << "no result for " << name;
  return kMissing;
}

RuleResult evaluate(const ProfileData& data, const std::string& rule, const json& overrides = {}) {
  return find(evaluate_profiler_rules(data, overrides), rule);
}

bool contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

// ---- Every rule. ----

TEST(ProfilerRulesTest, EveryRuleAnswersOnceInOrderWithItsEffectiveParameters) {
  const auto results = evaluate_profiler_rules(ProfileData{});
  const auto names = profiler_rule_names();
  ASSERT_EQ(results.size(), 11u);
  ASSERT_EQ(names.size(), results.size());
  const json defaults = profiler_rule_defaults();
  for (size_t i = 0; i < results.size(); ++i) {
    EXPECT_EQ(results[i].rule, names[i]);
    EXPECT_EQ(results[i].parameters, defaults[names[i]]) << names[i];
  }
  EXPECT_EQ(defaults["LowGPUUtilization"]["threshold_p95"], 70);
  EXPECT_EQ(defaults["LowGPUUtilization"]["window"], 500);
  EXPECT_EQ(defaults["StepOutlier"]["stddev"], 3);
  EXPECT_EQ(defaults["MaxInitializationTime"]["threshold"], 20);
  EXPECT_TRUE(defaults["OverallSystemUsage"].empty());
}

TEST(ProfilerRulesTest, EmptyDataTriggersNothingAndSaysWhatIsMissing) {
  for (const auto& result : evaluate_profiler_rules(ProfileData{})) {
    EXPECT_FALSE(result.triggered) << result.rule;
    EXPECT_EQ(result.datapoints, 0) << result.rule;
    EXPECT_EQ(result.violations, 0) << result.rule;
    EXPECT_EQ(result.message.rfind("no data: ", 0), 0u) << result.rule << ": " << result.message;
    EXPECT_GT(result.message.size(), 20u) << result.rule;  // names what was missing
    EXPECT_TRUE(result.recommendation.empty()) << result.rule;
  }
  EXPECT_TRUE(contains(evaluate(ProfileData{}, "LowGPUUtilization").message, "system samples"));
  EXPECT_TRUE(contains(evaluate(ProfileData{}, "DataloaderBottleneck").message, "steps"));
  EXPECT_TRUE(contains(evaluate(ProfileData{}, "MaxInitializationTime").message, "start time"));
}

TEST(ProfilerRulesTest, OddValuesNeverThrowNorLeakNaNIntoMessages) {
  ProfileData data = make_job(
      40, [](size_t i) { return gpu_shape(i % 2 ? kNaN : 50); }, 20);
  for (auto& sample : data.system) {
    sample.cpu = kNaN;
    sample.iowait = kNaN;
    sample.process_cpu = std::numeric_limits<double>::infinity();
    sample.cpu_per_core.push_back(kNaN);
    sample.gpus[0].memory_total = 0;  // no memory percentage possible
  }
  data.steps[3].total = 0;
  data.steps[4].total = kNaN;
  data.steps[5].data = kNaN;
  data.cores = 0;
  data.compute_threads = 0;
  std::vector<RuleResult> results;
  ASSERT_NO_THROW(results = evaluate_profiler_rules(data));
  for (const auto& result : results) {
    EXPECT_FALSE(contains(result.message, "nan")) << result.rule << ": " << result.message;
    EXPECT_FALSE(contains(result.message, "inf%")) << result.rule << ": " << result.message;
  }
}

// ---- LowGPUUtilization ----

TEST(LowGPUUtilizationTest, FiresWhenTheGpuIsUnderused) {
  const auto result =
      evaluate(make_job(100, [](size_t) { return gpu_shape(30); }), "LowGPUUtilization");
  EXPECT_TRUE(result.triggered);
  EXPECT_EQ(result.datapoints, 90);  // 10 samples of patience
  EXPECT_EQ(result.violations, 90);
  EXPECT_TRUE(contains(result.message, "underused")) << result.message;
  EXPECT_TRUE(contains(result.message, "30.0%")) << result.message;
  EXPECT_TRUE(contains(result.recommendation, "batch_size")) << result.recommendation;
}

TEST(LowGPUUtilizationTest, FiresWhenTheGpuFluctuates) {
  const auto result = evaluate(make_job(100, [](size_t i) { return gpu_shape(i % 2 ? 95 : 0); }),
                               "LowGPUUtilization");
  EXPECT_TRUE(result.triggered);
  EXPECT_TRUE(contains(result.message, "fluctuates")) << result.message;
  EXPECT_EQ(result.violations, 45);  // the idle half
  EXPECT_TRUE(contains(result.recommendation, "bursts")) << result.recommendation;
}

TEST(LowGPUUtilizationTest, QuietWhenTheGpuIsBusy) {
  const auto result =
      evaluate(make_job(100, [](size_t i) { return gpu_shape(85 + i % 10); }), "LowGPUUtilization");
  EXPECT_FALSE(result.triggered);
  EXPECT_EQ(result.violations, 0);
  EXPECT_EQ(result.datapoints, 90);
  EXPECT_TRUE(result.recommendation.empty());
}

TEST(LowGPUUtilizationTest, JudgesEachWindowAlone) {
  // Busy for 500 samples, then half busy for 500: the second window is
  // underused, the run as a whole is not.
  const auto data = make_job(1010, [](size_t i) { return gpu_shape(i < 510 ? 90 : 50); });
  EXPECT_TRUE(evaluate(data, "LowGPUUtilization").triggered);
  EXPECT_FALSE(
      evaluate(data, "LowGPUUtilization", {{"LowGPUUtilization", {{"window", 5000}}}}).triggered);
}

TEST(LowGPUUtilizationTest, CpuOnlyIsNotTriggeredButJudgesIdleComputeWaitingForData) {
  SampleShape idle;
  idle.process_cpu = 100;  // one of four compute threads
  const auto result = evaluate(make_job(
                                   60, [&](size_t) { return idle; }, 50, 0.6),
                               "LowGPUUtilization");
  EXPECT_FALSE(result.triggered);
  EXPECT_TRUE(contains(result.message, "no GPU")) << result.message;
  EXPECT_TRUE(contains(result.message, "25.0%")) << result.message;  // compute use p95
  EXPECT_TRUE(contains(result.recommendation, "threads")) << result.recommendation;
  EXPECT_TRUE(contains(result.recommendation, "batch_size")) << result.recommendation;

  SampleShape busy;
  busy.process_cpu = 390;
  const auto quiet = evaluate(make_job(
                                  60, [&](size_t) { return busy; }, 50, 0.6),
                              "LowGPUUtilization");
  EXPECT_FALSE(quiet.triggered);
  EXPECT_TRUE(contains(quiet.message, "no GPU"));
  EXPECT_TRUE(quiet.recommendation.empty()) << quiet.recommendation;
}

TEST(LowGPUUtilizationTest, ShortCpuOnlyRunStillSaysNoGpu) {
  // Fewer samples than the patience of 10: a fast CPU run (found on a Release
  // build, whose 2-epoch test job gave exactly 10 samples).
  const auto data = make_job(10, [](size_t) { return SampleShape{}; });
  for (const char* name : {"LowGPUUtilization", "CPUBottleneck", "IOBottleneck", "BatchSize"}) {
    const auto result = evaluate(data, name);
    EXPECT_FALSE(result.triggered) << name;
    EXPECT_TRUE(contains(result.message, "no GPU")) << name << ": " << result.message;
    EXPECT_TRUE(contains(result.message, "patience")) << name << ": " << result.message;
  }
  const auto with_gpu =
      evaluate(make_job(10, [](size_t) { return gpu_shape(90); }), "LowGPUUtilization");
  EXPECT_FALSE(contains(with_gpu.message, "no GPU")) << with_gpu.message;
}

// ---- CPUBottleneck ----

TEST(CPUBottleneckTest, FiresWhenCoresSaturateWhileTheGpuIdles) {
  SampleShape shape = gpu_shape(5);
  shape.core = 95;
  const auto result = evaluate(make_job(100, [&](size_t) { return shape; }), "CPUBottleneck");
  EXPECT_TRUE(result.triggered);
  EXPECT_EQ(result.violations, 90);
  EXPECT_EQ(result.datapoints, 90);
  EXPECT_FALSE(result.recommendation.empty());
}

TEST(CPUBottleneckTest, OneSaturatedCoreIsEnough) {
  auto data = make_job(100, [](size_t) { return gpu_shape(5); });
  for (auto& sample : data.system) sample.cpu_per_core[3] = 99;
  EXPECT_TRUE(evaluate(data, "CPUBottleneck").triggered);
}

TEST(CPUBottleneckTest, QuietWhenTheGpuIsBusy) {
  SampleShape shape = gpu_shape(80);
  shape.core = 95;
  const auto result = evaluate(make_job(100, [&](size_t) { return shape; }), "CPUBottleneck");
  EXPECT_FALSE(result.triggered);
  EXPECT_EQ(result.violations, 0);
}

TEST(CPUBottleneckTest, CpuOnlyFiresWhenSaturatedCoresLeaveTheStepWaitingForData) {
  SampleShape shape;
  shape.core = 97;
  auto data = make_job(
      100, [&](size_t) { return shape; }, 50, 0.6);
  const auto result = evaluate(data, "CPUBottleneck");
  EXPECT_TRUE(result.triggered);
  EXPECT_TRUE(contains(result.message, "no GPU")) << result.message;
  EXPECT_TRUE(contains(result.message, "60.0%")) << result.message;
  EXPECT_FALSE(result.recommendation.empty());

  const auto quiet = evaluate(make_job(
                                  100, [&](size_t) { return shape; }, 50, 0.1),
                              "CPUBottleneck");
  EXPECT_FALSE(quiet.triggered);  // busy computing, not waiting
  EXPECT_TRUE(contains(quiet.message, "no GPU"));
}

TEST(CPUBottleneckTest, CpuOnlyReportsHowBusyTheDecodeThreadsWere) {
  SampleShape shape;
  shape.core = 97;
  auto data = make_job(
      100, [&](size_t) { return shape; }, 50, 0.6);
  for (int i = 0; i <= 10; ++i) {
    LoaderSample loader;
    loader.time = 1000 + i;
    loader.decode_seconds = 3.6;  // 4 threads, 90% busy
    data.loader.push_back(loader);
  }
  EXPECT_TRUE(contains(evaluate(data, "CPUBottleneck").message, "busy 90.0%"));
}

// ---- IOBottleneck ----

TEST(IOBottleneckTest, FiresWhenIowaitIsHighWhileTheGpuIdles) {
  SampleShape shape = gpu_shape(3);
  shape.iowait = 70;
  const auto result = evaluate(make_job(100, [&](size_t) { return shape; }), "IOBottleneck");
  EXPECT_TRUE(result.triggered);
  EXPECT_EQ(result.violations, 90);
  EXPECT_TRUE(contains(result.recommendation, "storage")) << result.recommendation;
}

TEST(IOBottleneckTest, QuietWhenIowaitIsLow) {
  const auto result = evaluate(make_job(100, [](size_t) { return gpu_shape(3); }), "IOBottleneck");
  EXPECT_FALSE(result.triggered);
  EXPECT_EQ(result.violations, 0);
  EXPECT_EQ(result.datapoints, 90);
}

TEST(IOBottleneckTest, CpuOnlyJudgesIowaitAlone) {
  SampleShape waiting;
  waiting.iowait = 70;
  const auto result = evaluate(make_job(100, [&](size_t) { return waiting; }), "IOBottleneck");
  EXPECT_TRUE(result.triggered);
  EXPECT_TRUE(contains(result.message, "no GPU")) << result.message;

  const auto quiet = evaluate(make_job(100,
                                       [](size_t i) {
                                         SampleShape shape;
                                         shape.iowait = i % 3 == 0 ? 70 : 5;  // a third of the time
                                         return shape;
                                       }),
                              "IOBottleneck");
  EXPECT_FALSE(quiet.triggered);
  EXPECT_GT(quiet.violations, 0);
}

// ---- DataloaderBottleneck ----

TEST(DataloaderBottleneckTest, FiresWhenTheStepWaitsForDataMostOfTheTime) {
  auto data = make_job(
      20, [](size_t) { return gpu_shape(40); }, 50, 0.6);
  data.cores = 16;
  data.decode_threads = 2;
  const auto result = evaluate(data, "DataloaderBottleneck");
  EXPECT_TRUE(result.triggered);
  EXPECT_EQ(result.datapoints, 48);  // two warm-up steps skipped
  EXPECT_EQ(result.violations, 48);
  EXPECT_TRUE(contains(result.message, "60.0%")) << result.message;
  EXPECT_TRUE(contains(result.message, "60.0 ms")) << result.message;  // data wait per step
  EXPECT_TRUE(contains(result.message, "2 decode threads for 16 cores")) << result.message;
  EXPECT_TRUE(contains(result.recommendation, "raise the 'threads' spec key or the loader workers"))
      << result.recommendation;
}

TEST(DataloaderBottleneckTest, RecommendsFewerThreadsWhenThereAreMoreThanCores) {
  auto data = make_job(
      0, [](size_t) { return SampleShape{}; }, 50, 0.6);
  data.cores = 8;
  data.decode_threads = 32;
  const auto result = evaluate(data, "DataloaderBottleneck");
  EXPECT_TRUE(result.triggered);
  EXPECT_TRUE(contains(result.recommendation, "fewer decode threads")) << result.recommendation;
}

TEST(DataloaderBottleneckTest, SaysTheTrainerStarvesWhenTheQueueIsEmpty) {
  auto data = make_job(
      0, [](size_t) { return SampleShape{}; }, 50, 0.6);
  for (int i = 0; i < 10; ++i) {
    LoaderSample sample;
    sample.time = 1000 + i;
    sample.queue_depth = 0;
    data.loader.push_back(sample);
  }
  const auto result = evaluate(data, "DataloaderBottleneck");
  EXPECT_TRUE(result.triggered);
  EXPECT_TRUE(contains(result.message, "queue depth 0.00")) << result.message;
  EXPECT_TRUE(contains(result.message, "starves")) << result.message;
}

TEST(DataloaderBottleneckTest, QuietWhenDataWaitIsSmall) {
  const auto result = evaluate(make_job(
                                   0, [](size_t) { return SampleShape{}; }, 50, 0.1),
                               "DataloaderBottleneck");
  EXPECT_FALSE(result.triggered);
  EXPECT_EQ(result.violations, 0);
  EXPECT_EQ(result.datapoints, 48);
  EXPECT_TRUE(result.recommendation.empty());
}

TEST(DataloaderBottleneckTest, SkipsWarmUpSteps) {
  auto data = make_job(
      0, [](size_t) { return SampleShape{}; }, 2, 0.9);
  const auto result = evaluate(data, "DataloaderBottleneck");
  EXPECT_FALSE(result.triggered);
  EXPECT_EQ(result.datapoints, 0);
  EXPECT_TRUE(contains(result.message, "no data: ")) << result.message;
  EXPECT_TRUE(
      evaluate(data, "DataloaderBottleneck", {{"DataloaderBottleneck", {{"skip_steps", 0}}}})
          .triggered);
}

// ---- GPUMemoryIncrease ----

TEST(GPUMemoryIncreaseTest, FiresWhenMemoryKeepsGrowing) {
  auto data = make_job(70, [](size_t i) {
    SampleShape shape = gpu_shape(80);
    shape.gpu_memory_percent = 10 + static_cast<double>(i);  // +10 points per 10-sample window
    return shape;
  });
  const auto result = evaluate(data, "GPUMemoryIncrease");
  EXPECT_TRUE(result.triggered);
  EXPECT_EQ(result.datapoints, 5);  // 6 windows after the patience, 5 pairs
  EXPECT_EQ(result.violations, 5);
  EXPECT_TRUE(contains(result.message, "GPU 0 (Test GPU)")) << result.message;
  EXPECT_FALSE(result.recommendation.empty());
}

TEST(GPUMemoryIncreaseTest, QuietWhenMemoryIsFlat) {
  const auto result =
      evaluate(make_job(70, [](size_t) { return gpu_shape(80); }), "GPUMemoryIncrease");
  EXPECT_FALSE(result.triggered);
  EXPECT_EQ(result.violations, 0);
  EXPECT_EQ(result.datapoints, 5);
}

TEST(GPUMemoryIncreaseTest, CpuOnlyIsNotTriggered) {
  const auto result =
      evaluate(make_job(70, [](size_t) { return SampleShape{}; }), "GPUMemoryIncrease");
  EXPECT_FALSE(result.triggered);
  EXPECT_TRUE(contains(result.message, "no GPU")) << result.message;
}

TEST(GPUMemoryIncreaseTest, TooFewSamplesIsNoData) {
  const auto result =
      evaluate(make_job(25, [](size_t) { return gpu_shape(80); }), "GPUMemoryIncrease");
  EXPECT_FALSE(result.triggered);
  EXPECT_EQ(result.message.rfind("no data: ", 0), 0u) << result.message;
}

// ---- BatchSize ----

TEST(BatchSizeTest, FiresWhenEverythingIsLightlyUsed) {
  SampleShape shape = gpu_shape(40);
  shape.core = 30;
  shape.gpu_memory_percent = 20;
  const auto result = evaluate(make_job(50, [&](size_t) { return shape; }), "BatchSize");
  EXPECT_TRUE(result.triggered);
  EXPECT_EQ(result.violations, 40);
  EXPECT_TRUE(contains(result.recommendation, "batch_size")) << result.recommendation;
}

TEST(BatchSizeTest, QuietWhenOneResourceIsBusy) {
  SampleShape shape = gpu_shape(40);
  shape.core = 30;
  shape.gpu_memory_percent = 85;  // memory would not fit a larger batch
  const auto result = evaluate(make_job(50, [&](size_t) { return shape; }), "BatchSize");
  EXPECT_FALSE(result.triggered);
  EXPECT_EQ(result.violations, 0);
}

TEST(BatchSizeTest, CpuOnlyJudgesProcessCpuAndSystemMemoryAndSaysSo) {
  SampleShape light;
  light.process_cpu = 120;  // 30% of 4 compute threads
  light.memory_percent = 20;
  const auto result = evaluate(make_job(50, [&](size_t) { return light; }), "BatchSize");
  EXPECT_TRUE(result.triggered);
  EXPECT_TRUE(contains(result.message, "no GPU")) << result.message;
  EXPECT_TRUE(contains(result.message, "process CPU")) << result.message;
  EXPECT_TRUE(contains(result.message, "system memory")) << result.message;

  SampleShape busy = light;
  busy.process_cpu = 380;
  EXPECT_FALSE(evaluate(make_job(50, [&](size_t) { return busy; }), "BatchSize").triggered);
}

// ---- StepOutlier ----

ProfileData steps_with_slow(size_t count, size_t slow) {
  ProfileData data = make_job(
      0, [](size_t) { return SampleShape{}; }, 0);
  for (size_t i = 0; i < count; ++i) {
    // A little noise so σ is not only the outliers'.
    StepTiming step = make_step(static_cast<int64_t>(i), 0.1 + 0.002 * static_cast<double>(i % 5));
    data.steps.push_back(step);
  }
  // Slow steps spread over the run, dominated by waiting for data.
  for (size_t k = 0; k < slow; ++k) {
    StepTiming& step = data.steps[10 + k * (count - 10) / slow];
    step.total = 1.0;
    step.data = 0.85;
  }
  return data;
}

TEST(StragglerRankTest, NamesTheRankWhoseBusyTimeHoldsTheOthersBack) {
  ProfileData data = make_job(0, [](size_t) { return SampleShape{}; }, 20);
  for (auto& step : data.steps) step.rank_busy = {0.10, 0.11, 0.19};
  const RuleResult result = evaluate(data, "StragglerRank");
  EXPECT_TRUE(result.triggered) << result.message;
  EXPECT_TRUE(contains(result.message, "rank 2")) << result.message;
  EXPECT_TRUE(contains(result.recommendation, "rank 2 holds the others back")) << result.recommendation;
  EXPECT_EQ(result.datapoints, 18);  // skip_steps 2
  EXPECT_EQ(result.violations, 18);
}

TEST(StragglerRankTest, QuietWhenRanksAreAlikeOrAFewStepsAreSlow) {
  ProfileData data = make_job(0, [](size_t) { return SampleShape{}; }, 20);
  for (size_t i = 0; i < data.steps.size(); ++i) {
    data.steps[i].rank_busy = {0.10, i % 7 == 0 ? 0.5 : 0.105};
  }
  const RuleResult result = evaluate(data, "StragglerRank");
  EXPECT_FALSE(result.triggered) << result.message;
  EXPECT_GT(result.violations, 0);
}

TEST(StragglerRankTest, OneProcessHasNothingToCompare) {
  const RuleResult result = evaluate(make_job(0, [](size_t) { return SampleShape{}; }, 20), "StragglerRank");
  EXPECT_FALSE(result.triggered);
  EXPECT_EQ(result.datapoints, 0);
  EXPECT_TRUE(contains(result.message, "no data")) << result.message;
}

TEST(StepOutlierTest, FiresWhenManyStepsAreFarSlower) {
  const auto result = evaluate(steps_with_slow(200, 15), "StepOutlier");
  EXPECT_TRUE(result.triggered);
  EXPECT_EQ(result.datapoints, 197);  // 3 warm-up steps skipped
  EXPECT_EQ(result.violations, 15);
  EXPECT_TRUE(contains(result.message, "15 of 197 steps")) << result.message;
  EXPECT_TRUE(contains(result.message, "1000.0 ms (data 850.0 ms)")) << result.message;
  EXPECT_TRUE(contains(result.recommendation, "'data'")) << result.recommendation;
}

TEST(StepOutlierTest, QuietWithFewOutliers) {
  const auto result = evaluate(steps_with_slow(200, 5), "StepOutlier");
  EXPECT_FALSE(result.triggered);
  EXPECT_EQ(result.violations, 5);  // counted, but not more than n_outliers
  EXPECT_TRUE(result.recommendation.empty());
  EXPECT_TRUE(
      evaluate(steps_with_slow(200, 5), "StepOutlier", {{"StepOutlier", {{"n_outliers", 4}}}})
          .triggered);
}

TEST(StepOutlierTest, SlowStepsCommonEnoughRaiseSigmaPastThemselves) {
  // Documented limitation of mean + 3σ: 15 slow steps among 100 are 15% of
  // the steps, above 1/(1+3²), so none of them exceeds the threshold.
  const auto result = evaluate(steps_with_slow(100, 15), "StepOutlier");
  EXPECT_FALSE(result.triggered);
  EXPECT_EQ(result.violations, 0);
  EXPECT_TRUE(
      evaluate(steps_with_slow(100, 15), "StepOutlier", {{"StepOutlier", {{"stddev", 1.5}}}})
          .triggered);
}

// ---- MaxInitializationTime ----

TEST(MaxInitializationTimeTest, FiresWhenTheFirstStepComesLate) {
  ProfileData data = make_job(
      0, [](size_t) { return SampleShape{}; }, 10);
  data.first_step_start = data.job_start + 25 * 60;
  const auto result = evaluate(data, "MaxInitializationTime");
  EXPECT_TRUE(result.triggered);
  EXPECT_EQ(result.violations, 1);
  EXPECT_EQ(result.datapoints, 1);
  EXPECT_TRUE(contains(result.message, "25.00 min")) << result.message;
  EXPECT_FALSE(result.recommendation.empty());
}

TEST(MaxInitializationTimeTest, QuietWhenInitialisationIsQuick) {
  const auto result = evaluate(make_job(
                                   0, [](size_t) { return SampleShape{}; }, 10),
                               "MaxInitializationTime");
  EXPECT_FALSE(result.triggered);
  EXPECT_EQ(result.datapoints, 1);
  EXPECT_TRUE(contains(result.message, "1.00 min")) << result.message;
}

TEST(MaxInitializationTimeTest, FiresWhenNoStepRanInALongJob) {
  ProfileData data;
  data.job_start = 1000;
  data.job_end = 1000 + 30 * 60;
  const auto result = evaluate(data, "MaxInitializationTime");
  EXPECT_TRUE(result.triggered);
  EXPECT_TRUE(contains(result.message, "no training step")) << result.message;
  data.job_end = 1000 + 60;
  EXPECT_FALSE(evaluate(data, "MaxInitializationTime").triggered);
}

// ---- The summaries ----

TEST(OverallRulesTest, NeverTriggerAndQuoteTheNumbers) {
  auto data = make_job(
      50, [](size_t) { return gpu_shape(60); }, 20, 0.25);
  const auto results = evaluate_profiler_rules(data);
  const auto& system = find(results, "OverallSystemUsage");
  EXPECT_FALSE(system.triggered);
  EXPECT_EQ(system.datapoints, 50);
  EXPECT_TRUE(contains(system.message, "p50 40.0% p95 40.0%")) << system.message;  // CPU
  EXPECT_TRUE(contains(system.message, "GPU 0 (Test GPU) utilisation p50 60.0%")) << system.message;
  const auto& framework = find(results, "OverallFrameworkMetrics");
  EXPECT_FALSE(framework.triggered);
  EXPECT_EQ(framework.datapoints, 20);
  EXPECT_TRUE(contains(framework.message, "initialisation 60.0 s")) << framework.message;
  EXPECT_TRUE(contains(framework.message, "finalisation 5.0 s")) << framework.message;
  EXPECT_TRUE(contains(framework.message, "data 25.0%")) << framework.message;
}

// ---- Overrides ----

TEST(ProfilerRuleOverridesTest, AcceptsKnownRulesAndParameters) {
  EXPECT_TRUE(validate_profiler_rule_overrides(json()).ok());
  EXPECT_TRUE(validate_profiler_rule_overrides(json::object()).ok());
  EXPECT_TRUE(validate_profiler_rule_overrides(
                  {{"LowGPUUtilization", {{"threshold_p95", 80}, {"window", 100}}},
                   {"StepOutlier", {{"stddev", "2.5"}}},  // a number spelled as a string
                   {"OverallSystemUsage", json::object()}})
                  .ok());
}

TEST(ProfilerRuleOverridesTest, RejectsWhatIsUnknownOrOutOfRangeNamingIt) {
  const auto error = [](const json& overrides) {
    const Status status = validate_profiler_rule_overrides(overrides);
    EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument) << overrides.dump();
    return status.message();
  };
  std::string message = error({{"LowGpuUtilisation", {{"threshold_p95", 80}}}});
  EXPECT_TRUE(contains(message, "'LowGpuUtilisation'")) << message;
  EXPECT_TRUE(contains(message, "LowGPUUtilization")) << message;  // lists the rules

  message = error({{"StepOutlier", {{"sigma", 2}}}});
  EXPECT_TRUE(contains(message, "'StepOutlier'") && contains(message, "'sigma'")) << message;
  EXPECT_TRUE(contains(message, "stddev")) << message;  // lists the parameters

  message = error({{"CPUBottleneck", {{"threshold", "high"}}}});
  EXPECT_TRUE(contains(message, "'CPUBottleneck'") && contains(message, "'threshold'")) << message;
  message = error({{"CPUBottleneck", {{"threshold", 150}}}});
  EXPECT_TRUE(contains(message, "[0, 100]")) << message;
  message = error({{"LowGPUUtilization", {{"window", 2.5}}}});
  EXPECT_TRUE(contains(message, "whole")) << message;
  message = error({{"LowGPUUtilization", {{"patience", 1e300}}}});  // a count must stay a count
  EXPECT_TRUE(contains(message, "'patience'")) << message;
  message = error({{"LowGPUUtilization", {{"window", 0}}}});
  EXPECT_TRUE(contains(message, "'window'")) << message;
  message = error({{"LowGPUUtilization", {{"threshold_p5", 80}, {"threshold_p95", 50}}}});
  EXPECT_TRUE(contains(message, "threshold_p5") && contains(message, "threshold_p95")) << message;
  message = error({{"IOBottleneck", 5}});
  EXPECT_TRUE(contains(message, "'IOBottleneck'")) << message;
  error(json::array({1, 2}));
  error({{"MaxInitializationTime", {{"threshold", nullptr}}}});
  error({{"MaxInitializationTime", {{"threshold", true}}}});
}

TEST(ProfilerRuleOverridesTest, EvaluationUsesOverridesAndReportsThem) {
  const auto data = make_job(
      0, [](size_t) { return SampleShape{}; }, 50, 0.6);
  const auto result =
      evaluate(data, "DataloaderBottleneck", {{"DataloaderBottleneck", {{"threshold_share", 70}}}});
  EXPECT_FALSE(result.triggered);
  EXPECT_EQ(result.parameters["threshold_share"], 70);
  EXPECT_EQ(result.parameters["skip_steps"], 2);
}

TEST(ProfilerRuleOverridesTest, EvaluationFallsBackToDefaultsOnInvalidOverrides) {
  const auto data = make_job(
      0, [](size_t) { return SampleShape{}; }, 50, 0.6);
  const auto result = evaluate(data, "DataloaderBottleneck",
                               {{"DataloaderBottleneck", {{"threshold_share", 70}, {"bogus", 1}}}});
  EXPECT_TRUE(result.triggered);
  EXPECT_EQ(result.parameters["threshold_share"], 25);
  EXPECT_NO_THROW(evaluate_profiler_rules(data, json::array({1})));
  EXPECT_NO_THROW(evaluate_profiler_rules(data, "text"));
}

}  // namespace
}  // namespace kennel::profile

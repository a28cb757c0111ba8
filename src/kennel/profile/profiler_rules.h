// The profiler rules: a verdict on one profiled job (ProfileData) in the
// cloud profiler's terms — is the GPU underused, is the CPU, the disk or the
// data loader the bottleneck, does GPU memory grow, could the batch be larger,
// are some steps outliers, did initialisation take too long — plus two
// summaries that never trigger. The rules judge a finished (or snapshot)
// record; they do not sample anything themselves (system_monitor.h and the
// profiler hook do). Thread-safety: pure functions.
//
// Every rule always yields one RuleResult, in the order of the table below,
// with `parameters` holding the effective values. Odd data never throws:
// non-finite values are ignored, and a rule with nothing to judge is not
// triggered, has datapoints 0 and a message starting "no data: " that names
// what was missing. GPU rules on a job without GPU samples are not triggered
// and say "no GPU: ..."; where a CPU equivalent makes sense it is judged and
// reported in the message (and recommendation) instead.
//
// Parameters (name [default] meaning). Sample counts are system-monitor
// samples; percentages are 0..100; counts are whole numbers up to 1e9.
//
//  LowGPUUtilization — the GPU is underused or its use fluctuates.
//    threshold_p95 [70]   fires when a window's utilisation p95 is below this (underused)
//    threshold_p5  [10]   ...or when p95 is above threshold_p95 and p5 below this (fluctuating)
//    window        [500]  samples per window the percentiles are taken over
//    patience      [10]   initial samples skipped (start-up)
//    data_share    [25]   CPU only: the step "waits for data" above this median data share (%)
//    Per GPU. violations: samples below threshold_p95 in underused windows
//    plus samples below threshold_p5 in fluctuating ones. CPU only: never
//    triggers; reports idle compute cores (process CPU / compute threads, p95
//    below threshold_p95) while the step waits for data.
//
//  CPUBottleneck — the CPU is saturated while the GPU idles.
//    threshold     [90]   % busy of a core that counts as saturated
//    gpu_threshold [10]   GPU utilisation (mean over GPUs) below which the GPU is idle
//    cpu_threshold [50]   fires when more than this % of samples are bottleneck samples
//    patience      [10]   initial samples skipped
//    data_share    [50]   CPU only: the median data share of step time (%) to exceed as well
//    A bottleneck sample has some core above `threshold` (the machine-wide CPU
//    when per-core values are missing) and, with a GPU, the GPU below
//    gpu_threshold. CPU only ("no GPU" in the message): fires when the cores
//    are saturated that often and the step waits for data more than data_share.
//
//  IOBottleneck — the machine waits for I/O while the GPU idles.
//    threshold     [50]   iowait % that counts as an I/O wait
//    gpu_threshold [10]   GPU utilisation below which the GPU counts as idle
//    io_threshold  [50]   fires when more than this % of samples are I/O-bound
//    patience      [10]   initial samples skipped
//    CPU only: iowait above `threshold` alone makes a sample I/O-bound.
//
//  DataloaderBottleneck — the training step waits for the data loader.
//    threshold_share     [25]   fires when the median share of step time waiting for data
//                               exceeds this %
//    skip_steps          [2]    warm-up steps skipped
//    min_threads_percent [50]   fewer decode threads than this % of the cores: recommend more
//    max_threads_percent [100]  more decode threads than this % of the cores: recommend fewer
//    violations: steps whose data share exceeds threshold_share. The thread
//    counts shape the recommendation; they do not trigger the rule.
//
//  GPUMemoryIncrease — GPU memory use keeps growing (a leak, a cache that never stops).
//    increase [5]    fires when a window's mean memory use (% of the GPU's memory)
//                    exceeds the previous window's by more than this many points
//    patience [10]   initial samples skipped
//    window   [10]   samples per window (consecutive, not overlapping; a short tail is dropped)
//    datapoints: consecutive window pairs compared, over all GPUs.
//
//  BatchSize — everything is lightly used: a larger batch would use the machine better.
//    cpu_threshold_p95        [70]  machine CPU % (CPU only: process CPU / compute threads)
//    gpu_threshold_p95        [70]  GPU utilisation % (the busiest GPU)
//    gpu_memory_threshold_p95 [70]  GPU memory use % (CPU only: system memory use %)
//    patience                 [10]  initial samples skipped
//    Fires when every p95 is below its threshold. CPU only it judges process
//    CPU and system memory, and says so. violations: samples below all thresholds.
//
//  StepOutlier — some steps take far longer than the rest.
//    stddev     [3]    a step is an outlier when its total exceeds mean + stddev·σ
//    n_outliers [10]   fires when there are more outliers than this
//    skip_steps [3]    warm-up steps skipped before mean and σ are taken
//    With mean + k·σ, slow steps are only separable while they are fewer than
//    1/(1+k²) of the steps (10% for k = 3): more raise σ past themselves.
//
//  StragglerRank — in a data-parallel job, one rank holds the others back.
//    threshold  [20]   fires when the slowest rank's median busy time per step
//                      (data, forward, backward: before it waits for the others)
//                      exceeds the median rank's by more than this %
//    skip_steps [2]    warm-up steps skipped
//    One process: not triggered, "no data". violations: the slowest rank's
//    steps above the threshold.
//
//  MaxInitializationTime — the job took long to reach its first step.
//    threshold [20]    minutes from the job's start to its first step (with no
//                      step: to the job's end)
//
//  OverallSystemUsage — never triggers: p50/p95 of CPU, process CPU, memory,
//    GPU. No parameters.
//  OverallFrameworkMetrics — never triggers: time by phase; initialisation,
//    loop and finalisation times. No parameters.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kennel/profile/profile_record.h"
#include "kennel/util/status.h"

namespace kennel::profile {

// The rules' names, in evaluation order.
std::vector<std::string> profiler_rule_names();

// {"<rule>": {"<parameter>": default, ...}, ...} for every rule (docs, a spec template).
nlohmann::json profiler_rule_defaults();

// Checks `overrides` ({"<rule>": {"<parameter>": value}}; null or {} means none):
// every rule and parameter must exist, and values must be finite numbers (or
// numeric strings) in the parameter's range, whole where a count is meant.
// kInvalidArgument naming the rule and parameter (and listing the valid
// names) on the first problem.
Status validate_profiler_rule_overrides(const nlohmann::json& overrides);

// Evaluates every rule on `data`, in profiler_rule_names() order. Overrides
// are read as validated above; call validate_profiler_rule_overrides first:
// here a rule whose overrides are invalid runs with its defaults, so
// evaluation never fails.
std::vector<RuleResult> evaluate_profiler_rules(const ProfileData& data,
                                                const nlohmann::json& overrides = {});

}  // namespace kennel::profile

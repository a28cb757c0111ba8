// The profiler's report: a JSON summary of one profiled job (what the report
// shows, also saved beside it for tools) and the self-contained HTML page
// drawn from that summary — job timeline, system usage, utilisation over time,
// step durations, time by phase, top operators and the rules' verdicts.
// Charts are inline SVG and the stylesheet is embedded (report/html.h,
// report/svg_chart.h): the file opens offline and runs no script.
//
// The summary is computed from ProfileData here; the page reads only the
// summary, so a saved summary can be drawn again. Writing files is the
// caller's job. Thread-safety: pure functions.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kennel/profile/profile_record.h"

namespace kennel::profile {

// Everything the report shows. Times are seconds unless a key ends in _ms;
// a value that cannot be computed is null. Shape:
//   "job": {"name", "device", "cores", "decode_threads", "compute_threads",
//           "job_start", "first_step_start", "loop_end", "job_end" (Unix s),
//           "init_seconds" (first step - job start), "loop_seconds" (loop end -
//           first step), "finalisation_seconds" (job end - loop end),
//           "total_seconds", "steps", "system_samples", "gpus": [names],
//           "rules" (how many were evaluated), "rules_triggered": [rule names]}
//   "system_usage": [{"metric", "label", "unit", "count", "min", "p50", "p95", "p99", "max"}]
//       for cpu, iowait, process_cpu, process_rss, memory_used, disk_read,
//       disk_write, net_receive, net_transmit, then gpu<i>_utilization,
//       gpu<i>_memory_used and gpu<i>_memory_percent per GPU
//   "utilisation": {"time" (s since the job start), "cpu", "process_cpu" (% of
//       "process_cpu_cores" cores), "per_core": [[%]], "gpus": [{"index",
//       "name", "utilization", "memory_percent"}], "samples" (before
//       downsampling)} — at most 500 points, each the mean of its bucket
//   "steps": {"count", "skipped" (warm-up steps left out of the statistics),
//       "mean_ms", "min_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms", "std_ms",
//       "histogram": [{"from_ms", "to_ms", "count"}], "outlier_threshold_ms",
//       "outlier_stddev", "outlier_count", "outliers": [{"step", "epoch",
//       "total_ms", "biggest_phase", "biggest_phase_ms", "<phase>_ms"...}]
//       (slowest first, at most 50)}; outliers use StepOutlier's effective
//       stddev and skip_steps from `rules` (its defaults when absent)
//   "phases": [{"phase", "seconds", "share" (0..1 of step time)}] for data,
//       copy, forward, backward, optimizer, callbacks and other
//   "phase_series": {"step": [...], "total_ms", "<phase>_ms": [...]} (≤ 500 points)
//   "top_operators": `top_operators` when it is an array, else []
//       ([{"name", "calls", "self_ms", "total_ms"}] by convention)
//   "rules": [to_json(RuleResult)]
// Never throws on odd data: NaN and infinite values are left out of statistics.
nlohmann::json profile_summary_json(const ProfileData& data, const std::vector<RuleResult>& rules,
                                    const nlohmann::json& top_operators);

// A complete HTML page from a summary of the shape above. Every field is
// optional: what is missing or of the wrong type is shown as empty or "no
// data", never an exception. All text from the summary is escaped.
std::string render_profile_report(const nlohmann::json& summary);

}  // namespace kennel::profile

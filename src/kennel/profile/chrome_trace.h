// Chrome trace-event JSON (what Perfetto and chrome://tracing open): complete
// spans ("X") on named threads of one process, counter tracks ("C") and
// thread names ("M"). Timestamps are microseconds since the trace's origin.
//
// Spans on one thread must nest (a span that starts inside another ends inside
// it) or viewers draw them wrongly; write() enforces it by clamping a child
// that overruns its parent by clock rounding to the parent's end.
// A size cap keeps the file openable: past `max_bytes` the longest-lived span
// kinds are kept and the rest dropped, with a warning (returned, and in the
// trace's metadata). Large traces are gzipped (`trace.json.gz` opens in
// Perfetto as is). Thread-safety: one writer thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kennel/util/status.h"

namespace kennel::profile {

struct TraceSpan {
  std::string name, category;
  int64_t tid = 0;
  double start_us = 0, duration_us = 0;
  nlohmann::json args;  // null: none
  int priority = 0;     // higher survives the size cap longer
};

struct TraceCounter {
  std::string name;  // one track per name
  double time_us = 0;
  std::map<std::string, double> values;  // series on that track
};

struct TraceWriteOptions {
  int64_t max_bytes = int64_t{256} << 20;   // cap on the JSON text
  int64_t gzip_above_bytes = int64_t{16} << 20;  // write <path>.gz instead when larger
};

struct TraceWriteResult {
  std::filesystem::path path;  // what was written (trace.json or trace.json.gz)
  int64_t events = 0;
  int64_t dropped_spans = 0;   // because of max_bytes
  std::string warning;         // non-empty when spans were dropped
};

class ChromeTrace {
 public:
  void set_thread_name(int64_t tid, const std::string& name, int sort_index = 0);
  void add_span(TraceSpan span);
  void add_counter(TraceCounter counter);
  size_t span_count() const { return spans_.size(); }

  // The trace as JSON ({"traceEvents": [...], "displayTimeUnit": "ms", ...}),
  // with nesting enforced, spans beyond `max_bytes` dropped (lowest priority, then shortest first).
  nlohmann::json to_json(int64_t max_bytes, int64_t* dropped = nullptr) const;
  // Writes `path` (or `path` + ".gz" when large) atomically.
  Result<TraceWriteResult> write(const std::filesystem::path& path, const TraceWriteOptions& options = {}) const;

 private:
  std::map<int64_t, std::pair<std::string, int>> threads_;
  std::vector<TraceSpan> spans_;
  std::vector<TraceCounter> counters_;
};

// For tests and `kennel profile`: reads trace.json or trace.json.gz.
Result<nlohmann::json> read_chrome_trace(const std::filesystem::path& path);

// Checks that complete spans nest per thread; returns a message naming the
// first two spans that overlap without nesting, or "" when the trace is sound.
std::string check_trace_nesting(const nlohmann::json& trace);

}  // namespace kennel::profile

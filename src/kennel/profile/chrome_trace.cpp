#include "kennel/profile/chrome_trace.h"

#include <algorithm>
#include <cstdio>
#include <numeric>

#include <fmt/format.h>
#include <zlib.h>

#include "kennel/util/fs.h"

namespace kennel::profile {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int64_t kPid = 1;
constexpr double kToleranceUs = 1e-3;

bool span_order(const TraceSpan& a, const TraceSpan& b) {
  if (a.tid != b.tid) return a.tid < b.tid;
  if (a.start_us != b.start_us) return a.start_us < b.start_us;
  return a.duration_us > b.duration_us;  // the parent first
}

json span_event(const TraceSpan& span) {
  json event = {{"name", span.name}, {"cat", span.category.empty() ? "kennel" : span.category},
                {"ph", "X"},         {"pid", kPid},
                {"tid", span.tid},   {"ts", span.start_us},
                {"dur", span.duration_us}};
  if (!span.args.is_null()) event["args"] = span.args;
  return event;
}

Result<std::string> gzip(const std::string& text) {
  z_stream stream{};
  if (deflateInit2(&stream, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return internal_error("zlib could not start a gzip stream");
  }
  std::string out(deflateBound(&stream, text.size()), '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  stream.avail_in = static_cast<uInt>(text.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  const int code = deflate(&stream, Z_FINISH);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  if (code != Z_STREAM_END) return internal_error("zlib could not compress the trace (code {})", code);
  return out;
}

}  // namespace

void ChromeTrace::set_thread_name(int64_t tid, const std::string& name, int sort_index) {
  threads_[tid] = {name, sort_index};
}

void ChromeTrace::add_span(TraceSpan span) {
  if (!(span.duration_us >= 0)) span.duration_us = 0;
  spans_.push_back(std::move(span));
}

void ChromeTrace::add_counter(TraceCounter counter) { counters_.push_back(std::move(counter)); }

json ChromeTrace::to_json(int64_t max_bytes, int64_t* dropped) const {
  std::vector<TraceSpan> spans = spans_;
  // The size cap: keep the most important (then the longest) spans that fit.
  int64_t budget = max_bytes - 4096;
  for (const auto& counter : counters_) budget -= 64 + static_cast<int64_t>(counter.name.size() + 24 * counter.values.size());
  std::vector<size_t> order(spans.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (spans[a].priority != spans[b].priority) return spans[a].priority > spans[b].priority;
    return spans[a].duration_us > spans[b].duration_us;
  });
  std::vector<bool> keep(spans.size(), false);
  int64_t kept_bytes = 0, removed = 0;
  for (size_t i : order) {
    const int64_t size = static_cast<int64_t>(span_event(spans[i]).dump().size()) + 1;
    if (kept_bytes + size <= budget) {
      keep[i] = true;
      kept_bytes += size;
    } else {
      ++removed;
    }
  }
  std::vector<TraceSpan> kept;
  kept.reserve(spans.size() - static_cast<size_t>(removed));
  for (size_t i = 0; i < spans.size(); ++i) {
    if (keep[i]) kept.push_back(std::move(spans[i]));
  }
  if (dropped) *dropped = removed;

  // Nesting: a child that overruns its parent (clock rounding) is clamped to the parent's end.
  std::sort(kept.begin(), kept.end(), span_order);
  std::vector<const TraceSpan*> stack;
  for (auto& span : kept) {
    while (!stack.empty() && (stack.back()->tid != span.tid ||
                              stack.back()->start_us + stack.back()->duration_us <= span.start_us + kToleranceUs)) {
      stack.pop_back();
    }
    if (!stack.empty()) {
      const double parent_end = stack.back()->start_us + stack.back()->duration_us;
      span.duration_us = std::min(span.duration_us, parent_end - span.start_us);
    }
    stack.push_back(&span);
  }

  json events = json::array();
  events.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", kPid}, {"args", {{"name", "kennel"}}}});
  for (const auto& [tid, name_sort] : threads_) {
    events.push_back(
        {{"name", "thread_name"}, {"ph", "M"}, {"pid", kPid}, {"tid", tid}, {"args", {{"name", name_sort.first}}}});
    events.push_back({{"name", "thread_sort_index"},
                      {"ph", "M"},
                      {"pid", kPid},
                      {"tid", tid},
                      {"args", {{"sort_index", name_sort.second}}}});
  }
  for (const auto& span : kept) events.push_back(span_event(span));
  for (const auto& counter : counters_) {
    events.push_back({{"name", counter.name}, {"ph", "C"}, {"pid", kPid}, {"ts", counter.time_us},
                      {"args", counter.values}});
  }
  json trace = {{"traceEvents", std::move(events)}, {"displayTimeUnit", "ms"}};
  if (removed > 0) {
    trace["otherData"] = {{"warning", fmt::format("{} spans were dropped to keep the trace under {} MiB", removed,
                                                  max_bytes >> 20)}};
  }
  return trace;
}

Result<TraceWriteResult> ChromeTrace::write(const fs::path& path, const TraceWriteOptions& options) const {
  TraceWriteResult result;
  const json trace = to_json(options.max_bytes, &result.dropped_spans);
  result.events = static_cast<int64_t>(trace["traceEvents"].size());
  if (result.dropped_spans > 0) result.warning = trace["otherData"]["warning"].get<std::string>();
  const std::string text = trace.dump();
  const fs::path gz = fs::path(path.string() + ".gz");
  std::error_code ignored;
  if (static_cast<int64_t>(text.size()) > options.gzip_above_bytes) {
    auto compressed = gzip(text);
    if (!compressed.ok()) return compressed.status();
    KENNEL_RETURN_IF_ERROR(write_file_atomic(gz, *compressed));
    fs::remove(path, ignored);  // never leave a stale uncompressed trace beside the new one
    result.path = gz;
  } else {
    KENNEL_RETURN_IF_ERROR(write_file_atomic(path, text));
    fs::remove(gz, ignored);
    result.path = path;
  }
  return result;
}

Result<json> read_chrome_trace(const fs::path& path) {
  std::string text;
  if (path.extension() == ".gz") {
    gzFile file = gzopen(path.c_str(), "rb");
    if (!file) return not_found("cannot open trace '{}'", path.string());
    char buffer[1 << 16];
    int n = 0;
    while ((n = gzread(file, buffer, sizeof(buffer))) > 0) text.append(buffer, static_cast<size_t>(n));
    const bool failed = n < 0;
    gzclose(file);
    if (failed) return Status(ErrorCode::kDataLoss, fmt::format("trace '{}' is not valid gzip", path.string()));
  } else {
    auto read = read_file_text(path);
    if (!read.ok()) return read.status();
    text = std::move(*read);
  }
  json trace = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (trace.is_discarded() || !trace.is_object() || !trace.contains("traceEvents")) {
    return Status(ErrorCode::kDataLoss, fmt::format("'{}' is not a Chrome trace (no traceEvents)", path.string()));
  }
  return trace;
}

std::string check_trace_nesting(const json& trace) {
  struct Span {
    double start, end;
    std::string name;
  };
  std::map<std::pair<int64_t, int64_t>, std::vector<Span>> by_thread;
  for (const auto& event : trace.value("traceEvents", json::array())) {
    if (event.value("ph", "") != "X") continue;
    const double start = event.value("ts", 0.0);
    by_thread[{event.value("pid", int64_t{0}), event.value("tid", int64_t{0})}].push_back(
        {start, start + event.value("dur", 0.0), event.value("name", "")});
  }
  for (auto& [thread, spans] : by_thread) {
    std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
      return a.start != b.start ? a.start < b.start : a.end > b.end;
    });
    std::vector<const Span*> stack;
    for (const auto& span : spans) {
      while (!stack.empty() && stack.back()->end <= span.start + kToleranceUs) stack.pop_back();
      if (!stack.empty() && span.end > stack.back()->end + kToleranceUs) {
        return fmt::format("thread {}: '{}' [{}, {}] overlaps '{}' [{}, {}] without nesting", thread.second,
                           span.name, span.start, span.end, stack.back()->name, stack.back()->start,
                           stack.back()->end);
      }
      stack.push_back(&span);
    }
  }
  return "";
}

}  // namespace kennel::profile

// StudioApi: the jobs part (rows, one job's page, live metrics, tensors, stop).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <regex>

#include <fmt/format.h>

#include "kennel/debug/tensor_store.h"
#include "kennel/studio/api.h"
#include "kennel/studio/detail/json_files.h"
#include "kennel/util/fs.h"

namespace kennel::studio {

namespace fs = std::filesystem;
using detail::parse_json_object;
using detail::read_json_file;
using nlohmann::json;

namespace {

constexpr size_t kLogTailBytes = 64 << 10;
constexpr size_t kLogTailLines = 200;
constexpr size_t kMaxTensorSummaries = 500;

// What a person calls the job: a trial is a training job (or a command) run by a study.
std::string display_kind(const store::JobRecord& record) {
  if (record.kind == "command" || (!record.parent.empty() && record.kind == "training"))
    return "trial";
  return record.kind;
}

json number_or_null(const json& object, const char* key) {
  const auto it = object.find(key);
  return it != object.end() && it->is_number() ? *it : json(nullptr);
}

json text_or_null(const json& object, const char* key) {
  const auto it = object.find(key);
  return it != object.end() && it->is_string() ? *it : json(nullptr);
}

// One row of the jobs table: registry facts plus what a glance at the folder shows is wrong.
json job_row(const store::JobRecord& record, double now) {
  json problems = json::array();
  json spec = json::object();
  if (auto parsed = parse_json_object(record.spec_json); parsed.ok()) {
    spec = std::move(*parsed);
  } else {
    problems.push_back(
        fmt::format("the registry's spec is not a JSON object: {}", parsed.status().message()));
  }
  auto parsed_metrics = parse_json_object(record.final_metrics_json);
  json final_metrics = parsed_metrics.ok() ? std::move(*parsed_metrics) : json::object();
  std::error_code error;
  if (record.job_dir.empty()) {
    problems.push_back("the registry names no job directory");
  } else if (!fs::is_directory(record.job_dir, error)) {
    problems.push_back(fmt::format("the job directory '{}' is missing", record.job_dir));
  } else if (record.kind != "tuning" &&
             !fs::exists(store::JobPaths{record.job_dir}.spec(), error)) {
    problems.push_back(
        fmt::format("'{}' is missing", store::JobPaths{record.job_dir}.spec().string()));
  }
  // A study's spec holds its trials' training spec: what they train on is what a person looks for.
  const json& trains =
      record.kind == "tuning" && spec.contains("training") && spec["training"].is_object()
          ? spec["training"]
          : spec;
  json world_size = number_or_null(spec, "world_size");
  if (world_size.is_null()) world_size = number_or_null(final_metrics, "world_size");
  return {{"name", record.name},
          {"kind", display_kind(record)},
          {"registry_kind", record.kind},
          {"parent", record.parent},
          {"status", store::job_status_name(record.status)},
          {"reason", record.failure_reason},
          {"arch", text_or_null(trains, "arch")},
          {"dataset", text_or_null(trains, "data")},
          {"command", text_or_null(spec, "command")},
          {"precision", text_or_null(trains, "precision")},
          {"world_size", world_size.is_null() ? json(1) : world_size},
          {"created_at", record.created_at},
          {"started_at", record.started_at},
          {"ended_at", record.ended_at},
          {"duration_seconds", record.duration_seconds(now)},
          {"final_metrics", final_metrics},
          {"problems", problems}};
}

// The last lines of log.txt (a partial first line is dropped when the file is longer).
json log_tail(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return {{"lines", json::array()}, {"truncated", false}, {"missing", true}};
  struct stat info {};
  std::string text;
  if (::fstat(fd, &info) == 0 && S_ISREG(info.st_mode)) {
    const off_t start =
        info.st_size > static_cast<off_t>(kLogTailBytes) ? info.st_size - kLogTailBytes : 0;
    text.resize(static_cast<size_t>(info.st_size - start));
    const ssize_t got = ::pread(fd, text.data(), text.size(), start);
    text.resize(got > 0 ? static_cast<size_t>(got) : 0);
    if (start > 0) {
      const size_t newline = text.find('\n');
      text.erase(0, newline == std::string::npos ? text.size() : newline + 1);
    }
  }
  ::close(fd);
  std::vector<std::string> lines;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(begin, end - begin);
    // A progress bar redraws with \r: keep what the terminal would show last.
    if (const size_t cr = line.rfind('\r'); cr != std::string::npos && cr + 1 < line.size())
      line.erase(0, cr + 1);
    lines.push_back(std::move(line));
    begin = end + 1;
  }
  const bool truncated =
      lines.size() > kLogTailLines || info.st_size > static_cast<off_t>(kLogTailBytes);
  if (lines.size() > kLogTailLines) lines.erase(lines.begin(), lines.end() - kLogTailLines);
  json out = {{"lines", json::array()}, {"truncated", truncated}, {"missing", false}};
  // Invalid UTF-8 in a log must not make the document unserialisable: the dump replaces it later.
  for (auto& line : lines) out["lines"].push_back(std::move(line));
  return out;
}

json file_entries(const std::string& job, const fs::path& dir, const std::string& prefix) {
  json entries = json::array();
  std::error_code error;
  std::vector<fs::directory_entry> found;
  for (fs::directory_iterator it(dir, error), end; !error && it != end; it.increment(error))
    found.push_back(*it);
  std::sort(found.begin(), found.end(),
            [](const fs::directory_entry& a, const fs::directory_entry& b) {
              return a.path() < b.path();
            });
  for (const auto& entry : found) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with(".")) continue;  // temp files of atomic writes
    std::error_code ignored;
    const bool is_dir = entry.is_directory(ignored);
    const bool is_link = entry.is_symlink(ignored);
    json row = {{"name", name}, {"dir", is_dir}};
    if (!is_dir && !is_link) {
      row["size"] = static_cast<int64_t>(entry.file_size(ignored));
      row["url"] = job_file_url(job, prefix + name);
    }
    entries.push_back(std::move(row));
  }
  return entries;
}

json debugger_section(const std::string& job, const store::JobPaths& paths, json& problems) {
  const fs::path rules_path = paths.debug() / "rules.json";
  std::error_code error;
  if (!fs::exists(paths.debug(), error)) return nullptr;
  json out = {{"rules", json::array()},
              {"tensors_url", fmt::format("/api/jobs/{}/tensors", detail::url_encode(job))}};
  auto rules = read_json_file(rules_path);
  if (!rules.ok()) {
    if (rules.status().code() != ErrorCode::kNotFound) problems.push_back(rules.status().message());
    out["error"] = rules.status().message();
    return out;
  }
  const json& list = rules->contains("rules") ? (*rules)["rules"] : json::array();
  if (!list.is_array()) return out;
  for (json rule : list) {
    if (!rule.is_object()) continue;
    const json tensor = text_or_null(rule, "tensor");
    const json step = number_or_null(rule, "step");
    if (tensor.is_string() && !tensor.get<std::string>().empty()) {
      std::string url = fmt::format("/api/jobs/{}/tensors?tensor={}", detail::url_encode(job),
                                    detail::url_encode(tensor.get<std::string>()));
      if (step.is_number()) url += fmt::format("&step={}", step.get<int64_t>());
      rule["tensor_url"] = url;
    }
    out["rules"].push_back(std::move(rule));
  }
  return out;
}

json profiler_section(const std::string& job, const store::JobPaths& paths, json& problems) {
  std::error_code error;
  if (!fs::exists(paths.profile(), error)) return nullptr;
  json out = {{"report_url", nullptr}, {"trace_url", nullptr}};
  for (const char* trace : {"trace.json", "trace.json.gz"}) {
    if (fs::exists(paths.profile() / trace, error))
      out["trace_url"] = job_file_url(job, std::string("profile/") + trace);
  }
  if (fs::exists(paths.profile() / "report.html", error))
    out["report_url"] = job_file_url(job, "profile/report.html");
  auto summary = read_json_file(paths.profile() / "summary.json");
  if (!summary.ok()) {
    if (summary.status().code() != ErrorCode::kNotFound)
      problems.push_back(summary.status().message());
    out["error"] = summary.status().message();
    return out;
  }
  // What the page shows; the per-sample series stay in the full report.
  for (const char* key : {"job", "steps", "phases", "utilisation", "rules"}) {
    if (summary->contains(key)) out[key] = (*summary)[key];
  }
  if (summary->contains("top_operators") && (*summary)["top_operators"].is_array()) {
    json top = (*summary)["top_operators"];
    if (top.size() > 15) top.erase(top.begin() + 15, top.end());
    out["top_operators"] = top;
  }
  return out;
}

json evaluation_section(const std::string& job, const store::JobPaths& paths, json& problems) {
  json out = json::array();
  std::error_code error;
  std::vector<fs::path> files;
  for (fs::directory_iterator it(paths.evaluation(), error), end; !error && it != end;
       it.increment(error)) {
    const std::string name = it->path().filename().string();
    if (name.ends_with("evaluation.json") && !name.starts_with(".")) files.push_back(it->path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    const std::string name = file.filename().string();
    const std::string prefix = name.substr(0, name.size() - std::string("evaluation.json").size());
    auto report = read_json_file(file);
    if (!report.ok()) {
      problems.push_back(report.status().message());
      continue;
    }
    json entry = *report;
    entry["name"] = prefix.empty()
                        ? "evaluation"
                        : prefix.substr(0, prefix.size() - (prefix.back() == '_' ? 1 : 0));
    if (fs::exists(paths.evaluation() / (prefix + "confusion_matrix.png"), error)) {
      entry["confusion_png_url"] =
          job_file_url(job, "evaluation/" + prefix + "confusion_matrix.png");
    }
    out.push_back(std::move(entry));
  }
  return out;
}

json model_section(const std::string& job, const store::JobPaths& paths, json& problems) {
  std::error_code error;
  if (!fs::is_directory(paths.model(), error)) return nullptr;
  json out = {{"files", file_entries(job, paths.model(), "model/")}, {"info", nullptr}};
  auto info = read_json_file(paths.model() / "model.json");
  if (info.ok()) {
    json brief = json::object();
    for (const auto& [key, value] : info->items()) {
      if (key != "classes") brief[key] = value;
    }
    if (info->contains("classes") && (*info)["classes"].is_array())
      brief["num_classes"] = (*info)["classes"].size();
    out["info"] = brief;
  } else if (info.status().code() != ErrorCode::kNotFound) {
    problems.push_back(info.status().message());
  }
  return out;
}

}  // namespace

std::string job_file_url(const std::string& job, const std::string& relative_path) {
  return fmt::format("/files/jobs/{}/{}", detail::url_encode(job),
                     detail::url_encode_path(relative_path));
}

std::string study_file_url(const std::string& study, const std::string& relative_path) {
  return fmt::format("/files/studies/{}/{}", detail::url_encode(study),
                     detail::url_encode_path(relative_path));
}

Result<json> StudioApi::jobs() {
  auto records = source_.list_jobs({});
  if (!records.ok()) return records.status();
  const double now = store::unix_now();
  json rows = json::array();
  for (const auto& record : *records) rows.push_back(job_row(record, now));
  return json{{"jobs", std::move(rows)}, {"now", now}, {"source", source_.describe()}};
}

Result<json> StudioApi::job(const std::string& name) {
  auto record = source_.get_job(name);
  if (!record.ok()) return record.status();
  const double now = store::unix_now();
  json row = job_row(*record, now);
  json problems = row["problems"];
  const store::JobPaths paths{record->job_dir};
  // The folder's resolved spec; the registry's copy when the file is unusable (and for a study).
  auto from_registry = parse_json_object(record->spec_json);
  json spec = from_registry.ok() ? *from_registry : json(nullptr);
  if (record->kind != "tuning") {
    auto from_file = read_json_file(paths.spec());
    if (from_file.ok()) {
      spec = std::move(*from_file);
    } else if (from_file.status().code() != ErrorCode::kNotFound) {
      problems.push_back(from_file.status().message());
    }
  }
  json detail = {{"job", row},
                 {"pid", record->pid},
                 {"host", record->host},
                 {"job_dir", record->job_dir},
                 {"heartbeat_at", record->heartbeat_at},
                 {"artifacts", parse_json_object(record->artifacts_json).ok()
                                   ? parse_json_object(record->artifacts_json).value()
                                   : json::object()},
                 {"spec", spec},
                 {"log", log_tail(paths.log())},
                 {"log_url", job_file_url(name, "log.txt")},
                 {"debugger", debugger_section(name, paths, problems)},
                 {"profiler", profiler_section(name, paths, problems)},
                 {"evaluations", evaluation_section(name, paths, problems)},
                 {"model", model_section(name, paths, problems)},
                 {"files", file_entries(name, paths.dir, "")}};
  auto history = metrics_cache_.read(paths.metrics(), INT64_MAX, true);
  if (history.ok() && history->skipped_lines > 0) {
    problems.push_back(fmt::format("{} line(s) of '{}' are not JSON records and were skipped",
                                   history->skipped_lines, paths.metrics().string()));
  } else if (!history.ok()) {
    problems.push_back(history.status().message());
  }
  detail["problems"] = problems;
  detail["job"]["problems"] = problems;
  return detail;
}

Result<json> StudioApi::metrics(const std::string& name, int64_t since) {
  auto record = source_.get_job(name);
  if (!record.ok()) return record.status();
  const bool finished = record->status != store::JobStatus::kInProgress;
  auto slice = metrics_cache_.read(store::JobPaths{record->job_dir}.metrics(), since, finished);
  if (!slice.ok()) return slice.status();
  return json{{"job", name},
              {"status", store::job_status_name(record->status)},
              {"finished", finished},
              {"since", since},
              {"next", slice->next},
              {"skipped_lines", slice->skipped_lines},
              {"records", std::move(slice->records)}};
}

Result<json> StudioApi::tensors(const std::string& name, const std::string& name_regex,
                                std::optional<int64_t> step) {
  auto record = source_.get_job(name);
  if (!record.ok()) return record.status();
  std::regex pattern;
  try {
    pattern = std::regex(name_regex.empty() ? ".*" : name_regex);
  } catch (const std::regex_error& error) {
    return invalid_argument("'{}' is not a valid regular expression: {}", name_regex, error.what());
  }
  const fs::path dir = store::JobPaths{record->job_dir}.debug();
  auto index = debug::read_index(dir);
  if (!index.ok()) return index.status();
  json summaries = json::array();
  bool truncated = false;
  for (const auto& entry : *index) {
    if ((step && entry.step != *step) || !std::regex_search(entry.name, pattern)) continue;
    if (summaries.size() >= kMaxTensorSummaries) {
      truncated = true;
      break;
    }
    auto summary = debug::read_summary(dir, entry);
    if (!summary.ok()) return summary.status();
    summaries.push_back(std::move(*summary));
  }
  return json{{"job", name}, {"summaries", std::move(summaries)}, {"truncated", truncated}};
}

Result<json> StudioApi::stop(const std::string& name) {
  auto record = source_.get_job(name);
  if (!record.ok()) return record.status();
  KENNEL_RETURN_IF_ERROR(store::request_stop(*record));
  return json{
      {"job", name},
      {"stopping", true},
      {"message", fmt::format("sent SIGTERM to job '{}' (pid {}): it checkpoints and ends Stopped",
                              name, record->pid)}};
}

Result<fs::path> StudioApi::job_dir(const std::string& name) {
  auto record = source_.get_job(name);
  if (!record.ok()) return record.status();
  if (record->job_dir.empty()) return not_found("job '{}' has no directory", name);
  return fs::path(record->job_dir);
}

}  // namespace kennel::studio

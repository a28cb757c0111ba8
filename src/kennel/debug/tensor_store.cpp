#include "kennel/debug/tensor_store.h"

#include <chrono>
#include <fstream>
#include <map>

#include <fmt/format.h>

#include "kennel/util/fs.h"

namespace kennel::debug {

namespace fs = std::filesystem;
using nlohmann::json;

json to_json(const TensorSummary& summary) {
  auto number = [](double value) { return std::isfinite(value) ? json(value) : json(std::to_string(value)); };
  json out = {{"name", summary.name},
              {"collection", summary.collection},
              {"step", summary.step},
              {"mode", mode_name(summary.mode)},
              {"count", summary.count},
              {"shape", summary.shape},
              {"min", number(summary.min)},
              {"max", number(summary.max)},
              {"mean", number(summary.mean)},
              {"std", number(summary.std)},
              {"variance", number(summary.variance)},
              {"l1", number(summary.l1)},
              {"l2", number(summary.l2)},
              {"fraction_zero", summary.fraction_zero},
              {"fraction_nan", summary.fraction_nan},
              {"fraction_inf", summary.fraction_inf},
              {"fraction_positive", summary.fraction_positive}};
  if (summary.histogram) out["histogram"] = {{"edges", summary.histogram->edges}, {"counts", summary.histogram->counts}};
  if (!summary.values.empty()) {
    json values = json::array();
    for (double value : summary.values) values.push_back(number(value));
    out["values"] = values;
  }
  return out;
}

namespace {
double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

Result<std::unique_ptr<TensorStore>> TensorStore::open(const fs::path& debug_dir, Rotation rotation) {
  KENNEL_RETURN_IF_ERROR(kennel::create_directories(debug_dir));
  rotation.bytes = std::max<int64_t>(rotation.bytes, 4096);
  std::unique_ptr<TensorStore> store(new TensorStore(debug_dir, rotation));
  store->index_ = std::fopen((debug_dir / "index.jsonl").c_str(), "a");
  if (!store->index_) {
    return Status(ErrorCode::kPermissionDenied,
                  fmt::format("cannot write '{}'", (debug_dir / "index.jsonl").string()));
  }
  // A resumed job appends: continue after the highest data file.
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(debug_dir, error)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("tensors-", 0) == 0) {
      try {
        store->file_number_ = std::max<int64_t>(store->file_number_, std::stoll(name.substr(8, 4)));
      } catch (const std::exception&) {
      }
    }
  }
  KENNEL_RETURN_IF_ERROR(store->rotate());
  return store;
}

TensorStore::~TensorStore() {
  if (data_) std::fclose(data_);
  if (index_) std::fclose(index_);
}

Status TensorStore::rotate() {
  if (data_) std::fclose(data_);
  ++file_number_;
  const fs::path path = dir_ / fmt::format("tensors-{:04d}.jsonl", file_number_);
  data_ = std::fopen(path.c_str(), "a");
  if (!data_) return Status(ErrorCode::kPermissionDenied, fmt::format("cannot write '{}'", path.string()));
  std::fseek(data_, 0, SEEK_END);
  offset_ = std::ftell(data_);
  events_.reset();  // closes the previous event file before the next one starts
  auto events = EventFileWriter::open(dir_ / "events");
  if (!events.ok()) return events.status();
  events_ = std::move(*events);
  opened_at_ = steady_seconds();
  return {};
}

Status TensorStore::write(const StepRecord& record) {
  const std::string file = fmt::format("tensors-{:04d}.jsonl", file_number_);
  std::string index_lines;
  for (const auto& summary : record.tensors) {
    const std::string line = to_json(summary).dump() + "\n";
    if (std::fwrite(line.data(), 1, line.size(), data_) != line.size()) {
      return Status(ErrorCode::kResourceExhausted, fmt::format("cannot write to '{}'", (dir_ / file).string()));
    }
    index_lines += json{{"name", summary.name},
                        {"step", summary.step},
                        {"mode", mode_name(summary.mode)},
                        {"file", file},
                        {"offset", offset_},
                        {"length", line.size()}}
                       .dump() +
                   "\n";
    offset_ += static_cast<int64_t>(line.size());
    // TensorBoard: scalars as themselves, tensors as a few curves and a histogram.
    if (summary.count == 1 && !summary.values.empty()) {
      events_->add_scalar(summary.name, summary.step, static_cast<float>(summary.values[0]));
    } else {
      events_->add_scalar(summary.name + "/mean", summary.step, static_cast<float>(summary.mean));
      events_->add_scalar(summary.name + "/l2", summary.step, static_cast<float>(summary.l2));
      if (summary.histogram && !summary.histogram->counts.empty()) {
        kennel::Histogram histogram;
        histogram.min = summary.min;
        histogram.max = summary.max;
        histogram.num = static_cast<double>(summary.count);
        histogram.sum = summary.mean * static_cast<double>(summary.count);
        histogram.sum_squares = (summary.variance + summary.mean * summary.mean) * static_cast<double>(summary.count);
        for (size_t b = 0; b < summary.histogram->counts.size(); ++b) {
          histogram.bucket_limits.push_back(summary.histogram->edges[b + 1]);
          histogram.bucket_counts.push_back(static_cast<double>(summary.histogram->counts[b]));
        }
        events_->add_histogram(summary.name, summary.step, histogram);
      }
    }
  }
  std::fflush(data_);
  // The index line is written after its data, so an index entry always points at a whole line.
  std::fputs(index_lines.c_str(), index_);
  std::fflush(index_);
  if (offset_ >= rotation_.bytes || steady_seconds() - opened_at_ >= rotation_.seconds) return rotate();
  return {};
}

Status discard_records_after(const fs::path& debug_dir, int64_t steps_done) {
  const fs::path index_path = debug_dir / "index.jsonl";
  std::error_code error;
  if (fs::exists(index_path, error)) {
    auto text = read_file_text(index_path);
    if (!text.ok()) return text.status().with_context("discarding the debugger records a resumed job repeats");
    std::string kept;
    std::map<std::string, int64_t> kept_end;  // data file -> end of its last kept record
    size_t start = 0;
    while (start < text->size()) {
      const size_t end = text->find('\n', start);
      if (end == std::string::npos) break;  // a torn last line
      const std::string_view line(text->data() + start, end - start + 1);
      start = end + 1;
      const json item = json::parse(line, nullptr, /*allow_exceptions=*/false);
      try {
        if (item.at("step").get<int64_t>() >= steps_done) continue;
        const std::string file = item.at("file").get<std::string>();
        const int64_t record_end = item.at("offset").get<int64_t>() + item.at("length").get<int64_t>();
        kept_end[file] = std::max(kept_end[file], record_end);
      } catch (const std::exception&) {
        continue;  // not an index line: read_index skips it too
      }
      kept += line;
    }
    if (kept.size() != text->size()) KENNEL_RETURN_IF_ERROR(write_file_atomic(index_path, kept));
    // Data files: what follows the last kept record is superseded (or was never indexed).
    for (fs::directory_iterator it(debug_dir, error), end; !error && it != end; it.increment(error)) {
      const std::string name = it->path().filename().string();
      if (name.rfind("tensors-", 0) != 0 || it->path().extension() != ".jsonl") continue;
      const auto found = kept_end.find(name);
      const int64_t keep = found == kept_end.end() ? 0 : found->second;
      std::error_code inner;
      const auto size = static_cast<int64_t>(fs::file_size(it->path(), inner));
      if (inner || size <= keep) continue;
      if (keep == 0) {
        fs::remove(it->path(), inner);
      } else {
        fs::resize_file(it->path(), static_cast<uintmax_t>(keep), inner);
      }
      if (inner) {
        return Status(ErrorCode::kPermissionDenied,
                      fmt::format("cannot cut '{}' back to step {}: {}", it->path().string(), steps_done,
                                  inner.message()));
      }
    }
  }
  auto dropped = drop_events(debug_dir / "events",
                             [steps_done](const EventRecord& record) {
                               return !record.tag.empty() && record.step >= steps_done;  // not the file_version
                             });
  if (!dropped.ok()) return dropped.status().with_context("discarding the debugger records a resumed job repeats");
  return {};
}

Result<std::vector<IndexEntry>> read_index(const fs::path& debug_dir) {
  std::ifstream in(debug_dir / "index.jsonl");
  if (!in) {
    return not_found("no debugger records in '{}': run the job with --debugger default (or a spec file)",
                     debug_dir.string());
  }
  std::vector<IndexEntry> entries;
  std::string line;
  while (std::getline(in, line)) {
    try {
      const json item = json::parse(line);
      entries.push_back({item.at("name").get<std::string>(), item.at("step").get<int64_t>(),
                         item.at("mode").get<std::string>(), item.at("file").get<std::string>(),
                         item.at("offset").get<int64_t>(), item.at("length").get<int64_t>()});
    } catch (const std::exception&) {
      // A torn last line (the job was killed mid-write) is skipped.
    }
  }
  return entries;
}

Result<json> read_summary(const fs::path& debug_dir, const IndexEntry& entry) {
  if (entry.file.find('/') != std::string::npos || entry.file.find("..") != std::string::npos) {
    return Status(ErrorCode::kDataLoss, fmt::format("index.jsonl names an unexpected file '{}'", entry.file));
  }
  std::ifstream in(debug_dir / entry.file, std::ios::binary);
  if (!in) return not_found("'{}' is missing", (debug_dir / entry.file).string());
  in.seekg(entry.offset);
  std::string text(static_cast<size_t>(std::max<int64_t>(entry.length, 0)), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  try {
    return json::parse(text.substr(0, static_cast<size_t>(in.gcount())));
  } catch (const std::exception&) {
    return Status(ErrorCode::kDataLoss, fmt::format("'{}' at byte {}: not a JSON record (index and data disagree)",
                                                    (debug_dir / entry.file).string(), entry.offset));
  }
}

}  // namespace kennel::debug

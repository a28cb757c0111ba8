#include "kennel/serve/batch_transform.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "kennel/data/image_header.h"
#include "kennel/models/model_dir.h"
#include "kennel/util/fs.h"
#include "kennel/util/parallel.h"
#include "kennel/util/progress.h"

namespace kennel::serve {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool is_url(const std::string& text) { return text.find("://") != std::string::npos; }

Result<std::vector<std::string>> list_inputs(const std::string& input) {
  std::error_code error;
  std::vector<std::string> inputs;
  if (fs::is_directory(input, error)) {
    for (auto it = fs::recursive_directory_iterator(input, fs::directory_options::skip_permission_denied, error);
         it != fs::recursive_directory_iterator(); it.increment(error)) {
      if (error) return Status(ErrorCode::kPermissionDenied, fmt::format("cannot list '{}': {}", input, error.message()));
      if (it->is_regular_file(error) && data::has_image_extension(it->path().filename().string())) {
        inputs.push_back(it->path().string());
      }
    }
    std::sort(inputs.begin(), inputs.end());
    if (inputs.empty()) return failed_precondition("'{}' holds no images (jpg, jpeg, png, bmp, webp, tif, tiff)", input);
    return inputs;
  }
  auto text = read_file_text(input);
  if (!text.ok()) return text.status().with_context("reading the input manifest");
  const fs::path base = fs::path(input).parent_path();
  size_t start = 0;
  while (start < text->size()) {
    size_t end = text->find('\n', start);
    if (end == std::string::npos) end = text->size();
    std::string line = text->substr(start, end - start);
    start = end + 1;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    if (!is_url(line) && fs::path(line).is_relative()) line = (base / line).string();
    inputs.push_back(line);
  }
  if (inputs.empty()) return failed_precondition("manifest '{}' lists no inputs (one path or URL per line)", input);
  return inputs;
}

// The lines of an earlier run's output. A trailing partial line left by a crash is not among them.
struct PreviousOutput {
  std::vector<std::string> lines;  // whole lines, without their '\n'
  std::vector<json> records;       // each line parsed
  bool torn_tail = false;
};

Result<PreviousOutput> read_previous_output(const fs::path& output) {
  PreviousOutput previous;
  std::error_code error;
  if (!fs::exists(output, error)) return previous;
  auto text = read_file_text(output);
  if (!text.ok()) return text.status().with_context("reading the existing output");
  size_t complete = text->rfind('\n');
  complete = complete == std::string::npos ? 0 : complete + 1;
  previous.torn_tail = complete < text->size();
  size_t start = 0;
  while (start < complete) {
    const size_t end = text->find('\n', start);
    std::string line = text->substr(start, end - start);
    json record = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!record.is_object()) {
      return Status(ErrorCode::kDataLoss, fmt::format("'{}' has a line that is not JSON at byte {}: it is not a "
                                                      "kennel transform output (use another --out)",
                                                      output.string(), start));
    }
    previous.lines.push_back(std::move(line));
    previous.records.push_back(std::move(record));
    start = end + 1;
  }
  return previous;
}

// What made an output. A resume must use the same, or one file would hold two models' answers.
json run_record(const fs::path& model_dir, const std::string& model_digest, int64_t top_k) {
  return {{"format_version", 1}, {"model_sha256", model_digest}, {"model_dir", model_dir.string()}, {"top_k", top_k}};
}

Status check_run_record(const fs::path& output, const PreviousOutput& previous, const json& wanted) {
  const fs::path path = transform_run_record_path(output);
  if (previous.lines.empty()) return write_file_atomic(path, wanted.dump(2) + "\n");  // a new output
  const std::string advice = fmt::format("use another --out, or delete '{}' and '{}' to start over", output.string(),
                                         path.string());
  auto text = read_file_text(path);
  if (!text.ok()) {
    return failed_precondition("'{}' has {} lines but no readable record of the model that wrote them ('{}'): "
                               "cannot tell whether resuming would mix two models; {}",
                               output.string(), previous.lines.size(), path.string(), advice);
  }
  const json recorded = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!recorded.is_object()) return Status(ErrorCode::kDataLoss, fmt::format("'{}' is not JSON; {}", path.string(), advice));
  const std::string recorded_digest = recorded.value("model_sha256", "");
  if (recorded_digest != wanted["model_sha256"].get<std::string>()) {
    return failed_precondition("'{}' was written with another model ({}, sha256 {}) than this run's ({}, sha256 "
                               "{}): resuming would mix two models in one output; {}",
                               output.string(), recorded.value("model_dir", "?"), recorded_digest.substr(0, 12),
                               wanted["model_dir"].get<std::string>(),
                               wanted["model_sha256"].get<std::string>().substr(0, 12), advice);
  }
  if (recorded.value("top_k", int64_t{-1}) != wanted["top_k"].get<int64_t>()) {
    return failed_precondition("'{}' was written with --top-k {}, this run asks for {}: resuming would mix both; {}",
                               output.string(), recorded.value("top_k", int64_t{-1}),
                               wanted["top_k"].get<int64_t>(), advice);
  }
  return {};
}

json prediction_json(const Prediction& p) {
  return {{"label", p.label}, {"index", p.index}, {"probability", p.probability}};
}

}  // namespace

std::filesystem::path transform_run_record_path(const std::filesystem::path& output) {
  return fs::path(output.string() + ".run.json");
}

Result<BatchTransformSummary> run_batch_transform(const fs::path& model_dir, const std::string& input,
                                                  const fs::path& output, const BatchTransformOptions& options) {
  if (options.batch_size < 1) return invalid_argument("--batch-size must be >= 1, got {}", options.batch_size);
  if (options.top_k < 1) return invalid_argument("--top-k must be >= 1, got {}", options.top_k);
  if (options.max_attempts < 1) return invalid_argument("--max-attempts must be >= 1, got {}", options.max_attempts);
  auto inputs = list_inputs(input);
  if (!inputs.ok()) return inputs.status();
  auto previous = read_previous_output(output);
  if (!previous.ok()) return previous.status();
  auto digest = models::model_dir_digest(model_dir);
  if (!digest.ok()) return digest.status();
  if (!output.parent_path().empty()) KENNEL_RETURN_IF_ERROR(kennel::create_directories(output.parent_path()));
  KENNEL_RETURN_IF_ERROR(check_run_record(output, *previous, run_record(model_dir, *digest, options.top_k)));
  auto predictor = Predictor::load(model_dir, options.predictor);
  if (!predictor.ok()) return predictor.status();
  auto fetcher = make_url_fetcher(options.fetch);
  if (!fetcher.ok()) return fetcher.status();

  // Inputs answered earlier: predicted, or failed with attempts left (their error lines give way to this run's).
  std::set<std::string> finished;
  std::map<std::string, int64_t> failed_attempts;
  std::string kept;
  for (size_t i = 0; i < previous->lines.size(); ++i) {
    const json& record = previous->records[i];
    const std::string item = record.value("input", "");
    if (record.contains("error") && !item.empty()) {
      const int64_t attempts = record.value("attempts", int64_t{1});
      if (attempts < options.max_attempts) {
        failed_attempts[item] = std::max(failed_attempts[item], attempts);
        continue;
      }
    }
    if (!item.empty()) finished.insert(item);
    kept += previous->lines[i] + "\n";
  }
  for (const auto& item : finished) failed_attempts.erase(item);
  if (previous->torn_tail || !failed_attempts.empty()) KENNEL_RETURN_IF_ERROR(write_file_atomic(output, kept));

  BatchTransformSummary summary;
  summary.total = static_cast<int64_t>(inputs->size());
  std::vector<std::string> todo;
  for (const auto& item : *inputs) {
    if (finished.count(item)) {
      ++summary.already_done;
    } else {
      if (failed_attempts.count(item)) ++summary.retried;
      todo.push_back(item);
    }
  }
  FILE* out = std::fopen(output.c_str(), "a");
  if (out == nullptr) {
    return Status(ErrorCode::kPermissionDenied, fmt::format("cannot write '{}': {}", output.string(), std::strerror(errno)));
  }
  Progress progress("transform", todo.size(), options.quiet);
  const int threads = options.decode_threads > 0 ? options.decode_threads : default_thread_count();
  const auto classes = (*predictor)->info().classes;
  Status write_status;
  for (size_t begin = 0; begin < todo.size() && write_status.ok(); begin += static_cast<size_t>(options.batch_size)) {
    const size_t count = std::min(todo.size() - begin, static_cast<size_t>(options.batch_size));
    std::vector<at::Tensor> images(count);
    std::vector<std::string> errors(count);
    std::vector<int64_t> attempts(count);
    parallel_for(count, threads, [&](size_t i) {
      const std::string& item = todo[begin + i];
      const auto earlier = failed_attempts.find(item);
      attempts[i] = earlier == failed_attempts.end() ? 0 : earlier->second;
      ++attempts[i];
      std::string bytes;
      if (is_url(item)) {
        auto body = (*fetcher)->fetch(item);
        // A fetch can fail for a moment (a reset, a 503, a timeout): try again while attempts are left.
        // A refused address, a malformed URL, a 404 or an oversized body would fail the same way again.
        auto transient = [](const Status& status) {
          return status.code() == ErrorCode::kUpstreamFailed || status.code() == ErrorCode::kDeadlineExceeded;
        };
        while (!body.ok() && transient(body.status()) && attempts[i] < options.max_attempts) {
          std::this_thread::sleep_for(std::chrono::milliseconds(100 * attempts[i]));
          ++attempts[i];
          body = (*fetcher)->fetch(item);
        }
        if (!body.ok()) {
          errors[i] = body.status().message();
          return;
        }
        bytes = std::move(body).value();
      } else {
        auto file = read_file_bytes(item, 256ull << 20);
        if (!file.ok()) {
          errors[i] = file.status().message();
          return;
        }
        bytes.assign(file->begin(), file->end());
      }
      auto image = (*predictor)->preprocess(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
      if (!image.ok()) {
        errors[i] = image.status().message();
        return;
      }
      images[i] = std::move(image).value();
    });
    std::vector<at::Tensor> good;
    for (const auto& image : images) {
      if (image.defined()) good.push_back(image);
    }
    std::vector<std::vector<Prediction>> predictions;
    if (!good.empty()) predictions = top_k((*predictor)->predict(at::stack(good)), options.top_k, classes);
    std::string lines;
    size_t next = 0;
    for (size_t i = 0; i < count; ++i) {
      json line = {{"input", todo[begin + i]}};
      if (images[i].defined()) {
        const auto& row = predictions[next++];
        line["label"] = row.front().label;
        line["index"] = row.front().index;
        line["probability"] = row.front().probability;
        json top = json::array();
        for (const auto& p : row) top.push_back(prediction_json(p));
        line["top_k"] = top;
        ++summary.ok;
      } else {
        line["error"] = errors[i];
        line["attempts"] = attempts[i];
        ++summary.failed;
      }
      lines += line.dump() + "\n";
    }
    if (std::fwrite(lines.data(), 1, lines.size(), out) != lines.size() || std::fflush(out) != 0 ||
        ::fdatasync(fileno(out)) != 0) {
      write_status = Status(ErrorCode::kPermissionDenied,
                            fmt::format("cannot write '{}': {}", output.string(), std::strerror(errno)));
    }
    progress.advance(count);
  }
  std::fclose(out);
  progress.finish();
  if (!write_status.ok()) return write_status;
  return summary;
}

}  // namespace kennel::serve

#include "kennel/serve/batch_transform.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "kennel/data/image_header.h"
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

// Inputs already answered in `output`; drops a trailing partial line left by a crash.
Result<std::set<std::string>> done_inputs(const fs::path& output) {
  std::set<std::string> done;
  std::error_code error;
  if (!fs::exists(output, error)) return done;
  auto text = read_file_text(output);
  if (!text.ok()) return text.status().with_context("reading the existing output");
  size_t complete = text->rfind('\n');
  complete = complete == std::string::npos ? 0 : complete + 1;
  if (complete < text->size()) {
    fs::resize_file(output, complete, error);
    if (error) {
      return Status(ErrorCode::kPermissionDenied,
                    fmt::format("cannot repair '{}' (a partial last line): {}", output.string(), error.message()));
    }
  }
  size_t start = 0;
  while (start < complete) {
    const size_t end = text->find('\n', start);
    try {
      const json line = json::parse(text->substr(start, end - start));
      if (line.contains("input")) done.insert(line["input"].get<std::string>());
    } catch (const std::exception&) {
      return Status(ErrorCode::kDataLoss, fmt::format("'{}' has a line that is not JSON at byte {}: it is not a "
                                                      "kennel transform output (use another --out)",
                                                      output.string(), start));
    }
    start = end + 1;
  }
  return done;
}

json prediction_json(const Prediction& p) {
  return {{"label", p.label}, {"index", p.index}, {"probability", p.probability}};
}

}  // namespace

Result<BatchTransformSummary> run_batch_transform(const fs::path& model_dir, const std::string& input,
                                                  const fs::path& output, const BatchTransformOptions& options) {
  if (options.batch_size < 1) return invalid_argument("--batch-size must be >= 1, got {}", options.batch_size);
  if (options.top_k < 1) return invalid_argument("--top-k must be >= 1, got {}", options.top_k);
  auto inputs = list_inputs(input);
  if (!inputs.ok()) return inputs.status();
  auto done = done_inputs(output);
  if (!done.ok()) return done.status();
  auto predictor = Predictor::load(model_dir, options.predictor);
  if (!predictor.ok()) return predictor.status();
  auto fetcher = make_url_fetcher(options.fetch);
  if (!fetcher.ok()) return fetcher.status();
  if (!output.parent_path().empty()) KENNEL_RETURN_IF_ERROR(kennel::create_directories(output.parent_path()));

  BatchTransformSummary summary;
  summary.total = static_cast<int64_t>(inputs->size());
  std::vector<std::string> todo;
  for (const auto& item : *inputs) {
    if (done->count(item)) {
      ++summary.already_done;
    } else {
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
    parallel_for(count, threads, [&](size_t i) {
      const std::string& item = todo[begin + i];
      std::string bytes;
      if (is_url(item)) {
        auto body = (*fetcher)->fetch(item);
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

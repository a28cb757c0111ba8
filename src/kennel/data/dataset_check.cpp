#include "kennel/data/dataset_check.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "kennel/data/decode.h"
#include "kennel/data/image_header.h"
#include "kennel/util/fs.h"
#include "kennel/util/hash.h"
#include "kennel/util/parallel.h"
#include "kennel/util/progress.h"

namespace kennel::data {

namespace fs = std::filesystem;

namespace {
struct IssueInfo {
  IssueKind kind;
  const char* name;
  bool error;
};
constexpr IssueInfo kIssueTable[] = {
    {IssueKind::kUnreadable, "unreadable", true},   {IssueKind::kZeroByte, "zero_byte", true},
    {IssueKind::kNotAnImage, "not_an_image", true}, {IssueKind::kTruncated, "truncated", true},
    {IssueKind::kCorrupt, "corrupt", true},         {IssueKind::kTooLarge, "too_large", true},
    {IssueKind::kTooSmall, "too_small", true},      {IssueKind::kGrayscale, "grayscale", false},
    {IssueKind::kCmyk, "cmyk", false},              {IssueKind::kHasAlpha, "has_alpha", false},
    {IssueKind::kDuplicate, "duplicate", false},
};

std::string hex_prefix(const std::vector<uint8_t>& bytes) {
  std::string hex;
  for (size_t i = 0; i < std::min<size_t>(bytes.size(), 8); ++i) hex += fmt::format("{:02x} ", bytes[i]);
  if (!hex.empty()) hex.pop_back();
  return hex;
}

std::string relative_to(const std::string& path, const fs::path& root) {
  const std::string prefix = root.string();
  if (path.size() > prefix.size() && path.compare(0, prefix.size(), prefix) == 0) {
    size_t start = prefix.size();
    while (start < path.size() && path[start] == '/') ++start;
    return path.substr(start);
  }
  return path;
}
}  // namespace

const char* issue_kind_name(IssueKind kind) {
  for (const auto& info : kIssueTable) {
    if (info.kind == kind) return info.name;
  }
  return "unknown";
}

bool issue_is_error(IssueKind kind) {
  for (const auto& info : kIssueTable) {
    if (info.kind == kind) return info.error;
  }
  return true;
}

bool FileReport::usable() const {
  return std::none_of(issues.begin(), issues.end(),
                      [](const Issue& issue) { return issue_is_error(issue.kind); });
}

Status CheckOptions::validate() const {
  if (threads < 0) return invalid_argument("--threads must be >= 0 (0 = all cores), got {}", threads);
  if (max_pixels < 0) return invalid_argument("--max-pixels must be >= 0 (0 = no limit), got {}", max_pixels);
  if (min_side < 1) return invalid_argument("--min-size must be >= 1, got {}", min_side);
  return scan.validate();
}

FileReport check_image_file(const fs::path& path, const CheckOptions& options) {
  FileReport report;
  report.path = path.string();
  auto add = [&](IssueKind kind, std::string detail) {
    report.issues.push_back({kind, std::move(detail)});
  };
  auto bytes = read_file_bytes(path, options.max_file_bytes);
  if (!bytes.ok()) {
    const Status& status = bytes.status();
    if (status.code() == ErrorCode::kResourceExhausted) {
      add(IssueKind::kTooLarge, status.message());
    } else if (status.code() == ErrorCode::kNotFound) {
      add(IssueKind::kUnreadable, "missing or a dangling symlink: " + status.message());
    } else {
      add(IssueKind::kUnreadable, status.message());
    }
    return report;
  }
  report.bytes = bytes->size();
  if (bytes->empty()) {
    add(IssueKind::kZeroByte, "the file is empty (0 bytes)");
    return report;
  }
  report.sha256 = sha256_hex(bytes->data(), bytes->size());
  const auto header = probe_image_header(*bytes);
  if (!header) {
    add(IssueKind::kNotAnImage,
        fmt::format("no JPEG, PNG, BMP, WebP or TIFF signature (starts with {})", hex_prefix(*bytes)));
    return report;
  }
  report.format = image_format_name(header->format);
  report.width = header->width;
  report.height = header->height;
  const uint64_t pixels = header->pixel_count();
  if (options.max_pixels > 0 && pixels > static_cast<uint64_t>(options.max_pixels)) {
    add(IssueKind::kTooLarge,
        fmt::format("header claims {}x{} = {} pixels, over the limit of {} (not decoded; raise "
                    "--max-pixels if genuine)",
                    header->width, header->height, pixels, options.max_pixels));
    return report;
  }
  if (header->truncated) {
    add(IssueKind::kTruncated, fmt::format("truncated {}: the end of the image data is missing",
                                           report.format));
    return report;
  }
  if (options.decode) {
    DecodeOptions decode_options;
    decode_options.max_pixels = options.max_pixels;
    // A reduced-scale JPEG decode still entropy-decodes every block, so it finds
    // the same corruption several times faster.
    decode_options.min_short_side = options.min_side;
    decode_options.apply_exif_orientation = false;
    auto decoded = decode_image(*bytes, decode_options);
    if (!decoded.ok()) {
      add(IssueKind::kCorrupt, decoded.status().message());
      return report;
    }
    if (report.width == 0 || report.height == 0) {
      report.width = int64_t{decoded->rgb.cols} * decoded->reduction;
      report.height = int64_t{decoded->rgb.rows} * decoded->reduction;
    }
  }
  if (report.width > 0 && std::min(report.width, report.height) < options.min_side) {
    add(IssueKind::kTooSmall, fmt::format("{}x{}: shorter side under --min-size {}", report.width,
                                          report.height, options.min_side));
  }
  if (header->is_grayscale()) add(IssueKind::kGrayscale, "grayscale: converted to RGB when loaded");
  if (header->color_model == ColorModel::kCmyk) add(IssueKind::kCmyk, "CMYK: converted to RGB when loaded");
  if (header->has_alpha()) add(IssueKind::kHasAlpha, fmt::format("{} with transparency: alpha is dropped when loaded", color_model_name(header->color_model)));
  return report;
}

Result<DatasetReport> check_dataset(const fs::path& root, const CheckOptions& options) {
  KENNEL_RETURN_IF_ERROR(options.validate());
  const auto start = std::chrono::steady_clock::now();
  auto index = scan_image_folder(root, options.scan);
  if (!index.ok()) return index.status();
  DatasetReport report;
  report.index = std::move(index).value();

  struct Entry {
    const ImageSample* sample;
    const std::string* split;
  };
  std::vector<Entry> entries;
  for (const auto& split : report.index.splits) {
    for (const auto& sample : split.samples) entries.push_back({&sample, &split.name});
  }
  report.files.resize(entries.size());
  {
    Progress progress("checking images", entries.size(), options.quiet);
    parallel_for(entries.size(), options.threads, [&](size_t i) {
      FileReport file = check_image_file(entries[i].sample->path, options);
      file.split = *entries[i].split;
      file.label = entries[i].sample->label;
      report.files[i] = std::move(file);
      progress.advance();
    });
  }

  // Exact duplicates: the first file (in index order) is the original.
  std::unordered_map<std::string, size_t> first_with_hash;
  for (size_t i = 0; i < report.files.size(); ++i) {
    FileReport& file = report.files[i];
    if (file.sha256.empty() || !file.usable()) continue;
    auto [it, inserted] = first_with_hash.emplace(file.sha256, i);
    if (inserted) continue;
    const FileReport& original = report.files[it->second];
    std::string detail = fmt::format("same bytes as '{}'", relative_to(original.path, root));
    if (original.split != file.split) {
      detail += fmt::format(" (in {} and {}: evaluation leaks training data)", original.split, file.split);
    }
    file.issues.push_back({IssueKind::kDuplicate, std::move(detail)});
  }

  const size_t num_classes = report.index.classes.size();
  for (const auto& split : report.index.splits) {
    SplitSummary summary;
    summary.name = split.name;
    summary.class_counts.assign(num_classes, 0);
    for (const auto& file : report.files) {
      if (file.split != split.name) continue;
      ++summary.files;
      const bool has_error = !file.usable();
      const bool has_warning = std::any_of(file.issues.begin(), file.issues.end(),
                                           [](const Issue& i) { return !issue_is_error(i.kind); });
      summary.errors += has_error ? 1 : 0;
      summary.warnings += has_warning ? 1 : 0;
      if (!has_error) {
        ++summary.usable;
        ++summary.class_counts[static_cast<size_t>(file.label)];
      }
    }
    const auto [smallest, largest] =
        std::minmax_element(summary.class_counts.begin(), summary.class_counts.end());
    summary.imbalance = *smallest == 0 ? std::numeric_limits<double>::infinity()
                                       : static_cast<double>(*largest) / static_cast<double>(*smallest);
    report.splits.push_back(std::move(summary));
  }

  const SplitSummary& train = report.splits.front();
  if (num_classes < 2) {
    report.problems.push_back(fmt::format(
        "only {} class ('{}'): a classifier needs at least two class folders", num_classes,
        report.index.classes.empty() ? "" : report.index.classes.front()));
  }
  if (train.usable == 0) {
    report.problems.push_back(fmt::format("no readable images in the train split ({} file(s), all bad)", train.files));
  }
  for (size_t label = 0; label < num_classes; ++label) {
    if (train.class_counts[label] == 0) {
      report.index.warnings.push_back(fmt::format(
          "class '{}' has no usable training images: the model cannot learn it",
          report.index.classes[label]));
    }
  }
  report.usable = report.problems.empty();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

nlohmann::json to_json(const DatasetReport& report) {
  using nlohmann::json;
  const auto& classes = report.index.classes;
  json out;
  out["root"] = report.index.root.string();
  out["usable"] = report.usable;
  out["problems"] = report.problems;
  out["warnings"] = report.index.warnings;
  out["classes"] = classes;
  out["valid_split_from_train"] = report.index.valid_split_from_train;
  out["ignored_files"] = report.index.ignored_files;
  json splits = json::array();
  json issue_counts = json::object();
  int64_t files = 0, usable = 0;
  for (const auto& split : report.splits) {
    json counts = json::object();
    for (size_t i = 0; i < classes.size(); ++i) counts[classes[i]] = split.class_counts[i];
    splits.push_back({{"name", split.name},
                      {"files", split.files},
                      {"usable", split.usable},
                      {"errors", split.errors},
                      {"warnings", split.warnings},
                      {"imbalance", std::isinf(split.imbalance) ? json(nullptr) : json(split.imbalance)},
                      {"class_counts", counts}});
    files += split.files;
    usable += split.usable;
  }
  out["splits"] = splits;
  json bad = json::array();
  for (const auto& file : report.files) {
    if (file.issues.empty()) continue;
    json issues = json::array();
    for (const auto& issue : file.issues) {
      issues.push_back({{"kind", issue_kind_name(issue.kind)},
                        {"severity", issue_is_error(issue.kind) ? "error" : "warning"},
                        {"detail", issue.detail}});
      issue_counts[issue_kind_name(issue.kind)] = issue_counts.value(issue_kind_name(issue.kind), 0) + 1;
    }
    bad.push_back({{"path", file.path},
                   {"relative_path", relative_to(file.path, report.index.root)},
                   {"split", file.split},
                   {"class", file.label >= 0 ? classes[static_cast<size_t>(file.label)] : ""},
                   {"format", file.format},
                   {"width", file.width},
                   {"height", file.height},
                   {"bytes", file.bytes},
                   {"usable", file.usable()},
                   {"issues", issues}});
  }
  out["files_with_issues"] = bad;
  out["issue_counts"] = issue_counts;
  out["summary"] = {{"files", files}, {"usable", usable}, {"skipped", files - usable},
                    {"seconds", report.seconds}};
  return out;
}

std::string format_report_text(const DatasetReport& report, int max_listed_per_issue) {
  const auto& classes = report.index.classes;
  const fs::path& root = report.index.root;
  std::string out = fmt::format("dataset {}: {} classes, {} split(s){}\n\n", root.string(),
                                classes.size(), report.splits.size(),
                                report.index.valid_split_from_train ? " (valid split taken from train)" : "");
  out += fmt::format("{:<8} {:>8} {:>8} {:>8} {:>9} {:>10}\n", "split", "files", "usable", "errors",
                     "warnings", "imbalance");
  for (const auto& split : report.splits) {
    out += fmt::format("{:<8} {:>8} {:>8} {:>8} {:>9} {:>10}\n", split.name, split.files, split.usable,
                       split.errors, split.warnings,
                       std::isinf(split.imbalance) ? std::string("inf") : fmt::format("{:.2f}", split.imbalance));
  }
  size_t width = 5;
  for (const auto& name : classes) width = std::max(width, name.size());
  out += fmt::format("\nusable images per class\n{:<{}}", "class", width);
  for (const auto& split : report.splits) out += fmt::format(" {:>7}", split.name);
  out += "\n";
  for (size_t i = 0; i < classes.size(); ++i) {
    out += fmt::format("{:<{}}", classes[i], width);
    for (const auto& split : report.splits) out += fmt::format(" {:>7}", split.class_counts[i]);
    out += "\n";
  }
  for (bool errors : {true, false}) {
    bool heading = false;
    for (const auto& info : kIssueTable) {
      if (info.error != errors) continue;
      std::vector<std::string> lines;
      for (const auto& file : report.files) {
        for (const auto& issue : file.issues) {
          if (issue.kind == info.kind) {
            lines.push_back(fmt::format("    {}: {}", relative_to(file.path, root), issue.detail));
          }
        }
      }
      if (lines.empty()) continue;
      if (!heading) {
        out += errors ? "\nbad files (errors: skipped by training)\n"
                      : "\nwarnings (files are used after conversion)\n";
        heading = true;
      }
      out += fmt::format("  {} ({})\n", info.name, lines.size());
      for (size_t i = 0; i < lines.size() && static_cast<int>(i) < max_listed_per_issue; ++i) {
        out += lines[i] + "\n";
      }
      if (static_cast<int>(lines.size()) > max_listed_per_issue) {
        out += fmt::format("    ... and {} more (see --json)\n", lines.size() - max_listed_per_issue);
      }
    }
  }
  if (!report.index.warnings.empty()) {
    out += "\ndataset warnings\n";
    for (const auto& warning : report.index.warnings) out += "  " + warning + "\n";
  }
  int64_t files = 0, usable = 0;
  for (const auto& split : report.splits) {
    files += split.files;
    usable += split.usable;
  }
  if (report.usable) {
    out += fmt::format("\nverdict: usable: {} of {} images usable, {} skipped ({:.1f} s)\n", usable,
                       files, files - usable, report.seconds);
  } else {
    out += "\nverdict: NOT usable\n";
    for (const auto& problem : report.problems) out += "  " + problem + "\n";
  }
  return out;
}

}  // namespace kennel::data

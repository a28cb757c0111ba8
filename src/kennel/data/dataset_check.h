// Dataset validation (`kennel data check`): opens every image of an
// ImageFolder dataset in parallel and reports, per file, what is wrong with
// it, and per split, the class counts and imbalance.
//
// Issues are errors (the loader skips the file: it cannot be decoded
// correctly) or warnings (usable after conversion to RGB, or worth knowing,
// like a duplicate). Nothing is ever deleted or modified. A dataset is usable
// when it has at least one class and at least one good image in train.
// Thread-safety: check_dataset uses its own threads; call it from one thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "kennel/data/image_folder.h"
#include "kennel/util/status.h"

namespace kennel::data {

enum class IssueKind {
  kUnreadable,    // error: the OS refused or the path is dangling/not a regular file
  kZeroByte,      // error
  kNotAnImage,    // error: no known image signature
  kTruncated,     // error: the end of the JPEG/PNG is missing
  kCorrupt,       // error: the header is fine but the decoder failed
  kTooLarge,      // error: over the pixel limit (decompression bomb guard); not decoded
  kTooSmall,      // error: shorter side under min_side
  kGrayscale,     // warning: converted to RGB
  kCmyk,          // warning: converted to RGB
  kHasAlpha,      // warning: alpha dropped
  kDuplicate,     // warning: same bytes as an earlier file (named in the detail)
};
const char* issue_kind_name(IssueKind kind);
bool issue_is_error(IssueKind kind);

struct Issue {
  IssueKind kind;
  std::string detail;  // for a person: "claims 50000x50000 = 2500000000 pixels, limit 89478485"
};

struct FileReport {
  std::string path;
  std::string split;
  int64_t label = -1;
  uint64_t bytes = 0;
  std::string format;  // "jpeg", ... or "" when not an image
  int64_t width = 0, height = 0;
  std::string sha256;
  std::vector<Issue> issues;

  bool usable() const;  // no error-level issue
};

struct CheckOptions {
  int threads = 0;                   // 0 = all cores
  int64_t max_pixels = 89'478'485;   // decompression-bomb guard (0 disables)
  int min_side = 16;                 // shorter side below this is too_small
  uint64_t max_file_bytes = 256ull << 20;
  bool decode = true;                // false: headers and hashes only (fast)
  ScanOptions scan;
  bool quiet = false;                // no progress output

  Status validate() const;
};

struct SplitSummary {
  std::string name;
  std::vector<int64_t> class_counts;  // usable images per class
  int64_t files = 0, usable = 0, errors = 0, warnings = 0;
  double imbalance = 0;  // largest / smallest usable class count (inf if a class has 0)
};

struct DatasetReport {
  DatasetIndex index;
  std::vector<FileReport> files;  // every image file, in index order
  std::vector<SplitSummary> splits;
  bool usable = false;
  std::vector<std::string> problems;  // why the dataset is unusable (empty when usable)
  double seconds = 0;
};

// Errors only for the dataset as a whole failing to scan (missing root, ...);
// bad files are reported inside the DatasetReport.
Result<DatasetReport> check_dataset(const std::filesystem::path& root, const CheckOptions& options);

// Checks a single file (also used by the loader's and server's callers for messages).
FileReport check_image_file(const std::filesystem::path& path, const CheckOptions& options);

nlohmann::json to_json(const DatasetReport& report);
// Human-readable tables: per-split class counts, then bad files grouped by issue.
std::string format_report_text(const DatasetReport& report, int max_listed_per_issue = 50);

}  // namespace kennel::data

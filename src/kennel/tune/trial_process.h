// What the tuner reads of its trials: new lines of their metrics and logs as
// they are written, and the tail of a log for a failure reason. The trial
// processes themselves are util/child_process.h. Thread-safety: one owner.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kennel/util/child_process.h"
#include "kennel/util/status.h"

namespace kennel::tune {

// A trial's child process (util/child_process.h).
using TrialProcess = ChildProcess;

// Reads the complete lines appended to a file since the last call (a trial's
// metrics.jsonl or output log). A partial last line waits for its newline.
class LineTailer {
 public:
  explicit LineTailer(std::filesystem::path path = {}) : path_(std::move(path)) {}
  std::vector<std::string> read_new_lines();
  // Everything that was left without a newline when the writer ended.
  std::string remainder() const { return partial_; }

 private:
  std::filesystem::path path_;
  uint64_t offset_ = 0;
  std::string partial_;
};

// The last `lines` non-empty lines of a text file (for failure reasons).
std::string last_lines(const std::filesystem::path& path, size_t lines);

}  // namespace kennel::tune

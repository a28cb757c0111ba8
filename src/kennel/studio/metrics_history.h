// A job's metrics.jsonl as Studio serves it to live charts: every complete
// record, read incrementally (only the bytes appended since the last read),
// tolerant of a half-written last line (left for the next read, once its
// newline is there) and of lines that are not JSON objects (counted, skipped).
//
// Cursor: a client asks for the records with step > `since` and gets back
// `next`, the step to ask from next time. While the job runs, the records of
// its latest step are held back until a later step appears, because an
// epoch's record (and the final evaluation) follows its last step's record
// with the same step number: so `since` never skips a record and never
// repeats one. A finished job's history is returned whole.
//
// A resumed job re-logs the steps after its checkpoint: a step record whose
// step is not above the previous one starts the history again from there, so
// the curve is the final timeline.
//
// Thread-safety: MetricsHistoryCache is safe to call from several threads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "kennel/util/status.h"

namespace kennel::studio {

struct MetricsSlice {
  std::vector<nlohmann::json> records;  // step > since, in file order
  int64_t next = -1;                    // the `since` of the next request
  int64_t skipped_lines = 0;            // lines of the file that were not JSON objects
};

class MetricsHistoryCache {
 public:
  // Keeps the parsed history of at most `max_files` files (least recently used go).
  explicit MetricsHistoryCache(size_t max_files = 64) : max_files_(max_files) {}

  // `since` < 0: from the start. `finished`: the job has ended, so its last step
  // is complete. A missing file is an empty history (the job has not logged yet);
  // other I/O errors come back as a Status naming the file.
  Result<MetricsSlice> read(const std::filesystem::path& metrics_path, int64_t since,
                            bool finished);

 private:
  struct History;
  std::shared_ptr<History> history_for(const std::filesystem::path& path);

  size_t max_files_;
  std::mutex mutex_;
  std::list<std::string> recency_;  // most recent first
  std::unordered_map<std::string, std::shared_ptr<History>> histories_;
};

}  // namespace kennel::studio

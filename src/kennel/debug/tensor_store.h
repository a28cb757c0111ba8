// Where the debugger's records go, under a job's debug/ folder:
//   tensors-NNNN.jsonl  every TensorSummary as one JSON line (a new file once
//                       one reaches Rotation::bytes or Rotation::seconds of
//                       age, so no file grows without bound and old ones can be
//                       archived while the job runs)
//   index.jsonl         one line per summary: name, step, mode, file, byte
//                       offset and length — a reader fetches one tensor at one
//                       step with one seek, without scanning the data files
//   events/             TensorBoard event files (real CRC-32C): scalar
//                       summaries as scalars, the others as their mean and
//                       L2 norm, plus histograms where recorded (a new event
//                       file at each rotation)
// Thread-safety: TensorStore::write is called from one thread (the hook's).
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kennel/debug/tensor_record.h"
#include "kennel/util/event_file.h"
#include "kennel/util/status.h"

namespace kennel::debug {

nlohmann::json to_json(const TensorSummary& summary);

struct Rotation {
  int64_t bytes = int64_t{64} << 20;
  double seconds = 3600;
};

class TensorStore {
 public:
  static Result<std::unique_ptr<TensorStore>> open(const std::filesystem::path& debug_dir, Rotation rotation = {});
  ~TensorStore();
  TensorStore(const TensorStore&) = delete;
  TensorStore& operator=(const TensorStore&) = delete;

  Status write(const StepRecord& record);

 private:
  TensorStore(std::filesystem::path dir, Rotation rotation) : dir_(std::move(dir)), rotation_(rotation) {}
  Status rotate();

  std::filesystem::path dir_;
  Rotation rotation_;
  double opened_at_ = 0;  // steady-clock seconds when the current files were opened
  int64_t file_number_ = -1;
  int64_t offset_ = 0;
  std::FILE* data_ = nullptr;
  std::FILE* index_ = nullptr;
  std::unique_ptr<EventFileWriter> events_;
};

struct IndexEntry {
  std::string name;
  int64_t step = 0;
  std::string mode;  // "train" | "eval"
  std::string file;
  int64_t offset = 0, length = 0;
};

// A resumed job continues from a checkpoint taken after `steps_done` steps;
// the records a killed run wrote for step indices at or past it are
// superseded by the resumed run's. Removes them from index.jsonl (rewritten
// atomically), cuts them off the data files (a file left with none goes) and
// from the event files, so every reader sees each step once. Call before
// open(). A folder without records is no work. Errors name the file.
Status discard_records_after(const std::filesystem::path& debug_dir, int64_t steps_done);

// Reads index.jsonl (kNotFound naming the folder when the job recorded nothing).
Result<std::vector<IndexEntry>> read_index(const std::filesystem::path& debug_dir);
// One summary, by seeking to its index entry.
Result<nlohmann::json> read_summary(const std::filesystem::path& debug_dir, const IndexEntry& entry);

}  // namespace kennel::debug

// TensorBoard event files: TFRecord framing (length, masked CRC-32C of the
// length, payload, masked CRC-32C of the payload) around `Event` protobuf
// messages carrying scalar and histogram summaries. The few protobuf fields
// involved are encoded by hand (docs/decisions.md says why), and a reader
// verifies every CRC so tests and `kennel debug` can read files back.
//
// EventFileWriter appends to `<dir>/events.out.tfevents.<time>.<host>.<pid>.kennel`
// and flushes after every write, so a killed process leaves whole records.
// Thread-safety: EventFileWriter serialises writes with a mutex.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "kennel/util/status.h"

namespace kennel {

struct Histogram {
  double min = 0, max = 0, num = 0, sum = 0, sum_squares = 0;
  std::vector<double> bucket_limits;  // right edges, increasing; the last is +DBL_MAX by convention
  std::vector<double> bucket_counts;
};

// One decoded record: a scalar or histogram value of one tag at one step.
struct EventRecord {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;  // only in the first record
  std::string tag;
  std::optional<float> scalar;
  std::optional<Histogram> histogram;
};

// Encoders (exposed for golden-byte tests).
std::string encode_scalar_event(double wall_time, int64_t step, const std::string& tag, float value);
std::string encode_histogram_event(double wall_time, int64_t step, const std::string& tag,
                                   const Histogram& histogram);
std::string encode_file_version_event(double wall_time);
std::string frame_tfrecord(const std::string& payload);

class EventFileWriter {
 public:
  // Creates `dir` if needed. Errors name the directory.
  static Result<std::unique_ptr<EventFileWriter>> open(const std::filesystem::path& dir);
  ~EventFileWriter();
  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;

  void add_scalar(const std::string& tag, int64_t step, float value);
  void add_histogram(const std::string& tag, int64_t step, const Histogram& histogram);
  const std::filesystem::path& path() const { return path_; }

 private:
  EventFileWriter(std::filesystem::path path, std::FILE* file) : path_(std::move(path)), file_(file) {}
  void write_record(const std::string& payload);

  std::filesystem::path path_;
  std::FILE* file_;
  std::mutex mutex_;
};

// Reads every record of an event file, checking both CRCs of each. A torn
// final record (a writer killed mid-write) ends the list without error;
// a CRC mismatch anywhere else is kDataLoss naming the offset.
Result<std::vector<EventRecord>> read_event_file(const std::filesystem::path& path);

// Removes from every event file directly in `dir` the events for which
// `superseded` is true for one of their records (a resumed job drops what a
// killed run wrote after its checkpoint). A file that changes is rewritten
// atomically; a torn final record is dropped with it. A missing `dir` is no
// work. Returns how many events were removed; errors name the file.
Result<int64_t> drop_events(const std::filesystem::path& dir,
                            const std::function<bool(const EventRecord&)>& superseded);

}  // namespace kennel

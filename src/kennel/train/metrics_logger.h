// MetricsLogger: the trainer callback that reports progress three ways from
// one place: `metrics.jsonl` (one JSON object per step and per epoch; what the
// tuner reads), a log line a regex can parse
// (`epoch=3 step=120 train_loss=0.512 valid_loss=0.61 valid_accuracy=0.871`),
// and TensorBoard event files. A progress bar with ETA on a terminal, plain
// lines otherwise. Appends, so a resumed job keeps one history: before a
// resumed job logs, discard_records_after() removes what a killed run wrote
// after the checkpoint the job continues from, so each step and epoch appears
// once.
// Thread-safety: called from the training thread only.
#pragma once

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "kennel/train/trainer.h"
#include "kennel/util/event_file.h"

namespace kennel::train {

struct MetricsLoggerOptions {
  std::filesystem::path metrics_path;  // metrics.jsonl
  std::filesystem::path log_path;      // log.txt (the parseable lines); empty: none
  std::filesystem::path events_dir;    // TensorBoard; empty: none
  int64_t log_every_steps = 10;        // step lines in log/stdout (every step goes to metrics.jsonl)
  bool print = true;                   // echo lines to stdout
};

class MetricsLogger : public TrainerCallback {
 public:
  static Result<std::shared_ptr<MetricsLogger>> create(MetricsLoggerOptions options);
  ~MetricsLogger() override;

  void on_train_begin(Trainer& trainer) override;
  void on_step_end(Trainer& trainer, const StepResult& step) override;
  void on_epoch_end(Trainer& trainer, const EpochResult& epoch) override;
  void on_train_end(Trainer& trainer, const TrainOutcome& outcome) override;

  // Also used for the test split at the end of a job: one line, one JSON record.
  void log_evaluation(const std::string& split, int64_t step, const EvalMetrics& metrics);

 private:
  explicit MetricsLogger(MetricsLoggerOptions options) : options_(std::move(options)) {}
  void write_json(const nlohmann::json& record);
  void write_line(const std::string& line);
  void draw_progress(const Trainer& trainer, const StepResult& step);

  MetricsLoggerOptions options_;
  std::FILE* metrics_ = nullptr;
  std::FILE* log_ = nullptr;
  std::unique_ptr<EventFileWriter> events_;
  bool terminal_ = false;
  double train_start_ = 0;
  int64_t first_step_ = 0;
};

// A resumed job continues from a checkpoint at `step`; what a killed run wrote
// after it is superseded by what the resumed run writes. Removes from
// metrics.jsonl (rewritten atomically; a torn last line goes too) and from the
// TensorBoard event files the step and epoch records after `step` and the
// evaluation records at or after it (a job evaluates once training is done,
// and does it again when resumed). Call before create(). Errors name the file.
Status discard_records_after(const MetricsLoggerOptions& options, int64_t step);

// The parseable line for a set of named values, in the given order.
std::string format_metrics_line(const std::vector<std::pair<std::string, double>>& values);

}  // namespace kennel::train

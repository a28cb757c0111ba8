#include "kennel/train/metrics_logger.h"

#include <unistd.h>

#include <chrono>
#include <cstring>

#include <nlohmann/json.hpp>

#include "kennel/util/fs.h"

namespace kennel::train {

namespace {
double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string format_value(double value) {
  if (value == static_cast<double>(static_cast<int64_t>(value)) && std::abs(value) < 1e15) {
    return fmt::format("{}", static_cast<int64_t>(value));
  }
  return fmt::format("{:.6g}", value);
}

std::FILE* open_append(const std::filesystem::path& path) {
  if (path.empty()) return nullptr;
  return std::fopen(path.c_str(), "a");
}
}  // namespace

namespace {
// Records of the training loop itself (on_step_end, on_epoch_end); the others are evaluations.
bool is_training_tag(const std::string& tag) { return tag.rfind("train/", 0) == 0 || tag.rfind("epoch/", 0) == 0; }
}  // namespace

Status discard_records_after(const MetricsLoggerOptions& options, int64_t step) {
  std::error_code error;
  if (!options.metrics_path.empty() && std::filesystem::exists(options.metrics_path, error)) {
    auto text = read_file_text(options.metrics_path);
    if (!text.ok()) return text.status().with_context("discarding the records a resumed job repeats");
    std::string kept;
    size_t start = 0;
    while (start < text->size()) {
      const size_t end = text->find('\n', start);
      if (end == std::string::npos) break;  // a torn last line (the writer was killed mid-line)
      const std::string_view line(text->data() + start, end - start + 1);
      start = end + 1;
      const auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (record.is_object() && record.contains("step") && record["step"].is_number_integer()) {
        const int64_t at = record["step"].get<int64_t>();
        const bool evaluation = record.value("type", "") == "evaluation";
        if (at > step || (evaluation && at >= step)) continue;
      }
      kept += line;
    }
    if (kept.size() != text->size()) KENNEL_RETURN_IF_ERROR(write_file_atomic(options.metrics_path, kept));
  }
  if (!options.events_dir.empty()) {
    auto dropped = drop_events(options.events_dir, [step](const EventRecord& record) {
      return record.step > step || (record.step == step && !record.tag.empty() && !is_training_tag(record.tag));
    });
    if (!dropped.ok()) return dropped.status().with_context("discarding the records a resumed job repeats");
  }
  return {};
}

std::string format_metrics_line(const std::vector<std::pair<std::string, double>>& values) {
  std::string line;
  for (const auto& [name, value] : values) {
    if (!line.empty()) line += ' ';
    line += name + "=" + format_value(value);
  }
  return line;
}

Result<std::shared_ptr<MetricsLogger>> MetricsLogger::create(MetricsLoggerOptions options) {
  std::shared_ptr<MetricsLogger> logger(new MetricsLogger(std::move(options)));
  logger->metrics_ = open_append(logger->options_.metrics_path);
  if (logger->metrics_ == nullptr) {
    return Status(ErrorCode::kPermissionDenied,
                  fmt::format("cannot write '{}': {}", logger->options_.metrics_path.string(),
                              std::strerror(errno)));
  }
  if (!logger->options_.log_path.empty()) {
    logger->log_ = open_append(logger->options_.log_path);
    if (logger->log_ == nullptr) {
      return Status(ErrorCode::kPermissionDenied,
                    fmt::format("cannot write '{}': {}", logger->options_.log_path.string(),
                                std::strerror(errno)));
    }
  }
  if (!logger->options_.events_dir.empty()) {
    auto events = EventFileWriter::open(logger->options_.events_dir);
    if (!events.ok()) return events.status();
    logger->events_ = std::move(events).value();
  }
  logger->terminal_ = logger->options_.print && ::isatty(STDOUT_FILENO) == 1;
  return logger;
}

MetricsLogger::~MetricsLogger() {
  if (metrics_ != nullptr) std::fclose(metrics_);
  if (log_ != nullptr) std::fclose(log_);
}

void MetricsLogger::write_json(const nlohmann::json& record) {
  const std::string line = record.dump() + "\n";
  std::fwrite(line.data(), 1, line.size(), metrics_);
  std::fflush(metrics_);
}

void MetricsLogger::write_line(const std::string& line) {
  if (log_ != nullptr) {
    std::fprintf(log_, "%s\n", line.c_str());
    std::fflush(log_);
  }
  if (options_.print) {
    if (terminal_) std::fputs("\r\033[K", stdout);
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }
}

void MetricsLogger::on_train_begin(Trainer& trainer) {
  train_start_ = wall_seconds();
  first_step_ = trainer.state().step;
}

void MetricsLogger::draw_progress(const Trainer& trainer, const StepResult& step) {
  const auto& options = trainer.options();
  (void)options;
  const double elapsed = wall_seconds() - train_start_;
  const int64_t done = step.step - first_step_;
  const int64_t total_steps = options.schedule.total_steps - first_step_;
  const double eta = done > 0 ? elapsed / static_cast<double>(done) *
                                    static_cast<double>(std::max<int64_t>(0, total_steps - done))
                              : 0;
  constexpr int kWidth = 24;
  const double fraction = total_steps > 0 ? std::min(1.0, static_cast<double>(done) / total_steps) : 0;
  const int filled = static_cast<int>(fraction * kWidth);
  std::printf("\r\033[Kepoch %lld [%s%s] step %lld/%lld loss %.4f %.1f img/s eta %.0fs",
              static_cast<long long>(step.epoch + 1), std::string(filled, '#').c_str(),
              std::string(kWidth - filled, '.').c_str(), static_cast<long long>(step.step),
              static_cast<long long>(options.schedule.total_steps), step.loss,
              step.images_per_second, eta);
  std::fflush(stdout);
}

void MetricsLogger::on_step_end(Trainer& trainer, const StepResult& step) {
  write_json({{"type", "step"},
              {"time", wall_seconds()},
              {"epoch", step.epoch},
              {"step", step.step},
              {"train_loss", step.loss},
              {"lr", step.lr},
              {"batch_size", step.batch_size},
              {"images_per_second", step.images_per_second}});
  if (events_) {
    events_->add_scalar("train/loss", step.step, static_cast<float>(step.loss));
    events_->add_scalar("train/lr", step.step, static_cast<float>(step.lr));
    events_->add_scalar("train/images_per_second", step.step, static_cast<float>(step.images_per_second));
  }
  if (terminal_) {
    draw_progress(trainer, step);
  } else if (options_.log_every_steps > 0 && step.step % options_.log_every_steps == 0) {
    write_line(format_metrics_line({{"epoch", static_cast<double>(step.epoch)},
                                    {"step", static_cast<double>(step.step)},
                                    {"train_loss", step.loss},
                                    {"lr", step.lr},
                                    {"images_per_second", step.images_per_second}}));
  }
}

void MetricsLogger::on_epoch_end(Trainer& trainer, const EpochResult& epoch) {
  nlohmann::json record = {{"type", "epoch"},
                           {"time", wall_seconds()},
                           {"epoch", epoch.epoch},
                           {"step", epoch.step},
                           {"train_loss", epoch.train_loss},
                           {"train_accuracy", epoch.train_accuracy},
                           {"epoch_seconds", epoch.seconds},
                           {"images_per_second", epoch.images_per_second}};
  std::vector<std::pair<std::string, double>> line = {{"epoch", static_cast<double>(epoch.epoch)},
                                                      {"step", static_cast<double>(epoch.step)},
                                                      {"train_loss", epoch.train_loss},
                                                      {"train_accuracy", epoch.train_accuracy}};
  if (epoch.valid) {
    record["valid_loss"] = epoch.valid->loss;
    record["valid_accuracy"] = epoch.valid->accuracy;
    record["valid_top5_accuracy"] = epoch.valid->top5_accuracy;
    line.emplace_back("valid_loss", epoch.valid->loss);
    line.emplace_back("valid_accuracy", epoch.valid->accuracy);
    line.emplace_back("valid_top5_accuracy", epoch.valid->top5_accuracy);
  }
  line.emplace_back("epoch_seconds", epoch.seconds);
  write_json(record);
  write_line(format_metrics_line(line));
  if (events_) {
    events_->add_scalar("epoch/train_loss", epoch.step, static_cast<float>(epoch.train_loss));
    events_->add_scalar("epoch/train_accuracy", epoch.step, static_cast<float>(epoch.train_accuracy));
    if (epoch.valid) {
      events_->add_scalar("epoch/valid_loss", epoch.step, static_cast<float>(epoch.valid->loss));
      events_->add_scalar("epoch/valid_accuracy", epoch.step, static_cast<float>(epoch.valid->accuracy));
      events_->add_scalar("epoch/valid_top5_accuracy", epoch.step,
                          static_cast<float>(epoch.valid->top5_accuracy));
    }
  }
  (void)trainer;
}

void MetricsLogger::on_train_end(Trainer&, const TrainOutcome& outcome) {
  if (terminal_) std::printf("\r\033[K");
  if (!outcome.completed) write_line("stopped: " + outcome.stop_reason);
}

void MetricsLogger::log_evaluation(const std::string& split, int64_t step, const EvalMetrics& metrics) {
  write_json({{"type", "evaluation"},
              {"time", wall_seconds()},
              {"split", split},
              {"step", step},
              {split + "_loss", metrics.loss},
              {split + "_accuracy", metrics.accuracy},
              {split + "_top5_accuracy", metrics.top5_accuracy},
              {"samples", metrics.samples}});
  write_line(format_metrics_line({{"step", static_cast<double>(step)},
                                  {split + "_loss", metrics.loss},
                                  {split + "_accuracy", metrics.accuracy},
                                  {split + "_top5_accuracy", metrics.top5_accuracy}}));
  if (events_) {
    events_->add_scalar(split + "/accuracy", step, static_cast<float>(metrics.accuracy));
    events_->add_scalar(split + "/loss", step, static_cast<float>(metrics.loss));
  }
}

}  // namespace kennel::train

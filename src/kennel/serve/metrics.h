// The endpoint's Prometheus metrics (`GET /metrics`, text format 0.0.4):
// requests by route and status, every 4xx/5xx by route, status and reason
// (kennel_request_errors_total; requests the listener refused before any
// route saw them have route="none"), request latency and batch-size
// histograms, model seconds per batch, queue depth, open connections, pixels
// being decoded, images served and model load time.
// Thread-safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace kennel::serve {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  // Appends the `_bucket`, `_sum` and `_count` lines of metric `name`.
  void render(const std::string& name, std::string& out) const;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mutex_;
  std::vector<uint64_t> counts_;  // one per bound, plus +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class ServerMetrics {
 public:
  ServerMetrics();
  // `reason` (snake_case) is counted for statuses >= 400; empty = "unknown".
  void record_request(const std::string& route, int status, double seconds,
                      const std::string& reason = "");
  // A request answered by the listener itself (408, 413, 431, 503 ...).
  void record_rejection(int status, const std::string& reason);
  void record_batch(int64_t size, double seconds);
  void add_images(int64_t images) { images_ += static_cast<uint64_t>(images); }
  void set_model_load_seconds(double seconds) { model_load_seconds_ = seconds; }
  void set_queue_depth_source(std::function<int64_t()> source);
  void set_open_connections_source(std::function<int64_t()> source);
  void set_decode_pixels_source(std::function<int64_t()> source);
  std::string render() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::tuple<std::string, int, std::string>, uint64_t> errors_;
  Histogram latency_;
  Histogram batch_size_;
  Histogram batch_seconds_;
  std::atomic<uint64_t> images_{0};
  std::atomic<double> model_load_seconds_{0};
  std::function<int64_t()> queue_depth_;
  std::function<int64_t()> open_connections_;
  std::function<int64_t()> decode_pixels_;
};

}  // namespace kennel::serve

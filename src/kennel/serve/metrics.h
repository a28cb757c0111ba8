// The endpoint's Prometheus metrics (`GET /metrics`, text format 0.0.4):
// requests by route and status, request latency and batch-size histograms,
// model seconds per batch, queue depth, images served and model load time.
// Thread-safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
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
  void record_request(const std::string& route, int status, double seconds);
  void record_batch(int64_t size, double seconds);
  void add_images(int64_t images) { images_ += static_cast<uint64_t>(images); }
  void set_model_load_seconds(double seconds) { model_load_seconds_ = seconds; }
  void set_queue_depth_source(std::function<int64_t()> source);
  std::string render() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  Histogram latency_;
  Histogram batch_size_;
  Histogram batch_seconds_;
  std::atomic<uint64_t> images_{0};
  std::atomic<double> model_load_seconds_{0};
  std::function<int64_t()> queue_depth_;
};

}  // namespace kennel::serve

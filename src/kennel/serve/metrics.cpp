#include "kennel/serve/metrics.h"

#include <fmt/format.h>

namespace kennel::serve {

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}

void Histogram::observe(double value) {
  std::lock_guard lock(mutex_);
  size_t bucket = 0;
  while (bucket < bounds_.size() && value > bounds_[bucket]) ++bucket;
  ++counts_[bucket];
  sum_ += value;
  ++count_;
}

void Histogram::render(const std::string& name, std::string& out) const {
  std::lock_guard lock(mutex_);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cumulative);
  }
  cumulative += counts_.back();
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, cumulative, name, sum_, name,
                     count_);
}

ServerMetrics::ServerMetrics()
    : latency_({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}),
      batch_size_({1, 2, 4, 8, 16, 32, 64, 128}),
      batch_seconds_({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}) {}

void ServerMetrics::record_request(const std::string& route, int status, double seconds,
                                   const std::string& reason) {
  {
    std::lock_guard lock(mutex_);
    ++requests_[{route, status}];
    if (status >= 400) ++errors_[{route, status, reason.empty() ? "unknown" : reason}];
  }
  latency_.observe(seconds);
}

void ServerMetrics::record_rejection(int status, const std::string& reason) {
  std::lock_guard lock(mutex_);
  ++requests_[{"none", status}];
  ++errors_[{"none", status, reason.empty() ? "unknown" : reason}];
}

void ServerMetrics::record_batch(int64_t size, double seconds) {
  batch_size_.observe(static_cast<double>(size));
  batch_seconds_.observe(seconds);
}

void ServerMetrics::set_queue_depth_source(std::function<int64_t()> source) {
  std::lock_guard lock(mutex_);
  queue_depth_ = std::move(source);
}

void ServerMetrics::set_open_connections_source(std::function<int64_t()> source) {
  std::lock_guard lock(mutex_);
  open_connections_ = std::move(source);
}

void ServerMetrics::set_decode_pixels_source(std::function<int64_t()> source) {
  std::lock_guard lock(mutex_);
  decode_pixels_ = std::move(source);
}

std::string ServerMetrics::render() const {
  std::string out;
  out += "# HELP kennel_requests_total HTTP requests by route and status.\n# TYPE kennel_requests_total counter\n";
  std::function<int64_t()> queue_depth;
  std::function<int64_t()> open_connections;
  std::function<int64_t()> decode_pixels;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [key, count] : requests_) {
      out += fmt::format("kennel_requests_total{{route=\"{}\",status=\"{}\"}} {}\n", key.first, key.second, count);
    }
    out += "# HELP kennel_request_errors_total Requests answered 4xx/5xx, by route, status and reason.\n"
           "# TYPE kennel_request_errors_total counter\n";
    for (const auto& [key, count] : errors_) {
      const auto& [route, status, reason] = key;
      out += fmt::format("kennel_request_errors_total{{route=\"{}\",status=\"{}\",reason=\"{}\"}} {}\n", route,
                         status, reason, count);
    }
    queue_depth = queue_depth_;
    open_connections = open_connections_;
    decode_pixels = decode_pixels_;
  }
  out += "# HELP kennel_request_seconds Request latency.\n# TYPE kennel_request_seconds histogram\n";
  latency_.render("kennel_request_seconds", out);
  out += "# HELP kennel_batch_size Images per model batch.\n# TYPE kennel_batch_size histogram\n";
  batch_size_.render("kennel_batch_size", out);
  out += "# HELP kennel_batch_seconds Model time per batch.\n# TYPE kennel_batch_seconds histogram\n";
  batch_seconds_.render("kennel_batch_seconds", out);
  out += fmt::format("# HELP kennel_images_total Images classified.\n# TYPE kennel_images_total counter\n"
                     "kennel_images_total {}\n",
                     images_.load());
  out += fmt::format("# HELP kennel_queue_depth Images waiting for the model.\n# TYPE kennel_queue_depth gauge\n"
                     "kennel_queue_depth {}\n",
                     queue_depth ? queue_depth() : 0);
  out += fmt::format("# HELP kennel_open_connections Client connections open now.\n"
                     "# TYPE kennel_open_connections gauge\nkennel_open_connections {}\n",
                     open_connections ? open_connections() : 0);
  out += fmt::format("# HELP kennel_decode_pixels Pixels being decoded now (--decode-pixel-budget).\n"
                     "# TYPE kennel_decode_pixels gauge\nkennel_decode_pixels {}\n",
                     decode_pixels ? decode_pixels() : 0);
  out += fmt::format("# HELP kennel_model_load_seconds Time to load the model.\n"
                     "# TYPE kennel_model_load_seconds gauge\nkennel_model_load_seconds {}\n",
                     model_load_seconds_.load());
  return out;
}

}  // namespace kennel::serve

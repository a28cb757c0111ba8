// Progress: a bar with rate and ETA on a terminal, occasional plain lines when
// stderr is not one (logs, CI). Thread-safety: advance() may be called from
// any thread; drawing is rate-limited and serialised.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace kennel {

class Progress {
 public:
  // `total` 0 means unknown. Quiet progress draws nothing (for --json and tests).
  Progress(std::string label, uint64_t total, bool quiet = false);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void advance(uint64_t n = 1);
  void finish();  // draws the final state once; called by the destructor too

 private:
  void draw(bool final_draw);

  std::string label_;
  uint64_t total_;
  bool quiet_;
  bool terminal_;
  std::atomic<uint64_t> done_{0};
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  std::mutex draw_mutex_;
  bool finished_ = false;
};

}  // namespace kennel

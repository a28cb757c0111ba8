#include "kennel/util/progress.h"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

namespace kennel {

namespace {
std::string format_duration(double seconds) {
  if (seconds < 0 || seconds > 1e7) return "--:--";
  const auto total = static_cast<long>(seconds + 0.5);
  if (total >= 3600) return fmt::format("{}:{:02}:{:02}", total / 3600, total / 60 % 60, total % 60);
  return fmt::format("{:02}:{:02}", total / 60, total % 60);
}
}  // namespace

Progress::Progress(std::string label, uint64_t total, bool quiet)
    : label_(std::move(label)),
      total_(total),
      quiet_(quiet),
      terminal_(::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() { finish(); }

void Progress::advance(uint64_t n) {
  done_.fetch_add(n, std::memory_order_relaxed);
  if (quiet_) return;
  const auto now = std::chrono::steady_clock::now();
  // Terminals redraw 10x a second; logs get a line every 10 s.
  const auto interval = terminal_ ? std::chrono::milliseconds(100) : std::chrono::seconds(10);
  std::unique_lock lock(draw_mutex_, std::try_to_lock);
  if (!lock.owns_lock() || now - last_draw_ < interval) return;
  last_draw_ = now;
  draw(false);
}

void Progress::finish() {
  if (quiet_) return;
  std::lock_guard lock(draw_mutex_);
  if (finished_) return;
  finished_ = true;
  draw(true);
}

void Progress::draw(bool final_draw) {
  const uint64_t done = done_.load(std::memory_order_relaxed);
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
  std::string line;
  if (total_ > 0) {
    const double fraction = std::min(1.0, static_cast<double>(done) / static_cast<double>(total_));
    const double eta = rate > 0 ? static_cast<double>(total_ - std::min(done, total_)) / rate : -1;
    if (terminal_) {
      constexpr int kWidth = 30;
      const int filled = static_cast<int>(fraction * kWidth);
      line = fmt::format("\r{} [{}{}] {}/{} {:.1f}/s elapsed {} eta {}", label_,
                         std::string(filled, '#'), std::string(kWidth - filled, '.'), done, total_,
                         rate, format_duration(elapsed), format_duration(eta));
    } else {
      line = fmt::format("{}: {}/{} ({:.0f}%) {:.1f}/s elapsed {} eta {}\n", label_, done, total_,
                         fraction * 100, rate, format_duration(elapsed), format_duration(eta));
    }
  } else {
    line = fmt::format("{}{}: {} {:.1f}/s elapsed {}{}", terminal_ ? "\r" : "", label_, done, rate,
                       format_duration(elapsed), terminal_ ? "" : "\n");
  }
  if (terminal_ && final_draw) line += "\n";
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}

}  // namespace kennel

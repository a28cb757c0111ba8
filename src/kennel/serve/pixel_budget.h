// A budget on the pixels being decoded at once, shared by every handler
// thread. --max-pixels refuses one image that claims too many pixels; this
// bounds what many requests decode together, so 32 connections each sending
// a PNG just under that limit take at most the budget's memory (about 3 to
// 9 bytes a pixel while decoding), not 32 times it. An image that does not
// fit now is refused at once (503 + Retry-After) rather than queued, as a
// full batcher queue is.
// Thread-safety: acquire() and release (a Lease's destructor) from any thread.
#pragma once

#include <cstdint>
#include <mutex>

#include "kennel/util/status.h"

namespace kennel::serve {

class PixelBudget {
 public:
  // Returns its pixels to the budget when destroyed.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept : budget_(other.budget_), pixels_(other.pixels_) {
      other.budget_ = nullptr;
    }
    Lease& operator=(Lease&& other) noexcept;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { release(); }
    void release();

   private:
    friend class PixelBudget;
    Lease(PixelBudget* budget, int64_t pixels) : budget_(budget), pixels_(pixels) {}
    PixelBudget* budget_ = nullptr;
    int64_t pixels_ = 0;
  };

  explicit PixelBudget(int64_t capacity) : capacity_(capacity) {}
  // A lease on `pixels`, or kUnavailable naming the budget when they do not fit now.
  Result<Lease> acquire(int64_t pixels);
  int64_t in_use() const;
  int64_t capacity() const { return capacity_; }

 private:
  const int64_t capacity_;
  mutable std::mutex mutex_;
  int64_t in_use_ = 0;
};

}  // namespace kennel::serve

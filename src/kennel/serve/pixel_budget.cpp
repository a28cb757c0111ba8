#include "kennel/serve/pixel_budget.h"

#include <utility>

namespace kennel::serve {

PixelBudget::Lease& PixelBudget::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    release();
    budget_ = std::exchange(other.budget_, nullptr);
    pixels_ = other.pixels_;
  }
  return *this;
}

void PixelBudget::Lease::release() {
  if (budget_ == nullptr) return;
  std::lock_guard lock(budget_->mutex_);
  budget_->in_use_ -= pixels_;
  budget_ = nullptr;
}

Result<PixelBudget::Lease> PixelBudget::acquire(int64_t pixels) {
  std::lock_guard lock(mutex_);
  if (pixels > capacity_ - in_use_) {
    return Status(ErrorCode::kUnavailable,
                  fmt::format("the server is decoding {} megapixels already and this image has {}; "
                              "the budget is {} (--decode-pixel-budget): retry shortly",
                              in_use_ / 1'000'000, pixels / 1'000'000, capacity_ / 1'000'000));
  }
  in_use_ += pixels;
  return Lease(this, pixels);
}

int64_t PixelBudget::in_use() const {
  std::lock_guard lock(mutex_);
  return in_use_;
}

}  // namespace kennel::serve

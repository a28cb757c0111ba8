// AutocastScope: the forward pass of a block of code at a precision, as
// torch.autocast is used in PyTorch: fp32 does nothing; bf16 turns on CPU (or
// CUDA) autocast, fp16 CUDA autocast. Weights stay fp32 (master weights);
// autocast casts them for the ops that run in the lower precision.
// Thread-safety: autocast state is per thread; a scope lives on one thread.
#pragma once

#include <string>

#include <ATen/autocast_mode.h>
#include <c10/core/Device.h>

namespace kennel::train {

class AutocastScope {
 public:
  AutocastScope(const std::string& precision, const c10::Device& device) {
    if (precision == "fp32") return;
    const auto dtype = precision == "bf16" ? at::kBFloat16 : at::kHalf;
    if (device.is_cuda()) {
      previous_enabled_ = at::autocast::is_enabled();
      at::autocast::set_enabled(true);
      at::autocast::set_autocast_gpu_dtype(dtype);
      cuda_ = true;
    } else {
      previous_enabled_ = at::autocast::is_cpu_enabled();
      at::autocast::set_cpu_enabled(true);
      at::autocast::set_autocast_cpu_dtype(dtype);
    }
    at::autocast::increment_nesting();
    active_ = true;
  }
  ~AutocastScope() {
    if (!active_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    if (cuda_) {
      at::autocast::set_enabled(previous_enabled_);
    } else {
      at::autocast::set_cpu_enabled(previous_enabled_);
    }
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  bool cuda_ = false;
  bool previous_enabled_ = false;
};

}  // namespace kennel::train

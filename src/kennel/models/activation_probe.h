// Activation probes: how an observer (the debugger) sees the inputs of a
// backbone's activation functions during a forward pass without the models
// knowing who watches.
//
// A backbone calls probe_activation("layer2", x) right before it applies an
// activation in place to x, at one tap per stage (ResNet: the stem ReLU and the
// last block's output ReLU of each layer; MobileNetV2: the last ReLU6 of each
// stage). When no observer is installed on the calling thread, that is one
// thread-local load. The observer is per thread because the trainer runs a
// step's forward on one thread while validation or serving may run others.
//
// Thread-safety: install/observe on the same thread; observers must not keep
// the tensor (it is overwritten by the activation right after the call).
#pragma once

#include <string>

#include <ATen/core/Tensor.h>

namespace kennel::models {

enum class ActivationKind { kRelu, kRelu6 };

class ActivationObserver {
 public:
  virtual ~ActivationObserver() = default;
  // `pre_activation`: the tensor the activation is about to be applied to.
  virtual void observe(const std::string& layer, ActivationKind kind, const at::Tensor& pre_activation) = 0;
};

namespace detail {
inline thread_local ActivationObserver* current_activation_observer = nullptr;
}  // namespace detail

// Installs `observer` for forwards on this thread until the scope ends (then
// restores whatever was installed before).
class ScopedActivationObserver {
 public:
  explicit ScopedActivationObserver(ActivationObserver* observer)
      : previous_(detail::current_activation_observer) {
    detail::current_activation_observer = observer;
  }
  ~ScopedActivationObserver() { detail::current_activation_observer = previous_; }
  ScopedActivationObserver(const ScopedActivationObserver&) = delete;
  ScopedActivationObserver& operator=(const ScopedActivationObserver&) = delete;

 private:
  ActivationObserver* previous_;
};

// Whether an observer is installed on this thread: a backbone that fuses an activation with the
// operation before it computes the pre-activation apart only when someone looks at it.
inline bool activation_observed() { return detail::current_activation_observer != nullptr; }

inline void probe_activation(const std::string& layer, ActivationKind kind, const at::Tensor& pre_activation) {
  if (auto* observer = detail::current_activation_observer) observer->observe(layer, kind, pre_activation);
}

}  // namespace kennel::models

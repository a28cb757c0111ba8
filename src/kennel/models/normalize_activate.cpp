#include "kennel/models/normalize_activate.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <type_traits>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include "kennel/models/batch_norm.h"
#include "kennel/util/loop_instruction_set.h"

namespace kennel::models {
namespace {

template <bool kValue>
using Bool = std::bool_constant<kValue>;

// One call of the row loops (detail/normalize_activate_kernels.inc) over a part of a map.
struct RowCall {
  enum Kind { kStatistics, kForward, kBackwardReduce, kBackwardInput };
  Kind kind = kStatistics;
  bool bfloat16 = false;
  int rectifier = 0;  // Rectifier's number
  long channels = 0;
  const void* x = nullptr;          // the BatchNorm's input
  const void* out = nullptr;        // backward: the saved output for the mask, or null (recomputed from x)
  const void* residual = nullptr;   // forward: added before the ReLU, or null
  const void* grad_out = nullptr;   // backward: the gradient of the output
  void* result = nullptr;           // forward: the output; reduce: the residual's gradient or null; input: grad x
  const float* scale = nullptr;     // gamma * invstd
  const float* shift = nullptr;     // statistics: the sample subtracted; else beta - mean * scale
  const float* mean = nullptr;
  const float* mean_dy = nullptr;  // backward: scale and shift are the forward's (clause 3's mask)
  const float* slope = nullptr;
  float* block_a = nullptr;         // [channels] float scratch of this part
  float* block_b = nullptr;
  double* sums_a = nullptr;         // [channels] double sums of this part
  double* sums_b = nullptr;
};

}  // namespace

// The same loops three times, each compiled for its instruction set (clause 4).
namespace avx512_kernels {
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,prefer-vector-width=512")
#include "kennel/models/detail/normalize_activate_kernels.inc"
#pragma GCC pop_options
}  // namespace avx512_kernels

namespace avx2_kernels {
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include "kennel/models/detail/normalize_activate_kernels.inc"
#pragma GCC pop_options
}  // namespace avx2_kernels

namespace baseline_kernels {
#include "kennel/models/detail/normalize_activate_kernels.inc"
}  // namespace baseline_kernels

namespace {

using RowRunner = void (*)(const RowCall&, long, long);

// Indexed by InstructionSet (clause 4).
constexpr std::array<RowRunner, 3> kRunners = {&avx512_kernels::run, &avx2_kernels::run, &baseline_kernels::run};

RowRunner host_runner() { return kRunners[static_cast<size_t>(loop_instruction_set())]; }

// Runs `call` over the map's rows split into one part per thread; part p's scratch and sums are
// slices p of `scratch` and `sums` (each parts x 2 x channels).
class RowParts {
 public:
  RowParts(int64_t rows, int64_t channels)
      : rows_(rows), channels_(channels),
        parts_(std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows / 64))),
        scratch_(static_cast<size_t>(parts_ * 2 * channels)),
        sums_(static_cast<size_t>(parts_ * 2 * channels), 0.0) {}

  // Runs `call` on every part and, for the reductions, returns the two per-channel sums over all parts.
  std::pair<std::vector<double>, std::vector<double>> run(RowCall call) {
    std::fill(sums_.begin(), sums_.end(), 0.0);
    const RowRunner runner = host_runner();
    at::parallel_for(0, parts_, 1, [&](int64_t first, int64_t last) {
      for (int64_t part = first; part < last; ++part) {
        RowCall own = call;
        own.block_a = scratch_.data() + part * 2 * channels_;
        own.block_b = own.block_a + channels_;
        own.sums_a = sums_.data() + part * 2 * channels_;
        own.sums_b = own.sums_a + channels_;
        runner(own, static_cast<long>(rows_ * part / parts_), static_cast<long>(rows_ * (part + 1) / parts_));
      }
    });
    std::vector<double> a(static_cast<size_t>(channels_), 0.0), b(static_cast<size_t>(channels_), 0.0);
    for (int64_t part = 0; part < parts_; ++part) {
      const double* sums = sums_.data() + part * 2 * channels_;
      for (int64_t c = 0; c < channels_; ++c) {
        a[c] += sums[c];
        b[c] += sums[channels_ + c];
      }
    }
    return {std::move(a), std::move(b)};
  }

 private:
  int64_t rows_, channels_, parts_;
  std::vector<float> scratch_;
  std::vector<double> sums_;
};

at::Tensor dense_channels_last(const at::Tensor& tensor, at::ScalarType dtype) {
  return tensor.to(dtype).contiguous(at::MemoryFormat::ChannelsLast);
}

at::Tensor float_vector(const std::vector<float>& values) {
  return at::tensor(values, at::kFloat);
}

// A per-channel parameter (gamma, beta) as floats; `absent` for each channel without one (no affine).
std::vector<float> per_channel(const at::Tensor& parameter, int64_t channels, float absent) {
  if (!parameter.defined()) return std::vector<float>(static_cast<size_t>(channels), absent);
  const at::Tensor values = parameter.detach().to(at::kFloat).contiguous();
  return {values.data_ptr<float>(), values.data_ptr<float>() + channels};
}

class NormalizeActivateFunction : public torch::autograd::Function<NormalizeActivateFunction> {
 public:
  // Optional tensors are absent when undefined: LibTorch 1.13 takes no undefined tensor argument.
  static at::Tensor forward(torch::autograd::AutogradContext* context, const at::Tensor& input,
                            const c10::optional<at::Tensor>& residual_argument,
                            const c10::optional<at::Tensor>& weight_argument,
                            const c10::optional<at::Tensor>& bias_argument, BatchNorm2dImpl* norm,
                            Rectifier rectifier) {
    const at::Tensor residual = residual_argument.value_or(at::Tensor());
    const at::Tensor weight = weight_argument.value_or(at::Tensor());
    const at::Tensor bias = bias_argument.value_or(at::Tensor());
    const int64_t channels = input.size(1);
    const int64_t rows = input.numel() / channels;
    const bool bfloat16 = input.scalar_type() == at::kBFloat16;

    // Clause 2: the batch's statistics, shifted by the first pixel's values.
    std::vector<float> sample(static_cast<size_t>(channels));
    const at::Tensor first_pixel = input.permute({0, 2, 3, 1}).reshape({rows, channels})[0].to(at::kFloat);
    std::copy_n(first_pixel.data_ptr<float>(), channels, sample.begin());
    RowParts parts(rows, channels);
    RowCall statistics;
    statistics.kind = RowCall::kStatistics;
    statistics.bfloat16 = bfloat16;
    statistics.channels = channels;
    statistics.x = input.data_ptr();
    statistics.shift = sample.data();
    const auto [sums, squares] = parts.run(statistics);

    const std::vector<float> gamma = per_channel(weight, channels, 1.0f);
    const std::vector<float> beta = per_channel(bias, channels, 0.0f);
    std::vector<float> mean(gamma.size()), variance(gamma.size()), invstd(gamma.size()), scale(gamma.size()),
        shift(gamma.size());
    const double eps = norm->options.eps();
    for (int64_t c = 0; c < channels; ++c) {
      const double centered_mean = sums[c] / static_cast<double>(rows);
      const double biased = std::max(0.0, squares[c] / static_cast<double>(rows) - centered_mean * centered_mean);
      mean[c] = static_cast<float>(sample[c] + centered_mean);
      variance[c] = static_cast<float>(biased);
      invstd[c] = static_cast<float>(1.0 / std::sqrt(biased + eps));
      scale[c] = gamma[c] * invstd[c];
      shift[c] = beta[c] - mean[c] * scale[c];
    }
    update_running_statistics(*norm, mean, variance, rows);

    at::Tensor output = at::empty_like(input, at::MemoryFormat::ChannelsLast);
    RowCall apply;
    apply.kind = RowCall::kForward;
    apply.bfloat16 = bfloat16;
    apply.rectifier = static_cast<int>(rectifier);
    apply.channels = channels;
    apply.x = input.data_ptr();
    apply.residual = residual.defined() ? residual.data_ptr() : nullptr;
    apply.result = output.data_ptr();
    apply.scale = scale.data();
    apply.shift = shift.data();
    parts.run(apply);

    // Clause 3's mask: from the saved output after a residual add, else recomputed from the input.
    const bool mask_from_output = rectifier != Rectifier::kNone && residual.defined();
    context->save_for_backward({input, mask_from_output ? output : at::Tensor(), weight, float_vector(mean),
                                float_vector(invstd), float_vector(scale), float_vector(shift)});
    context->saved_data["rectifier"] = static_cast<int64_t>(rectifier);
    context->saved_data["residual"] = residual.defined();
    context->saved_data["bias"] = bias.defined();
    return output;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* context,
                                                 torch::autograd::variable_list gradients) {
    const auto saved = context->get_saved_variables();
    const at::Tensor& input = saved[0];
    const at::Tensor& output = saved[1];
    const at::Tensor& weight = saved[2];
    const int64_t rectifier = context->saved_data["rectifier"].toInt();
    const bool rectified = rectifier != static_cast<int64_t>(Rectifier::kNone);
    const bool mask_from_output = output.defined();
    const bool has_residual = context->saved_data["residual"].toBool();
    const bool has_bias = context->saved_data["bias"].toBool();
    // needs_input_grad counts the tensors forward() was given, absent ones not.
    const size_t residual_edge = 1, weight_edge = residual_edge + (has_residual ? 1 : 0),
                 bias_edge = weight_edge + (weight.defined() ? 1 : 0);
    torch::autograd::variable_list result(6);  // one per argument of forward()
    if (!gradients[0].defined()) return result;

    const int64_t channels = input.size(1);
    const int64_t rows = input.numel() / channels;
    const at::Tensor grad_out = dense_channels_last(gradients[0], input.scalar_type());
    const float* mean = saved[3].data_ptr<float>();
    const float* invstd = saved[4].data_ptr<float>();
    const float* scale = saved[5].data_ptr<float>();
    const float* shift = saved[6].data_ptr<float>();

    // Clause 3: one pass for the per-channel sums (writing the residual's gradient on the way),
    // one for the input's gradient.
    at::Tensor grad_residual;
    if (has_residual && context->needs_input_grad(residual_edge)) {
      grad_residual = rectified ? at::empty_like(grad_out, at::MemoryFormat::ChannelsLast) : grad_out;
    }
    RowParts parts(rows, channels);
    RowCall reduce;
    reduce.kind = RowCall::kBackwardReduce;
    reduce.bfloat16 = input.scalar_type() == at::kBFloat16;
    reduce.rectifier = static_cast<int>(rectifier);
    reduce.channels = channels;
    reduce.x = input.data_ptr();
    reduce.out = mask_from_output ? output.data_ptr() : nullptr;
    reduce.grad_out = grad_out.data_ptr();
    reduce.result = rectified && grad_residual.defined() ? grad_residual.data_ptr() : nullptr;
    reduce.mean = mean;
    reduce.scale = scale;
    reduce.shift = shift;
    const auto [sum_dy, sum_dy_centered] = parts.run(reduce);

    const auto size = static_cast<size_t>(channels);
    std::vector<float> grad_gamma(size), grad_beta(size), mean_dy(size), slope(size);
    for (int64_t c = 0; c < channels; ++c) {
      grad_gamma[c] = static_cast<float>(sum_dy_centered[c] * invstd[c]);
      grad_beta[c] = static_cast<float>(sum_dy[c]);
      mean_dy[c] = static_cast<float>(sum_dy[c] / static_cast<double>(rows));
      slope[c] = static_cast<float>(sum_dy_centered[c] * invstd[c] * invstd[c] / static_cast<double>(rows));
    }
    if (context->needs_input_grad(0)) {
      at::Tensor grad_input = at::empty_like(input, at::MemoryFormat::ChannelsLast);
      RowCall apply = reduce;
      apply.kind = RowCall::kBackwardInput;
      apply.result = grad_input.data_ptr();
      apply.mean_dy = mean_dy.data();
      apply.slope = slope.data();
      parts.run(apply);
      result[0] = grad_input;
    }
    result[1] = grad_residual;
    if (weight.defined() && context->needs_input_grad(weight_edge)) {
      result[2] = float_vector(grad_gamma).to(weight.scalar_type());
    }
    if (has_bias && context->needs_input_grad(bias_edge)) {
      result[3] = float_vector(grad_beta).to(weight.defined() ? weight.scalar_type() : at::kFloat);
    }
    return result;
  }

 private:
  // As at::batch_norm: running = (1 - factor) * running + factor * batch, with the unbiased variance.
  static void update_running_statistics(BatchNorm2dImpl& norm, const std::vector<float>& mean,
                                        const std::vector<float>& variance, int64_t rows) {
    const double factor = norm.next_average_factor();
    if (!norm.running_mean.defined()) return;
    at::NoGradGuard no_grad;
    const double unbiased = static_cast<double>(rows) / static_cast<double>(rows - 1);
    const auto dtype = norm.running_mean.scalar_type();
    norm.running_mean.mul_(1.0 - factor).add_(float_vector(mean).to(dtype), factor);
    norm.running_var.mul_(1.0 - factor).add_(float_vector(variance).to(dtype), factor * unbiased);
  }
};

bool is_dense_channels_last(const at::Tensor& tensor) {
  return tensor.is_contiguous(at::MemoryFormat::ChannelsLast);
}

}  // namespace

bool can_normalize_fused(const BatchNorm2dImpl& norm, const at::Tensor& input, const AfterNormalization& after) {
  if (!norm.is_training() || norm.folded || norm.synchronized()) return false;
  if (!input.defined() || input.dim() != 4 || !input.device().is_cpu()) return false;
  if (input.scalar_type() != at::kFloat && input.scalar_type() != at::kBFloat16) return false;
  if (input.size(1) != norm.options.num_features() || input.numel() <= input.size(1)) return false;
  if (!is_dense_channels_last(input)) return false;
  if (after.residual.defined()) {
    const at::Tensor& residual = after.residual;
    if (residual.sizes() != input.sizes() || residual.scalar_type() != input.scalar_type() ||
        !residual.device().is_cpu() || !is_dense_channels_last(residual)) {
      return false;
    }
  }
  return true;
}

at::Tensor normalize_activate(BatchNorm2dImpl& norm, const at::Tensor& input, const AfterNormalization& after) {
  if (can_normalize_fused(norm, input, after)) {
    const auto present = [](const at::Tensor& tensor) {
      return tensor.defined() ? c10::optional<at::Tensor>(tensor) : c10::nullopt;
    };
    return NormalizeActivateFunction::apply(input, present(after.residual), present(norm.weight), present(norm.bias),
                                            &norm, after.rectifier);
  }
  at::Tensor out = norm.forward(input);
  if (after.residual.defined()) out = out + after.residual;
  return rectify(out, after.rectifier);
}

at::Tensor rectify(at::Tensor x, Rectifier rectifier) {
  switch (rectifier) {
    case Rectifier::kRelu:
      return x.relu_();
    case Rectifier::kRelu6:
      if (x.scalar_type() == at::kBFloat16 && x.requires_grad() && at::GradMode::is_enabled()) {
        return at::hardtanh(x.to(at::kFloat), 0, 6).to(at::kBFloat16);
      }
      return at::hardtanh_(x, 0, 6);
    case Rectifier::kNone:
      break;
  }
  return x;
}

std::string fused_batchnorm_kernels() { return instruction_set_name(loop_instruction_set()); }

}  // namespace kennel::models

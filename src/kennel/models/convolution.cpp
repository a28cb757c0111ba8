#include "kennel/models/convolution.h"

#include <optional>
#include <utility>

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/nn/modules/conv.h>

#include "kennel/models/batch_norm.h"
#include "kennel/util/cpu_features.h"

namespace kennel::models {

namespace {

int64_t output_size(int64_t map, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation) {
  const int64_t span = map + 2 * padding - dilation * (kernel - 1) - 1;
  return span < 0 ? 0 : span / stride + 1;
}

struct AxisCut {
  bool cut = false;
  int64_t first = 0, last = 0, padding = 0;
};

// Clauses 1 and 2 on one axis.
AxisCut cut_axis(int64_t map, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation) {
  AxisCut declared{false, 0, kernel - 1, padding};
  const int64_t outputs = output_size(map, kernel, stride, padding, dilation);
  if (outputs < 1) return declared;
  int64_t first = -1, last = -1;
  for (int64_t tap = 0; tap < kernel; ++tap) {
    // Output o reads position o*s - p + tap*d: the first o that reads at or after position 0 must exist
    // and read before the map's end.
    const int64_t before_map = padding - tap * dilation;
    const int64_t first_output = before_map <= 0 ? 0 : (before_map + stride - 1) / stride;
    const bool live = first_output < outputs && first_output * stride - before_map < map;
    if (!live) continue;
    if (first < 0) first = tap;
    last = tap;
  }
  if (first < 0 || (first == 0 && last == kernel - 1)) return declared;
  const int64_t cut_padding = padding - first * dilation;
  if (cut_padding < 0) return declared;
  if (output_size(map, last - first + 1, stride, cut_padding, dilation) != outputs) return declared;
  return {true, first, last, cut_padding};
}

// Every stride-th pixel of a map as a channels-last copy. Its gradient is written into a channels-last map
// of zeros: the slice's own backward would give a contiguous (NCHW) map, which then meets the block's other,
// channels-last gradient of the same input in a conversion.
class SamplePixelsFunction : public torch::autograd::Function<SamplePixelsFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* context, const at::Tensor& input, int64_t row_stride,
                            int64_t column_stride) {
    context->saved_data["sizes"] = input.sizes().vec();
    context->saved_data["strides"] = std::vector<int64_t>{row_stride, column_stride};
    return sampled_view(input, row_stride, column_stride).contiguous(at::MemoryFormat::ChannelsLast);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* context,
                                                 torch::autograd::variable_list gradients) {
    const std::vector<int64_t> strides = context->saved_data["strides"].toIntVector();
    // at::zeros takes no memory format from its options (LibTorch 1.13): empty in channels-last, then zeroed.
    at::Tensor gradient =
        at::empty(context->saved_data["sizes"].toIntVector(), gradients[0].options(), at::MemoryFormat::ChannelsLast)
            .zero_();
    sampled_view(gradient, strides[0], strides[1]).copy_(gradients[0]);
    return {gradient, at::Tensor(), at::Tensor()};
  }

 private:
  static at::Tensor sampled_view(const at::Tensor& map, int64_t row_stride, int64_t column_stride) {
    return map.slice(2, 0, map.size(2), row_stride).slice(3, 0, map.size(3), column_stride);
  }
};

// The pixels each output reads, as a matrix [N*OH*OW, KH*KW*C] in (row tap, column tap, channel) order:
// `input` (channels-last [N, C, H, W]) padded with zeros, read through a strided view, copied once.
at::Tensor columns_of(const at::Tensor& input, const ConvolutionGeometry& geometry, int64_t out_height,
                      int64_t out_width) {
  const at::Tensor padded = at::constant_pad_nd(input.permute({0, 2, 3, 1}),
                                                {0, 0, geometry.padding[1], geometry.padding[1], geometry.padding[0],
                                                 geometry.padding[0]})
                                .contiguous();
  const auto strides = padded.strides();
  const int64_t batch = input.size(0), channels = input.size(1);
  return padded
      .as_strided({batch, out_height, out_width, geometry.kernel[0], geometry.kernel[1], channels},
                  {strides[0], strides[1] * geometry.stride[0], strides[2] * geometry.stride[1], strides[1],
                   strides[2], strides[3]})
      .reshape({batch * out_height * out_width, geometry.kernel[0] * geometry.kernel[1] * channels});
}

// The inverse of columns_of for a gradient: each column's value summed into the pixel it was read from.
at::Tensor map_from_columns(const at::Tensor& columns, const ConvolutionGeometry& geometry,
                            at::IntArrayRef input_sizes, int64_t out_height, int64_t out_width) {
  const int64_t batch = input_sizes[0], channels = input_sizes[1], height = input_sizes[2], width = input_sizes[3];
  at::Tensor padded = at::zeros({batch, height + 2 * geometry.padding[0], width + 2 * geometry.padding[1], channels},
                                columns.options());
  const at::Tensor taps =
      columns.view({batch, out_height, out_width, geometry.kernel[0], geometry.kernel[1], channels});
  for (int64_t row_tap = 0; row_tap < geometry.kernel[0]; ++row_tap) {
    for (int64_t column_tap = 0; column_tap < geometry.kernel[1]; ++column_tap) {
      padded.slice(1, row_tap, row_tap + geometry.stride[0] * (out_height - 1) + 1, geometry.stride[0])
          .slice(2, column_tap, column_tap + geometry.stride[1] * (out_width - 1) + 1, geometry.stride[1])
          .add_(taps.select(4, column_tap).select(3, row_tap));
    }
  }
  return padded.slice(1, geometry.padding[0], geometry.padding[0] + height)
      .slice(2, geometry.padding[1], geometry.padding[1] + width)
      .permute({0, 3, 1, 2})
      .contiguous(at::MemoryFormat::ChannelsLast);
}

// Clause 7: the declared convolution forward; its weight gradient (and, when asked, its input gradient)
// backward as matrix products over columns_of(input).
class ColumnGradientsFunction : public torch::autograd::Function<ColumnGradientsFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* context, const at::Tensor& input,
                            const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                            const ConvolutionGeometry& geometry, bool input_from_columns) {
    context->save_for_backward({input, weight});
    context->saved_data["geometry"] = std::vector<int64_t>{
        geometry.kernel[0], geometry.kernel[1], geometry.stride[0],  geometry.stride[1],
        geometry.padding[0], geometry.padding[1], geometry.dilation[0], geometry.dilation[1]};
    context->saved_data["input_from_columns"] = input_from_columns;
    context->saved_data["bias"] = bias.has_value();
    return at::conv2d(input, weight, bias.value_or(at::Tensor()), geometry.stride, geometry.padding,
                      geometry.dilation, 1);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* context,
                                                 torch::autograd::variable_list gradients) {
    const auto saved = context->get_saved_variables();
    const at::Tensor& input = saved[0];
    const at::Tensor& weight = saved[1];
    const std::vector<int64_t> g = context->saved_data["geometry"].toIntVector();
    const ConvolutionGeometry geometry{{g[0], g[1]}, {g[2], g[3]}, {g[4], g[5]}, {g[6], g[7]}, 1};
    const at::Tensor gradient = gradients[0].contiguous(at::MemoryFormat::ChannelsLast);
    const int64_t out_channels = weight.size(0), out_height = gradient.size(2), out_width = gradient.size(3);
    const at::Tensor pixels = gradient.permute({0, 2, 3, 1}).reshape({-1, out_channels});

    at::Tensor input_gradient, weight_gradient, bias_gradient;
    if (context->needs_input_grad(1)) {
      weight_gradient = pixels.t()
                            .mm(columns_of(input, geometry, out_height, out_width))
                            .view({out_channels, geometry.kernel[0], geometry.kernel[1], input.size(1)})
                            .permute({0, 3, 1, 2});
    }
    // An absent bias is no input of the node (needs_input_grad(2) would be out of range).
    if (context->saved_data["bias"].toBool() && context->needs_input_grad(2)) {
      bias_gradient = pixels.sum(0, false, at::kFloat).to(gradient.scalar_type());
    }
    if (context->needs_input_grad(0)) {
      if (context->saved_data["input_from_columns"].toBool()) {
        const at::Tensor flat_weight = weight.permute({0, 2, 3, 1}).reshape({out_channels, -1});
        input_gradient = map_from_columns(pixels.mm(flat_weight), geometry, input.sizes(), out_height, out_width);
      } else {
        input_gradient = std::get<0>(at::convolution_backward(gradient, input, weight, c10::nullopt, geometry.stride,
                                                              geometry.padding, geometry.dilation, false, {0, 0}, 1,
                                                              {true, false, false}));
      }
    }
    return {input_gradient, weight_gradient, bias_gradient, at::Tensor(), at::Tensor()};
  }
};

// Clause 6's "run for a gradient in bf16".
bool computes_bf16_gradient(const at::Tensor& input, const at::Tensor& weight) {
  const bool bf16 = input.scalar_type() == at::kBFloat16 ||
                    (at::autocast::is_cpu_enabled() && at::autocast::get_autocast_cpu_dtype() == at::kBFloat16);
  return bf16 && at::GradMode::is_enabled() && (weight.requires_grad() || input.requires_grad());
}

// The rule's route for `conv` over `input`, run with `weight` and `bias` in place of the layer's own
// (the same shapes); nullopt when the layer's padding is not numeric zeros or `input` is not 4-d.
std::optional<at::Tensor> convolve_with(torch::nn::Conv2dImpl& conv, const at::Tensor& input, const at::Tensor& weight,
                                        const at::Tensor& bias) {
  const auto& options = conv.options;
  const auto* padding = c10::get_if<torch::ExpandingArray<2>>(&options.padding());
  if (padding == nullptr || !c10::get_if<torch::enumtype::kZeros>(&options.padding_mode()) || input.dim() != 4) {
    return std::nullopt;
  }
  ConvolutionGeometry geometry;
  for (int axis = 0; axis < 2; ++axis) {
    geometry.kernel[axis] = (*options.kernel_size())[axis];
    geometry.stride[axis] = (*options.stride())[axis];
    geometry.padding[axis] = (**padding)[axis];
    geometry.dilation[axis] = (*options.dilation())[axis];
  }
  geometry.groups = options.groups();
  const ConvolutionPlan plan = plan_convolution(geometry, input.size(2), input.size(3));
  if (plan.route == ConvolutionPlan::Route::kDeclared &&
      pixel_product_pays(geometry, input.is_contiguous(at::MemoryFormat::ChannelsLast),
                         computes_bf16_gradient(input, weight), host_cpu_features())) {
    return pixel_product(input, weight, bias, geometry.stride);
  }
  if (plan.route == ConvolutionPlan::Route::kDeclared) {
    const ColumnGradients columns =
        column_gradients_pay(geometry, input.size(1), input.is_contiguous(at::MemoryFormat::ChannelsLast),
                             computes_bf16_gradient(input, weight), host_cpu_features());
    if (columns.weight) return convolution_with_column_gradients(input, weight, bias, geometry, columns.input);
    return at::conv2d(input, weight, bias, geometry.stride, geometry.padding, geometry.dilation, geometry.groups);
  }
  const at::Tensor kept = weight.slice(2, plan.first_tap[0], plan.last_tap[0] + 1)
                              .slice(3, plan.first_tap[1], plan.last_tap[1] + 1);
  if (plan.route == ConvolutionPlan::Route::kCutKernel) {
    return at::conv2d(input, kept, bias, geometry.stride, plan.padding, geometry.dilation, geometry.groups);
  }
  // Flatten map and weight in the same (height, width, channel) or (channel, height, width) order.
  const int64_t batch = input.size(0);
  const int64_t out_channels = kept.size(0);
  const bool channels_last = input.is_contiguous(at::MemoryFormat::ChannelsLast) && !input.is_contiguous();
  const at::Tensor flat_input =
      channels_last ? input.permute({0, 2, 3, 1}).reshape({batch, -1}) : input.reshape({batch, -1});
  const at::Tensor flat_weight = channels_last ? kept.permute({0, 2, 3, 1}).reshape({out_channels, -1})
                                               : kept.reshape({out_channels, -1});
  return at::linear(flat_input, flat_weight, bias).view({batch, out_channels, 1, 1});
}

}  // namespace

ConvolutionPlan plan_convolution(const ConvolutionGeometry& geometry, int64_t height, int64_t width) {
  const std::array<int64_t, 2> map{height, width};
  std::array<AxisCut, 2> axes;
  for (int axis = 0; axis < 2; ++axis) {
    axes[axis] = cut_axis(map[axis], geometry.kernel[axis], geometry.stride[axis], geometry.padding[axis],
                          geometry.dilation[axis]);
  }
  ConvolutionPlan plan;
  bool whole_map = geometry.groups == 1;
  for (int axis = 0; axis < 2; ++axis) {
    plan.first_tap[axis] = axes[axis].first;
    plan.last_tap[axis] = axes[axis].last;
    plan.padding[axis] = axes[axis].padding;
    const int64_t kept = axes[axis].last - axes[axis].first + 1;
    whole_map = whole_map && kept == map[axis] && axes[axis].padding == 0 &&
                (kept == 1 || geometry.dilation[axis] == 1) &&
                output_size(map[axis], kept, geometry.stride[axis], 0, geometry.dilation[axis]) == 1;
  }
  if (whole_map) {
    plan.route = ConvolutionPlan::Route::kMatrixProduct;
  } else if (axes[0].cut || axes[1].cut) {
    plan.route = ConvolutionPlan::Route::kCutKernel;
  }
  return plan;
}

bool pixel_product_pays(const ConvolutionGeometry& geometry, bool channels_last, bool bf16_gradient,
                        const CpuFeatures& cpu) {
  const bool pointwise = geometry.kernel == std::array<int64_t, 2>{1, 1} &&
                         geometry.padding == std::array<int64_t, 2>{0, 0} && geometry.groups == 1;
  return pointwise && channels_last && bf16_gradient && cpu.amx_bf16;
}

at::Tensor pixel_product(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                         const std::array<int64_t, 2>& stride) {
  if (stride != std::array<int64_t, 2>{1, 1}) {
    return pixel_product(SamplePixelsFunction::apply(input, stride[0], stride[1]), weight, bias);
  }
  const int64_t batch = input.size(0), channels = input.size(1), height = input.size(2), width = input.size(3);
  const int64_t out_channels = weight.size(0);
  const at::Tensor pixels = input.permute({0, 2, 3, 1}).reshape({batch * height * width, channels});
  return at::linear(pixels, weight.reshape({out_channels, channels}), bias)
      .view({batch, height, width, out_channels})
      .permute({0, 3, 1, 2});
}

ColumnGradients column_gradients_pay(const ConvolutionGeometry& geometry, int64_t in_channels, bool channels_last,
                                     bool bf16_gradient, const CpuFeatures& cpu) {
  const bool eligible = geometry.kernel != std::array<int64_t, 2>{1, 1} &&
                        geometry.dilation == std::array<int64_t, 2>{1, 1} && geometry.groups == 1 &&
                        channels_last && bf16_gradient && cpu.amx_bf16;
  return {eligible && in_channels >= 256, eligible && in_channels >= 512};
}

at::Tensor convolution_with_column_gradients(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                                             const ConvolutionGeometry& geometry, bool input_from_columns) {
  // Under autocast the operands are cast here, where autocast would cast them for the convolution, so that the
  // backward's matrix products run in the same dtype.
  const bool autocast = at::autocast::is_cpu_enabled();
  const auto cast = [&](const at::Tensor& tensor) {
    return autocast && tensor.is_floating_point() ? tensor.to(at::autocast::get_autocast_cpu_dtype()) : tensor;
  };
  const c10::optional<at::Tensor> cast_bias = bias.defined() ? c10::optional<at::Tensor>(cast(bias)) : c10::nullopt;
  return ColumnGradientsFunction::apply(cast(input).contiguous(at::MemoryFormat::ChannelsLast), cast(weight),
                                        cast_bias, geometry, input_from_columns);
}

at::Tensor convolve(torch::nn::Conv2dImpl& conv, const at::Tensor& input) {
  if (auto out = convolve_with(conv, input, conv.weight, conv.bias)) return *std::move(out);
  return conv.forward(input);
}

bool normalizes_with_running_statistics(const BatchNorm2dImpl& norm) {
  return !norm.is_training() && !norm.folded && norm.fold_in_eval && norm.running_mean.defined() &&
         norm.running_var.defined();
}

at::Tensor convolve_normalized(torch::nn::Conv2dImpl& conv, BatchNorm2dImpl& norm, const at::Tensor& input,
                               const AfterNormalization& after) {
  if (normalizes_with_running_statistics(norm) && input.dim() == 4) {
    // Clause 4: scale = gamma / sqrt(var + eps); weight * scale per output channel, shift beta - mean * scale
    // (+ bias * scale). Differentiable in the layer's weight and bias and the norm's gamma and beta.
    at::Tensor scale = at::rsqrt(norm.running_var + norm.options.eps());
    if (norm.weight.defined()) scale = scale * norm.weight;
    at::Tensor shift = -norm.running_mean * scale;
    if (norm.bias.defined()) shift = shift + norm.bias;
    if (conv.bias.defined()) shift = shift + conv.bias * scale;
    const at::Tensor weight = (conv.weight * scale.view({-1, 1, 1, 1})).to(conv.weight.scalar_type());
    if (auto out = convolve_with(conv, input, weight, shift.to(conv.weight.scalar_type()))) {
      // Clause 5 after a folded BatchNorm: the convolution's output is not needed by its backward.
      if (after.residual.defined()) *out += after.residual;
      return rectify(*std::move(out), after.rectifier);
    }
  }
  return normalize_activate(norm, convolve(conv, input), after);
}

at::Tensor convolve_normalized_tapped(const std::string& tap, ActivationKind kind, torch::nn::Conv2dImpl& conv,
                                      BatchNorm2dImpl& norm, const at::Tensor& input, AfterNormalization after) {
  if (tap.empty() || !activation_observed()) return convolve_normalized(conv, norm, input, after);
  const Rectifier rectifier = std::exchange(after.rectifier, Rectifier::kNone);
  at::Tensor out = convolve_normalized(conv, norm, input, after);
  probe_activation(tap, kind, out);
  return rectify(out, rectifier);
}

}  // namespace kennel::models

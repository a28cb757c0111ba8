#include "kennel/models/quantized_graph.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/native/quantized/PackedParams.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>
#include <torch/custom_class.h>
#include <torch/nn/modules/conv.h>

#include "kennel/util/cpu_features.h"

namespace kennel::models {

namespace {

enum class StepKind { kConv, kMaxPool, kAdd };
enum class Activation { kNone, kRelu, kRelu6 };

using ConvPacked = c10::intrusive_ptr<ConvPackedParamsBase<2>>;
using LinearPacked = c10::intrusive_ptr<LinearPackedParamsBase>;

ConvPacked prepack_conv(const at::Tensor& qweight, const c10::optional<at::Tensor>& bias,
                        const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                        const std::vector<int64_t>& dilation, int64_t groups) {
  static const auto prepack = c10::Dispatcher::singleton().findSchemaOrThrow("quantized::conv2d_prepack", "");
  torch::jit::Stack stack{qweight, bias, c10::List<int64_t>(stride), c10::List<int64_t>(padding),
                          c10::List<int64_t>(dilation), groups};
  prepack.callBoxed(&stack);
  return stack.at(0).toCustomClass<ConvPackedParamsBase<2>>();
}

LinearPacked prepack_linear(const at::Tensor& qweight, const c10::optional<at::Tensor>& bias) {
  static const auto prepack = c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_prepack", "");
  torch::jit::Stack stack{qweight, bias};
  prepack.callBoxed(&stack);
  return stack.at(0).toCustomClass<LinearPackedParamsBase>();
}

constexpr const char* kInputPoint = "input";
// The input size build() checks the rewritten graph at: small, and deep enough for every stride.
constexpr int64_t kCheckSize = 64;

std::pair<double, int64_t> quant_params(const ActivationRange& range, bool reduce_range) {
  const double quant_max = reduce_range ? 127 : 255;
  // The range must hold 0 exactly (zero padding and ReLU are exact in int8 only then).
  const double low = std::min(range.min, 0.0);
  const double high = std::max(range.max, 0.0);
  const double scale = std::max((high - low) / quant_max, 1e-8);
  const auto zero_point = static_cast<int64_t>(std::clamp(std::nearbyint(-low / scale), 0.0, quant_max));
  return {scale, zero_point};
}

void widen(ActivationRange& range, const at::Tensor& values) {
  const auto [low, high] = at::aminmax(values);
  const double lo = low.item<double>(), hi = high.item<double>();
  range.min = range.seen ? std::min(range.min, lo) : lo;
  range.max = range.seen ? std::max(range.max, hi) : hi;
  range.seen = true;
}

std::vector<int64_t> pair_of(const torch::ExpandingArray<2>& values) { return {values->at(0), values->at(1)}; }

}  // namespace

struct QuantizedGraph::Step {
  StepKind kind = StepKind::kConv;
  std::string point;  // the output's name in the calibration table; "" for max-pool (keeps its input's)
  int input = 0;
  int other = -1;  // kAdd: the second operand
  int output = 0;
  Activation activation = Activation::kNone;
  std::shared_ptr<torch::nn::Conv2dImpl> conv;
  std::vector<int64_t> stride, padding, dilation;
  // A 1x1 convolution with stride 1, no padding and one group, run as a matrix product over the
  // channels-last map's pixels (quantized::linear): oneDNN 2.6's AMX kernel for 1x1 int8
  // convolutions corrupts memory on some map sizes, its int8 matrix product does not.
  bool pointwise = false;
  LinearPacked linear;
  // LibTorch 1.13's oneDNN packed weights settle into the layout of the first input shape they
  // run; a shape whose kernel wants another layout then fails ("could not create a primitive
  // descriptor for a reorder primitive": seen at 32 px, batch 1 after batch 2, on 2 threads).
  // So each batch size is mapped to a pack that runs it, a new pack made when none does.
  at::Tensor qweight;
  c10::optional<at::Tensor> bias;
  std::mutex packs_mutex;
  std::vector<ConvPacked> packs;
  std::map<int64_t, size_t> pack_of_batch;

  at::Tensor apply(const ConvPacked& pack, const at::Tensor& x) const {
    return activation == Activation::kNone ? pack->apply(x, scale, zero_point)
                                           : pack->apply_relu(x, scale, zero_point);
  }

  at::Tensor run_pointwise(const at::Tensor& x) const {
    const int64_t batch = x.size(0), height = x.size(2), width = x.size(3);
    const at::Tensor pixels = x.permute({0, 2, 3, 1}).contiguous().view({-1, x.size(1)});
    const at::Tensor out = activation == Activation::kNone ? linear->apply(pixels, scale, zero_point)
                                                           : linear->apply_relu(pixels, scale, zero_point);
    return out.view({batch, height, width, out.size(1)}).permute({0, 3, 1, 2});
  }

  at::Tensor run_int8(const at::Tensor& x) {
    if (pointwise) return run_pointwise(x);
    const int64_t batch = x.size(0);
    ConvPacked pack;
    {
      const std::lock_guard<std::mutex> lock(packs_mutex);
      const auto found = pack_of_batch.find(batch);
      if (found != pack_of_batch.end()) pack = packs[found->second];
    }
    if (pack) {
      try {
        return apply(pack, x);
      } catch (const std::exception&) {  // dnnl::error, not c10::Error
        // Another shape changed the pack's layout meanwhile: find it a pack again.
      }
    }
    const std::lock_guard<std::mutex> lock(packs_mutex);
    for (size_t i = 0; i < packs.size(); ++i) {
      try {
        at::Tensor out = apply(packs[i], x);
        pack_of_batch[batch] = i;
        return out;
      } catch (const std::exception&) {
      }
    }
    packs.push_back(prepack_conv(qweight, bias, stride, padding, dilation, conv->options.groups()));
    pack_of_batch[batch] = packs.size() - 1;
    return apply(packs.back(), x);
  }
  double scale = 1;
  int64_t zero_point = 0;
};

// Rewrites a folded backbone into steps, by torchvision's module names.
class QuantizedGraphBuilder {
 public:
  explicit QuantizedGraphBuilder(QuantizedGraph& graph)
      : graph_(graph), modules_(graph.classifier_->backbone().named_modules("", /*include_self=*/false)) {}

  Status build_resnet() {
    int x = conv("conv1", 0, Activation::kRelu);
    if (x < 0) return missing("conv1");
    x = add_step(StepKind::kMaxPool, "", x);
    for (int layer = 1; layer <= 4; ++layer) {
      for (int block = 0;; ++block) {
        const std::string prefix = fmt::format("layer{}.{}.", layer, block);
        if (!has(prefix + "conv1")) {
          if (block == 0) return missing(prefix + "conv1");
          break;
        }
        const bool bottleneck = has(prefix + "conv3");
        int out = conv(prefix + "conv1", x, Activation::kRelu);
        out = conv(prefix + "conv2", out, bottleneck ? Activation::kRelu : Activation::kNone);
        if (bottleneck) out = conv(prefix + "conv3", out, Activation::kNone);
        const int identity = has(prefix + "downsample.0") ? conv(prefix + "downsample.0", x, Activation::kNone) : x;
        x = add_step(StepKind::kAdd, prefix + "add", out, identity, Activation::kRelu);
      }
    }
    graph_.output_slot_ = x;
    return {};
  }

  Status build_mobilenet_v2() {
    int x = conv("features.0.0", 0, Activation::kRelu6);
    if (x < 0) return missing("features.0.0");
    for (int block = 1;; ++block) {
      const std::string prefix = fmt::format("features.{}.conv.", block);
      if (!has(prefix + "0")) {
        // The last feature layer is a Conv2dNormActivation, not an InvertedResidual.
        x = conv(fmt::format("features.{}.0", block), x, Activation::kRelu6);
        if (x < 0) return missing(fmt::format("features.{}.0", block));
        break;
      }
      int out = x;
      bool strided = false;
      int64_t in_channels = -1, out_channels = -1;
      for (int index = 0;; ++index) {
        const std::string name = prefix + std::to_string(index);
        const bool with_activation = has(name + ".0");
        if (!with_activation && !is_conv(name)) break;
        const std::string conv_name = with_activation ? name + ".0" : name;
        const auto& options = find_conv(conv_name)->options;
        if (in_channels < 0) in_channels = options.in_channels();
        out_channels = options.out_channels();
        strided = strided || options.stride()->at(0) != 1 || options.stride()->at(1) != 1;
        out = conv(conv_name, out, with_activation ? Activation::kRelu6 : Activation::kNone);
      }
      if (!strided && in_channels == out_channels) {
        out = add_step(StepKind::kAdd, fmt::format("features.{}.add", block), out, x);
      }
      x = out;
    }
    graph_.output_slot_ = x;
    return {};
  }

 private:
  bool has(const std::string& name) const { return modules_.find(name) != nullptr; }
  bool is_conv(const std::string& name) const { return find_conv(name) != nullptr; }
  std::shared_ptr<torch::nn::Conv2dImpl> find_conv(const std::string& name) const {
    const auto* module = modules_.find(name);
    return module == nullptr ? nullptr : std::dynamic_pointer_cast<torch::nn::Conv2dImpl>(*module);
  }
  static Status missing(const std::string& name) {
    return internal_error("int8: the backbone has no convolution '{}' where its architecture puts one", name);
  }

  // -1 when `name` is not a convolution (the caller names what is missing).
  int conv(const std::string& name, int input, Activation activation) {
    auto layer = find_conv(name);
    if (layer == nullptr || input < 0) return -1;
    const auto* padding = c10::get_if<torch::ExpandingArray<2>>(&layer->options.padding());
    if (padding == nullptr || !c10::holds_alternative<torch::enumtype::kZeros>(layer->options.padding_mode())) {
      return -1;
    }
    const int output = add_step(StepKind::kConv, name, input, -1, activation);
    QuantizedGraph::Step& step = *graph_.steps_.back();
    step.conv = layer;
    step.stride = pair_of(layer->options.stride());
    step.padding = pair_of(*padding);
    step.dilation = pair_of(layer->options.dilation());
    const auto& kernel = layer->options.kernel_size();
    step.pointwise = kernel->at(0) == 1 && kernel->at(1) == 1 && step.stride == std::vector<int64_t>{1, 1} &&
                     step.padding == std::vector<int64_t>{0, 0} && layer->options.groups() == 1;
    return output;
  }

  int add_step(StepKind kind, std::string point, int input, int other = -1,
               Activation activation = Activation::kNone) {
    auto step = std::make_unique<QuantizedGraph::Step>();
    step->kind = kind;
    step->point = std::move(point);
    step->input = input;
    step->other = other;
    step->activation = activation;
    step->output = graph_.slot_count_++;
    graph_.steps_.push_back(std::move(step));
    return graph_.steps_.back()->output;
  }

  QuantizedGraph& graph_;
  torch::OrderedDict<std::string, std::shared_ptr<torch::nn::Module>> modules_;
};

at::Tensor quantize_activation(const at::Tensor& values, double scale, int64_t zero_point) {
  // quantize_val's arithmetic: round half to even of value * (1 / scale) in float, plus the zero point, clamped.
  const float inverse_scale = 1.0f / static_cast<float>(scale);
  const at::Tensor levels = at::round(values.to(at::kFloat) * inverse_scale).add_(zero_point).clamp_(0, 255);
  return at::_make_per_tensor_quantized_tensor(levels.to(at::kByte), scale, zero_point);
}

at::Tensor dequantize_activation(const at::Tensor& quantized) {
  // dequantize_val's arithmetic: (level - zero point) * scale, in float.
  return (quantized.int_repr().to(at::kFloat) - static_cast<float>(quantized.q_zero_point()))
      .mul_(static_cast<float>(quantized.q_scale()));
}

std::string describe_int8_kernels(const CpuFeatures& cpu) {
  if (cpu.amx_int8) {
    return "AMX (amx_int8; 1x1 convolutions run as oneDNN int8 matrix products: its AMX 1x1 int8 convolution "
           "corrupts memory; docs/decisions.md)";
  }
  if (cpu.native_int8()) return cpu.avx512_vnni ? "VNNI (avx512_vnni)" : "VNNI (avx_vnni)";
  return "no VNNI or AMX: 7-bit activations, slower than bf16 or fp32 here";
}

Status check_quantizable(const ModelSpec& spec) {
  if (spec.keras_compat) {
    return invalid_argument("int8: a Keras-compatible MobileNetV2 (TF 'same' padding) cannot be quantized here; "
                            "serve it at fp32 or bf16");
  }
  if (spec.arch.rfind("resnet", 0) != 0 && spec.arch != "mobilenet_v2") {
    return invalid_argument("int8: architecture '{}' cannot be quantized: use a ResNet or mobilenet_v2", spec.arch);
  }
  return {};
}

QuantizedGraph::QuantizedGraph(Classifier classifier) : classifier_(std::move(classifier)) {}
QuantizedGraph::~QuantizedGraph() = default;

Result<std::unique_ptr<QuantizedGraph>> QuantizedGraph::build(Classifier classifier) {
  KENNEL_RETURN_IF_ERROR(check_quantizable(classifier->spec()));
  std::unique_ptr<QuantizedGraph> graph(new QuantizedGraph(classifier));
  QuantizedGraphBuilder builder(*graph);
  KENNEL_RETURN_IF_ERROR(classifier->spec().arch == "mobilenet_v2" ? builder.build_mobilenet_v2()
                                                                    : builder.build_resnet());
  // Each slot is freed after the last step that reads it (the output slot is never read).
  std::vector<int> last_use(static_cast<size_t>(graph->slot_count_), -1);
  for (size_t i = 0; i < graph->steps_.size(); ++i) {
    const Step& step = *graph->steps_[i];
    last_use[static_cast<size_t>(step.input)] = static_cast<int>(i);
    if (step.other >= 0) last_use[static_cast<size_t>(step.other)] = static_cast<int>(i);
  }
  graph->dead_after_.assign(graph->steps_.size(), {});
  for (size_t slot = 0; slot < last_use.size(); ++slot) {
    if (last_use[slot] >= 0) graph->dead_after_[static_cast<size_t>(last_use[slot])].push_back(static_cast<int>(slot));
  }
  // The rewrite must compute what the classifier computes: checked once, at fp32, here.
  c10::InferenceMode inference;
  const at::Tensor probe = at::randn({2, 3, kCheckSize, kCheckSize}, at::TensorOptions().dtype(at::kFloat))
                               .contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor expected = classifier->forward(probe).to(at::kFloat);
  const at::Tensor actual = graph->run_fp32(probe, /*record=*/false);
  const double difference = (expected - actual).abs().max().item<double>();
  const double magnitude = expected.abs().max().item<double>();
  if (!(difference <= 1e-3 * (1 + magnitude))) {
    return internal_error("int8: the rewritten {} graph differs from the model by {:.3g} (logits up to {:.3g}): "
                          "this backbone is not one the quantizer understands",
                          classifier->spec().arch, difference, magnitude);
  }
  return graph;
}

std::vector<std::string> QuantizedGraph::points() const {
  std::vector<std::string> names = {kInputPoint};
  for (const auto& step : steps_) {
    if (!step->point.empty()) names.push_back(step->point);
  }
  return names;
}

std::vector<std::string> QuantizedGraph::matrix_product_points() const {
  std::vector<std::string> names;
  for (const auto& step : steps_) {
    if (step->pointwise) names.push_back(step->point);
  }
  return names;
}

at::Tensor QuantizedGraph::run_fp32(const at::Tensor& images, bool record) {
  std::vector<at::Tensor> slots(static_cast<size_t>(slot_count_));
  slots[0] = images.to(at::kFloat).contiguous(at::MemoryFormat::ChannelsLast);
  if (record) widen(ranges_[kInputPoint], slots[0]);
  for (size_t i = 0; i < steps_.size(); ++i) {
    const Step& step = *steps_[i];
    const at::Tensor& x = slots[static_cast<size_t>(step.input)];
    at::Tensor out;
    switch (step.kind) {
      case StepKind::kConv:
        out = at::conv2d(x, step.conv->weight, step.conv->bias, step.stride, step.padding, step.dilation,
                         step.conv->options.groups());
        break;
      case StepKind::kMaxPool:
        out = at::max_pool2d(x, {3, 3}, {2, 2}, {1, 1}, {1, 1});
        break;
      case StepKind::kAdd:
        out = x + slots[static_cast<size_t>(step.other)];
        break;
    }
    if (step.activation == Activation::kRelu) out.relu_();
    if (step.activation == Activation::kRelu6) out.clamp_(0, 6);
    if (record && !step.point.empty()) widen(ranges_[step.point], out);
    slots[static_cast<size_t>(step.output)] = out;
    for (int slot : dead_after_[i]) slots[static_cast<size_t>(slot)].reset();
  }
  const at::Tensor features = at::adaptive_avg_pool2d(slots[static_cast<size_t>(output_slot_)], {1, 1}).flatten(1);
  return classifier_->head_forward(features).to(at::kFloat);
}

at::Tensor QuantizedGraph::calibrate(const at::Tensor& images) {
  c10::InferenceMode inference;
  return run_fp32(images, /*record=*/true);
}

Status QuantizedGraph::quantize(const CalibrationTable& table, bool reduce_range) {
  std::vector<std::string> missing_points;
  for (const auto& name : points()) {
    const auto found = table.find(name);
    if (found == table.end() || !found->second.seen) missing_points.push_back(name);
  }
  if (!missing_points.empty()) {
    return invalid_argument("int8: the calibration has no range for {} point(s) of this {}: {}{}; quantize the "
                            "model again (kennel quantize)",
                            missing_points.size(), classifier_->spec().arch,
                            fmt::join(missing_points.begin(),
                                      missing_points.begin() + std::min<std::ptrdiff_t>(5, missing_points.size()), ", "),
                            missing_points.size() > 5 ? ", ..." : "");
  }
  auto& context = at::globalContext();
  const auto& engines = context.supportedQEngines();
  if (std::find(engines.begin(), engines.end(), at::QEngine::ONEDNN) == engines.end()) {
    return failed_precondition("int8: this LibTorch has no oneDNN quantized engine; serve at fp32 or bf16");
  }
  context.setQEngine(at::QEngine::ONEDNN);
  ranges_ = table;
  std::tie(input_scale_, input_zero_point_) = quant_params(table.at(kInputPoint), reduce_range);
  try {
    c10::InferenceMode inference;
    for (auto& step : steps_) {
      if (!step->point.empty()) std::tie(step->scale, step->zero_point) = quant_params(table.at(step->point), reduce_range);
      if (step->kind != StepKind::kConv) continue;
      const at::Tensor weight = step->conv->weight.detach().to(at::kFloat).contiguous();
      const at::Tensor scales = (weight.abs().amax({1, 2, 3}).to(at::kDouble) / 127.0).clamp_min(1e-12);
      const at::Tensor zero_points = at::zeros({weight.size(0)}, at::kLong);
      step->qweight = at::quantize_per_channel(weight, scales, zero_points, 0, at::kQInt8);
      step->bias.reset();
      if (step->conv->bias.defined()) step->bias = step->conv->bias.detach().to(at::kFloat).contiguous();
      step->pack_of_batch.clear();
      if (step->pointwise) {
        step->linear = prepack_linear(step->qweight.view({weight.size(0), weight.size(1)}), step->bias);
        step->packs.clear();
      } else {
        step->packs = {prepack_conv(step->qweight, step->bias, step->stride, step->padding, step->dilation,
                                    step->conv->options.groups())};
      }
    }
  } catch (const c10::Error& error) {
    return internal_error("int8: preparing the quantized weights failed: {}", error.what_without_backtrace());
  }
  quantized_ = true;
  return {};
}

at::Tensor QuantizedGraph::forward(const at::Tensor& images) {
  if (!quantized_) throw Error(failed_precondition("int8: forward() before quantize()"));
  static const auto add = c10::Dispatcher::singleton()
                              .findSchemaOrThrow("quantized::add", "")
                              .typed<at::Tensor(at::Tensor, at::Tensor, double, int64_t)>();
  static const auto add_relu = c10::Dispatcher::singleton()
                                   .findSchemaOrThrow("quantized::add_relu", "")
                                   .typed<at::Tensor(at::Tensor, at::Tensor, double, int64_t)>();
  c10::InferenceMode inference;
  std::vector<at::Tensor> slots(static_cast<size_t>(slot_count_));
  slots[0] = quantize_activation(images.to(at::kFloat).contiguous(at::MemoryFormat::ChannelsLast), input_scale_,
                                 input_zero_point_);
  for (size_t i = 0; i < steps_.size(); ++i) {
    Step& step = *steps_[i];
    const at::Tensor& x = slots[static_cast<size_t>(step.input)];
    at::Tensor out;
    switch (step.kind) {
      case StepKind::kConv:
        out = step.run_int8(x);
        break;
      case StepKind::kMaxPool:
        // Dilation spelled out: the quantized kernel reads two values where the float one expands one.
        out = at::max_pool2d(x, {3, 3}, {2, 2}, {1, 1}, {1, 1});
        break;
      case StepKind::kAdd: {
        const at::Tensor& y = slots[static_cast<size_t>(step.other)];
        // A ReLU's output range starts at 0, so its zero point is 0 and the plain add's clamp at level 0
        // is the ReLU, level for level; LibTorch 1.13's add_relu is 3x slower here (no FBGEMM: 5.5 against
        // 1.7 ms for 16 images of ResNet-50's layer1 on a 2-core Xeon).
        out = step.activation == Activation::kRelu && step.zero_point != 0
                  ? add_relu.call(x, y, step.scale, step.zero_point)
                  : add.call(x, y, step.scale, step.zero_point);
        break;
      }
    }
    slots[static_cast<size_t>(step.output)] = out;
    for (int slot : dead_after_[i]) slots[static_cast<size_t>(slot)].reset();
  }
  const at::Tensor features =
      at::adaptive_avg_pool2d(dequantize_activation(slots[static_cast<size_t>(output_slot_)]), {1, 1}).flatten(1);
  return classifier_->head_forward(features).to(at::kFloat);
}

}  // namespace kennel::models

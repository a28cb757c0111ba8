#include "kennel/models/inference_graph.h"

#include <torch/nn/modules/conv.h>
#include <torch/torch.h>

#include "kennel/models/batch_norm.h"

namespace kennel::models {

namespace {
std::string parent_of(const std::string& name) {
  const size_t dot = name.rfind('.');
  return dot == std::string::npos ? std::string() : name.substr(0, dot);
}

// Conv2d::forward adds the member `bias`, which a bias-free layer leaves
// undefined and unregistered: Module::to() will not convert it, so the
// folded bias is converted by hand with the weights (convert_folded_biases).
void fold_into(torch::nn::Conv2dImpl& conv, const BatchNorm2dImpl& bn) {
  torch::NoGradGuard no_grad;
  const at::Tensor var = bn.running_var.to(at::kDouble);
  const at::Tensor mean = bn.running_mean.to(at::kDouble);
  const int64_t channels = var.size(0);
  const at::Tensor gamma = bn.weight.defined() ? bn.weight.to(at::kDouble) : at::ones({channels}, at::kDouble);
  const at::Tensor beta = bn.bias.defined() ? bn.bias.to(at::kDouble) : at::zeros({channels}, at::kDouble);
  const at::Tensor scale = gamma / (var + bn.options.eps()).sqrt();
  const at::Tensor old_bias = conv.bias.defined() ? conv.bias.to(at::kDouble) : at::zeros({channels}, at::kDouble);
  const auto format = conv.weight.suggest_memory_format();
  const at::Tensor weight = conv.weight.to(at::kDouble) * scale.view({-1, 1, 1, 1});
  conv.weight.set_data(weight.to(conv.weight.scalar_type()).contiguous(format));
  conv.bias = (beta + (old_bias - mean) * scale).to(conv.weight.scalar_type());
}
}  // namespace

int fold_batchnorm(torch::nn::Module& model) {
  model.eval();
  int folded = 0;
  std::shared_ptr<torch::nn::Module> previous;
  std::string previous_name;
  for (const auto& item : model.named_modules()) {
    auto* bn = item.value()->as<BatchNorm2dImpl>();
    auto* conv = previous ? previous->as<torch::nn::Conv2dImpl>() : nullptr;
    if (bn != nullptr && !bn->folded && conv != nullptr && parent_of(previous_name) == parent_of(item.key()) &&
        bn->running_var.defined() && conv->weight.size(0) == bn->running_var.size(0)) {
      fold_into(*conv, *bn);
      bn->folded = true;
      ++folded;
    }
    previous = item.value();
    previous_name = item.key();
  }
  return folded;
}

int prepare_inference_graph(Classifier& classifier, const InferenceGraphOptions& options) {
  classifier->eval();
  int folded = 0;
  if (options.fold_batchnorm) {
    folded = fold_batchnorm(*classifier);
  } else {
    for (const auto& module : classifier->modules()) {
      if (auto* bn = module->as<BatchNorm2dImpl>()) bn->fold_in_eval = false;
    }
  }
  if (options.dtype != at::kFloat) {
    classifier->to(options.dtype);
    for (const auto& module : classifier->modules()) {
      if (auto* conv = module->as<torch::nn::Conv2dImpl>(); conv != nullptr && conv->bias.defined()) {
        conv->bias = conv->bias.to(options.dtype);
      }
    }
  }
  if (options.channels_last) classifier->to(at::MemoryFormat::ChannelsLast);
  for (auto& parameter : classifier->parameters()) parameter.set_requires_grad(false);
  return folded;
}

Result<Classifier> inference_copy(const Classifier& classifier, const InferenceGraphOptions& options) {
  auto copy = build_classifier(classifier->spec());
  if (!copy.ok()) return copy.status();
  auto loaded = apply_state_dict(*copy, state_dict_of(*classifier));
  if (!loaded.ok()) return internal_error("copying the model for inference: {}", loaded.status().message());
  prepare_inference_graph(*copy, options);
  return *copy;
}

}  // namespace kennel::models

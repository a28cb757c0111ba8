#include "kennel/models/classifier.h"

#include <algorithm>
#include <charconv>
#include <functional>
#include <set>
#include <string_view>
#include <unordered_map>

#include <c10/util/Exception.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include "kennel/models/batch_norm.h"
#include "kennel/models/mobilenet_v2.h"
#include "kennel/models/resnet.h"

namespace kennel::models {

namespace {

namespace nn = torch::nn;

// ---- the registry -----------------------------------------------------------
struct ArchEntry {
  std::string name;
  std::string stage_names;  // for error messages
  int64_t stage_count;
  std::function<std::shared_ptr<BackboneImpl>(const ModelSpec&)> make;
};

std::shared_ptr<BackboneImpl> make_resnet(int64_t depth) {
  return std::make_shared<ResNetImpl>(ResNetOptions{.depth = depth, .num_classes = 0});
}

const std::vector<ArchEntry>& registry() {
  static const std::vector<ArchEntry> entries = [] {
    const std::string resnet_stages = "stem, layer1, layer2, layer3, layer4";
    std::vector<ArchEntry> list;
    for (int64_t depth : {18, 34, 50, 101, 152}) {
      list.push_back({fmt::format("resnet{}", depth), resnet_stages, 5,
                      [depth](const ModelSpec&) { return make_resnet(depth); }});
    }
    list.push_back({"mobilenet_v2", "stem, features.1, features.2-3, features.4-6, features.7-13, features.14-18", 6,
                    [](const ModelSpec& spec) -> std::shared_ptr<BackboneImpl> {
                      MobileNetV2Options options;
                      options.num_classes = 0;
                      if (spec.keras_compat) {
                        options.tf_same_padding = true;
                        options.batch_norm_eps = 1e-3;
                      }
                      return std::make_shared<MobileNetV2Impl>(options);
                    }});
    return list;
  }();
  return entries;
}

const ArchEntry* find_arch(const std::string& arch) {
  for (const auto& entry : registry()) {
    if (entry.name == arch) return &entry;
  }
  return nullptr;
}

Status unknown_arch(const std::string& arch) {
  std::string known;
  for (const auto& name : known_architectures()) known += (known.empty() ? "" : ", ") + name;
  return invalid_argument("unknown arch '{}': known are {}", arch, known);
}

// How many backbone stages train, counted from the output end.
Result<int64_t> trainable_stages(const std::string& freeze, const ArchEntry& arch) {
  if (freeze == "backbone") return int64_t{0};
  if (freeze == "none") return arch.stage_count;
  constexpr std::string_view kLast = "last:";
  if (freeze.starts_with(kLast)) {
    const std::string_view digits = std::string_view(freeze).substr(kLast.size());
    int64_t count = -1;
    const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), count);
    if (error == std::errc() && end == digits.data() + digits.size() && !digits.empty()) {
      if (count >= 0 && count <= arch.stage_count) return count;
      return invalid_argument("freeze '{}': {} has {} stages ({}), so N must be 0..{}", freeze, arch.name,
                              arch.stage_count, arch.stage_names, arch.stage_count);
    }
  }
  return invalid_argument("freeze '{}' is not understood: use 'backbone' (train the head only), 'none', "
                          "or 'last:N' (train the last N of {}'s {} stages)",
                          freeze, arch.name, arch.stage_count);
}

// ---- the head -----------------------------------------------------------------
void init_linear(nn::Linear& linear, const HeadStyle& style) {
  if (style.linear_init_std > 0) {
    nn::init::normal_(linear->weight, 0, style.linear_init_std);
    nn::init::zeros_(linear->bias);
  }
}

struct Head {
  std::shared_ptr<nn::Module> module;
  std::function<at::Tensor(const at::Tensor&)> forward;
};

Head make_head(const ModelSpec& spec, int64_t in, const HeadStyle& style) {
  auto linear = [&](int64_t from, int64_t to) {
    nn::Linear layer(from, to);
    init_linear(layer, style);
    return layer;
  };
  if (spec.head_hidden.empty() && style.leading_dropout == 0) {
    nn::Linear head = linear(in, spec.num_classes);
    return {head.ptr(), [head](const at::Tensor& x) mutable { return head->forward(x); }};
  }
  nn::Sequential head;
  if (style.leading_dropout > 0) head->push_back(nn::Dropout(style.leading_dropout));
  for (int64_t width : spec.head_hidden) {
    head->push_back(linear(in, width));
    head->push_back(nn::ReLU());
    head->push_back(nn::Dropout(spec.dropout));
    in = width;
  }
  head->push_back(linear(in, spec.num_classes));
  return {head.ptr(), [head](const at::Tensor& x) mutable { return head->forward(x); }};
}

// ---- state dicts ----------------------------------------------------------------
std::string shape_of(const at::Tensor& tensor) {
  std::string text = "[";
  for (int64_t i = 0; i < tensor.dim(); ++i) text += (i ? ", " : "") + std::to_string(tensor.size(i));
  return text + "]";
}

std::string with_shape(const NamedTensor& named) { return named.name + " " + shape_of(named.tensor); }

// "a, b, c (and 12 more)": keeps one-line error messages readable for a wholly wrong file.
std::string join_limited(const std::vector<std::string>& items, size_t limit) {
  std::string text;
  for (size_t i = 0; i < items.size() && i < limit; ++i) text += (i ? "; " : "") + items[i];
  if (items.size() > limit) text += fmt::format(" (and {} more)", items.size() - limit);
  return text;
}

std::string keys_word(size_t count) { return count == 1 ? "key" : "keys"; }

}  // namespace

// ---- registry and spec --------------------------------------------------------------
const std::vector<std::string>& known_architectures() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> list;
    for (const auto& entry : registry()) list.push_back(entry.name);
    return list;
  }();
  return names;
}

Result<int64_t> stage_count(const std::string& arch) {
  const ArchEntry* entry = find_arch(arch);
  if (entry == nullptr) return unknown_arch(arch);
  return entry->stage_count;
}

Status ModelSpec::validate() const {
  const ArchEntry* entry = find_arch(arch);
  if (entry == nullptr) return unknown_arch(arch);
  if (num_classes < 1) {
    return invalid_argument("num_classes is {}: a classifier needs at least 1 class", num_classes);
  }
  for (size_t i = 0; i < head_hidden.size(); ++i) {
    if (head_hidden[i] < 1) {
      return invalid_argument("head_hidden[{}] is {}: hidden widths must be >= 1", i, head_hidden[i]);
    }
  }
  if (!(dropout >= 0 && dropout < 1)) {
    return invalid_argument("dropout is {}: use a probability in [0, 1)", dropout);
  }
  auto trainable = trainable_stages(freeze, *entry);
  if (!trainable.ok()) return trainable.status();
  if (keras_compat && arch != "mobilenet_v2") {
    return invalid_argument("keras_compat is set for {}: it applies to mobilenet_v2 only", arch);
  }
  return {};
}

// ---- the classifier -----------------------------------------------------------------
ClassifierImpl::ClassifierImpl(const ModelSpec& spec) : torch::nn::Module("Classifier"), spec_(spec) {
  if (Status status = spec_.validate(); !status.ok()) throw Error(status);
  const ArchEntry& arch = *find_arch(spec_.arch);
  backbone_ = arch.make(spec_);
  head_style_ = backbone_->head_style();

  // The backbone's children become ours under their own names, so that our
  // state dict reads "conv1.weight", not "backbone.conv1.weight"; the backbone
  // object stays for its forward code, sharing these very modules.
  for (const auto& child : backbone_->named_children()) register_module(child.key(), child.value());
  Head head = make_head(spec_, backbone_->feature_dim(), head_style_);
  head_ = register_module(head_style_.name, head.module);
  run_head_ = std::move(head.forward);

  const auto stages = backbone_->stages();
  const int64_t frozen = static_cast<int64_t>(stages.size()) - trainable_stages(spec_.freeze, arch).value();
  for (int64_t i = 0; i < frozen; ++i) {
    const auto& stage = stages[static_cast<size_t>(i)];
    frozen_stage_names_.push_back(stage.name);
    for (const auto& module : stage.modules) {
      for (auto& parameter : module->parameters()) parameter.set_requires_grad(false);
      frozen_modules_.push_back(module);
    }
  }
  train(true);
}

void ClassifierImpl::train(bool on) {
  torch::nn::Module::train(on);
  backbone_->train(on);  // its own flag; its children are ours and already set
  if (on) {
    for (const auto& module : frozen_modules_) module->eval();
    if (spec_.frozen_batchnorm) {
      for (const auto& module : modules(/*include_self=*/false)) {
        if (module->as<BatchNorm2d>() != nullptr) module->eval();
      }
    }
  }
}

at::Tensor ClassifierImpl::features(const at::Tensor& images) { return backbone_->features(images); }

at::Tensor ClassifierImpl::head_forward(const at::Tensor& features) { return run_head_(features); }

at::Tensor ClassifierImpl::forward(const at::Tensor& images) { return head_forward(features(images)); }

std::vector<at::Tensor> ClassifierImpl::trainable_parameters() const {
  std::vector<at::Tensor> result;
  for (const auto& parameter : parameters()) {
    if (parameter.requires_grad()) result.push_back(parameter);
  }
  return result;
}

std::vector<at::Tensor> ClassifierImpl::head_parameters() const { return head_->parameters(); }

Result<Classifier> build_classifier(const ModelSpec& spec) {
  KENNEL_RETURN_IF_ERROR(spec.validate());
  try {
    return Classifier(spec);
  } catch (const Error& error) {
    return error.status();
  } catch (const c10::Error& error) {
    return internal_error("building {}: {}", spec.arch, error.what_without_backtrace());
  }
}

// ---- state dicts ------------------------------------------------------------------------
StateDict state_dict_of(const torch::nn::Module& module) {
  StateDict result;
  auto add_own = [&result](const torch::nn::Module& owner, const std::string& prefix) {
    for (const auto& item : owner.named_parameters(/*recurse=*/false)) {
      result.push_back({prefix + item.key(), item.value().detach()});
    }
    for (const auto& item : owner.named_buffers(/*recurse=*/false)) {
      result.push_back({prefix + item.key(), item.value().detach()});
    }
  };
  add_own(module, "");
  // named_modules is pre-order, like PyTorch's recursion in state_dict().
  for (const auto& item : module.named_modules("", /*include_self=*/false)) {
    add_own(*item.value(), item.key() + ".");
  }
  return result;
}

std::string LoadReport::summary() const {
  std::string text;
  auto section = [&text](const char* title, const std::vector<std::string>& items) {
    if (items.empty()) return;
    text += fmt::format("{} ({}):\n", title, items.size());
    for (const auto& item : items) text += "  " + item + "\n";
  };
  section("mis-shaped", mismatched);
  section("missing from the file", missing);
  section("unexpected in the file", unexpected);
  section("dropped from the file", dropped);
  for (const auto& notice : notices) text += "note: " + notice + "\n";
  if (text.empty()) text = fmt::format("all {} keys loaded\n", loaded.size());
  return text;
}

Result<LoadReport> apply_state_dict(torch::nn::Module& module, const StateDict& state, const LoadOptions& options) {
  const StateDict model = state_dict_of(module);
  std::unordered_map<std::string, const at::Tensor*> model_by_name;
  for (const auto& named : model) model_by_name.emplace(named.name, &named.tensor);
  std::unordered_map<std::string, const at::Tensor*> file_by_name;
  for (const auto& named : state) {
    if (!file_by_name.emplace(named.name, &named.tensor).second) {
      return invalid_argument("the weights name '{}' twice", named.name);
    }
    if (!named.tensor.defined()) return invalid_argument("the weights' '{}' holds no tensor", named.name);
  }

  const std::string head_prefix = options.head_name.empty() ? "" : options.head_name + ".";
  auto in_head = [&head_prefix](const std::string& name) {
    return !head_prefix.empty() && name.starts_with(head_prefix);
  };
  LoadReport report;

  // A head fits when the file has exactly the model's head keys with the same shapes.
  bool drop_head = false;
  if (options.drop_mismatched_head && !head_prefix.empty()) {
    std::vector<std::string> file_head, model_head;
    bool fits = true;
    for (const auto& named : state) {
      if (!in_head(named.name)) continue;
      file_head.push_back(with_shape(named));
      auto found = model_by_name.find(named.name);
      fits = fits && found != model_by_name.end() && found->second->sizes() == named.tensor.sizes();
    }
    for (const auto& named : model) {
      if (!in_head(named.name)) continue;
      model_head.push_back(with_shape(named));
      fits = fits && file_by_name.count(named.name) != 0;
    }
    drop_head = !fits;
    if (drop_head && file_head.empty()) {
      report.notices.push_back(fmt::format("the weights have no head ({}*): the model's head ({}) starts from "
                                           "its fresh initialisation",
                                           head_prefix, join_limited(model_head, 4)));
    } else if (drop_head) {
      report.notices.push_back(fmt::format("dropped the weights' head ({}): it does not fit the model's head "
                                           "({}), which starts from its fresh initialisation",
                                           join_limited(file_head, 4), join_limited(model_head, 4)));
    }
  }

  std::vector<std::pair<const at::Tensor*, const NamedTensor*>> copies;  // (model, file)
  int64_t converted = 0;
  std::set<std::string> converted_from;
  for (const auto& named : state) {
    if (drop_head && in_head(named.name)) {
      report.dropped.push_back(with_shape(named));
      continue;
    }
    auto found = model_by_name.find(named.name);
    if (found == model_by_name.end()) {
      report.unexpected.push_back(with_shape(named));
    } else if (found->second->sizes() != named.tensor.sizes()) {
      report.mismatched.push_back(fmt::format("{}: file has {}, model has {}", named.name, shape_of(named.tensor),
                                              shape_of(*found->second)));
    } else {
      copies.emplace_back(found->second, &named);
      report.loaded.push_back(named.name);
      if (named.tensor.scalar_type() != found->second->scalar_type()) {
        ++converted;
        converted_from.insert(std::string(c10::toString(named.tensor.scalar_type())));
      }
    }
  }
  int64_t defaulted_counters = 0;
  for (const auto& named : model) {
    if (file_by_name.count(named.name) != 0 || (drop_head && in_head(named.name))) continue;
    // PyTorch accepts these missing too: files saved before 0.4.1 predate the counter.
    if (named.name.ends_with(".num_batches_tracked") || named.name == "num_batches_tracked") {
      ++defaulted_counters;
      continue;
    }
    report.missing.push_back(with_shape(named));
  }
  if (defaulted_counters > 0) {
    report.notices.push_back(fmt::format("the weights have no num_batches_tracked for {} BatchNorm layers "
                                         "(saved before PyTorch 0.4.1): the model's counters are kept",
                                         defaulted_counters));
  }
  if (converted > 0) {
    std::string from;
    for (const auto& name : converted_from) from += (from.empty() ? "" : "/") + name;
    report.notices.push_back(
        fmt::format("converted {} tensors from {} to the model's dtype", converted, from));
  }

  if (options.strict && !report.clean()) {
    std::vector<std::string> problems;
    if (!report.mismatched.empty()) {
      problems.push_back(fmt::format("{} mis-shaped {}: {}", report.mismatched.size(),
                                     keys_word(report.mismatched.size()), join_limited(report.mismatched, 6)));
    }
    if (!report.missing.empty()) {
      problems.push_back(fmt::format("{} {} missing from the file: {}", report.missing.size(),
                                     keys_word(report.missing.size()), join_limited(report.missing, 6)));
    }
    if (!report.unexpected.empty()) {
      problems.push_back(fmt::format("{} unexpected {} in the file: {}", report.unexpected.size(),
                                     keys_word(report.unexpected.size()), join_limited(report.unexpected, 6)));
    }
    std::string message = fmt::format("the weights do not match the model ({} tensors in the file, {} in the "
                                      "model); {}",
                                      state.size(), model.size(), join_limited(problems, problems.size()));
    auto only_head = [&](const std::vector<std::string>& items) {
      return std::all_of(items.begin(), items.end(), [&](const std::string& item) { return in_head(item); });
    };
    if (!head_prefix.empty() && only_head(report.mismatched) && only_head(report.missing) &&
        only_head(report.unexpected)) {
      message += fmt::format(". Only the head ({}*) differs: drop it (drop_mismatched_head) to train a new head",
                             head_prefix);
    }
    return invalid_argument("{}", message);
  }

  torch::NoGradGuard no_grad;
  for (const auto& [target, source] : copies) {
    try {
      target->copy_(source->tensor);
    } catch (const c10::Error& error) {
      return invalid_argument("copying the weights' '{}' into the model: {}", source->name,
                              error.what_without_backtrace());
    }
  }
  return report;
}

Result<LoadReport> apply_state_dict(Classifier& classifier, const StateDict& state, LoadOptions options) {
  options.head_name = classifier->head_name();
  return apply_state_dict(*classifier, state, options);
}

}  // namespace kennel::models

// Classifier = a backbone (ResNet, MobileNetV2) + a classification head, with
// freezing, and the bridge between weight files and modules.
//
// Names: a Classifier's state dict is exactly what torchvision's model with
// the same head would have — the backbone's torchvision names plus the head
// under torchvision's head name (`fc` for ResNet, `classifier` for
// MobileNetV2). With head_hidden = [] the head is torchvision's own (ResNet:
// `fc` Linear; MobileNetV2: `classifier` = Sequential(Dropout(0.2), Linear)),
// so a torchvision state dict with the same class count loads strictly and
// Kennel's weights load into torchvision. With hidden layers the head is what
// Python writes as
//     nn.Sequential(nn.Linear(F, 256), nn.ReLU(), nn.Dropout(p), nn.Linear(256, C))
// (fc.0 / fc.3; MobileNetV2 keeps its leading Dropout: classifier.1 / classifier.4).
//
// Freezing: "backbone" (train the head only), "none", or "last:N" (the last N
// backbone stages and the head train; see resnet.h / mobilenet_v2.h for the
// stages). Frozen parameters get requires_grad = false, and frozen BatchNorm
// layers stay in eval mode (running statistics neither used from the batch nor
// updated) even when the classifier is put in train(): fine-tuning on a small
// dataset must not drift the pretrained statistics of layers it cannot fix.
//
// Memory format and precision: the model accepts channels-last input and can
// be converted with to(at::MemoryFormat::ChannelsLast); it runs under CPU
// autocast (bf16) unchanged — precision is the caller's autocast scope.
//
// Thread-safety: as torch::nn::Module.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/MemoryFormat.h>
#include <torch/nn/pimpl.h>

#include "kennel/models/backbone.h"
#include "kennel/models/weight_file.h"
#include "kennel/util/status.h"

namespace kennel::models {

// The architectures build_classifier knows, in a stable order:
// resnet18, resnet34, resnet50, resnet101, resnet152, mobilenet_v2.
const std::vector<std::string>& known_architectures();

struct ModelSpec {
  std::string arch = "resnet50";  // one of known_architectures()
  // Hidden widths of the head: [] = one Linear (torchvision's head);
  // [256] = Linear-ReLU-Dropout-Linear (the classic transfer-learning head).
  std::vector<int64_t> head_hidden;
  double dropout = 0.5;     // after each hidden layer of the head; unused with head_hidden = []
  int64_t num_classes = 0;  // required: >= 1
  // "backbone": only the head trains (fastest; features can be cached);
  // "none": everything trains; "last:N": the last N backbone stages + head.
  std::string freeze = "backbone";
  // Every BatchNorm layer stays in eval mode (its running statistics), also
  // in stages that train: common when fine-tuning with small batches, and
  // what makes N data-parallel ranks exactly equivalent to one process.
  bool frozen_batchnorm = false;
  // MobileNetV2 only: TF "same" padding and BatchNorm eps 1e-3, as weights
  // converted from Keras' MobileNetV2 need; false = torchvision's model.
  bool keras_compat = false;

  // kInvalidArgument naming the field and value: unknown arch, num_classes < 1,
  // a hidden width < 1, dropout outside [0, 1), a malformed freeze or N larger
  // than the architecture's stage count, keras_compat on a non-MobileNetV2.
  Status validate() const;
};

// The stage count of a known arch (ResNet 5, MobileNetV2 6), or kInvalidArgument.
Result<int64_t> stage_count(const std::string& arch);

class ClassifierImpl : public torch::nn::Module {
 public:
  // `spec` must be valid (build_classifier checks it); throws kennel::Error otherwise.
  explicit ClassifierImpl(const ModelSpec& spec);

  // Images [N,3,H,W] -> logits [N, num_classes].
  at::Tensor forward(const at::Tensor& images);
  // Images -> pooled backbone features [N, feature_dim()] (512 / 2048 / 1280).
  at::Tensor features(const at::Tensor& images);
  // Pooled features -> logits: the head alone (for training on cached features).
  at::Tensor head_forward(const at::Tensor& features);

  // train(on) for the whole model, then eval() again for every frozen stage
  // (and every BatchNorm with frozen_batchnorm), so that frozen BatchNorm
  // keeps its running statistics. eval() = train(false).
  void train(bool on = true) override;
  void set_training(bool on) { train(on); }

  // Restrides parameters and buffers in place (see convert_memory_format).
  using torch::nn::Module::to;
  void to(at::MemoryFormat format) { convert_memory_format(*this, format); }

  // Parameters with requires_grad (what an optimizer should get).
  std::vector<at::Tensor> trainable_parameters() const;
  std::vector<at::Tensor> head_parameters() const;

  const ModelSpec& spec() const { return spec_; }
  int64_t feature_dim() const { return backbone_->feature_dim(); }
  int64_t num_classes() const { return spec_.num_classes; }
  // "fc" or "classifier": the prefix of the head's names in the state dict.
  const std::string& head_name() const { return head_style_.name; }
  std::vector<BackboneStage> stages() const { return backbone_->stages(); }
  // Names of the frozen stages, input first ("stem", "layer1", ...); empty with freeze = "none".
  const std::vector<std::string>& frozen_stages() const { return frozen_stage_names_; }
  BackboneImpl& backbone() { return *backbone_; }

 private:
  ModelSpec spec_;
  HeadStyle head_style_;
  std::shared_ptr<BackboneImpl> backbone_;
  std::shared_ptr<torch::nn::Module> head_;  // a Linear or a Sequential
  std::function<at::Tensor(const at::Tensor&)> run_head_;
  std::vector<std::shared_ptr<torch::nn::Module>> frozen_modules_;
  std::vector<std::string> frozen_stage_names_;
};
TORCH_MODULE(Classifier);

// Validates `spec` and builds the classifier with freshly initialised weights
// (torchvision's init; seed with torch::manual_seed for reproducibility).
// Errors: kInvalidArgument from spec.validate(), e.g.
// "unknown arch 'resnet51': known are resnet18, resnet34, ...".
Result<Classifier> build_classifier(const ModelSpec& spec);

// Parameters then buffers of each module, module by module in registration
// order — the order and names of PyTorch's state_dict(), num_batches_tracked
// included. The tensors alias the module's (detached, same storage): clone them
// to keep a snapshot.
StateDict state_dict_of(const torch::nn::Module& module);

struct LoadOptions {
  // Any missing, unexpected or mis-shaped key fails the load and nothing is
  // copied. false: copy what matches and only report the rest.
  bool strict = true;
  // When the file's head (fc.* / classifier.*) does not fit the model's — another
  // class count or head shape — drop it with a notice, and let the model's head
  // keep its fresh initialisation (what training a new head needs). A file
  // without a head is then accepted too.
  bool drop_mismatched_head = false;
  // The head's name prefix for drop_mismatched_head; the Classifier overload fills it.
  std::string head_name;
};

struct LoadReport {
  std::vector<std::string> loaded;      // keys copied into the model
  std::vector<std::string> missing;     // "layer4.1.bn2.running_var [512]": in the model, not the file
  std::vector<std::string> unexpected;  // "aux.weight [10, 4]": in the file, not the model
  std::vector<std::string> mismatched;  // "fc.weight: file has [1000, 2048], model has [133, 2048]"
  std::vector<std::string> dropped;     // file keys dropped for a new head
  std::vector<std::string> notices;     // sentences for the job log: drops, dtype conversions, defaults

  bool clean() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  // Multi-line text listing every problem with names and shapes.
  std::string summary() const;
};

// Copies `state` into the module's parameters and buffers by name (dtype
// converted to the model's; memory format kept). Missing `num_batches_tracked`
// buffers (files saved before PyTorch 0.4.1) are a notice, not an error, as in
// PyTorch. Errors: kInvalidArgument with the summary when strict and the keys
// do not match (the model is left unchanged), or on duplicate names in `state`.
Result<LoadReport> apply_state_dict(torch::nn::Module& module, const StateDict& state,
                                    const LoadOptions& options = {});
Result<LoadReport> apply_state_dict(Classifier& classifier, const StateDict& state, LoadOptions options = {});

}  // namespace kennel::models

// Kennel's side of tests/parity/test_model_parity.py: runs a Kennel classifier
// on an input tensor that Python saved, and writes the logits back for Python.
//
//   model_tool logits ARCH NUM_CLASSES WEIGHTS INPUT OUTPUT [HEAD]
//       builds ARCH with a torchvision head of NUM_CLASSES (HEAD: hidden widths,
//       e.g. "256"; empty = one Linear), loads WEIGHTS strictly, and runs it in
//       eval mode on INPUT's tensor "input" ([N,3,H,W] float32)
//   model_tool logits-dir MODEL_DIR INPUT OUTPUT
//       the same with a saved model/ folder (kennel train's output)
//
// INPUT and OUTPUT are weight files (.pth as torch.save writes them, or
// .safetensors); OUTPUT holds one tensor, "logits". Errors go to stderr as
// "error: <status>"; the exit code is kennel::exit_code_for.
#include <cstdio>
#include <sstream>
#include <string>

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/utils.h>

#include "kennel/models/classifier.h"
#include "kennel/models/model_dir.h"
#include "kennel/models/weight_file.h"
#include "kennel/util/status.h"

namespace {

using kennel::Result;
using kennel::Status;
using kennel::models::Classifier;

int fail(const Status& status) {
  std::fprintf(stderr, "error: %s\n", status.to_string().c_str());
  return kennel::exit_code_for(status.code());
}

Result<at::Tensor> read_input(const std::string& path) {
  auto tensors = kennel::models::read_weight_file(path);
  if (!tensors.ok()) return tensors.status();
  for (const auto& named : *tensors) {
    if (named.name == "input") return named.tensor.to(at::kFloat).contiguous();
  }
  return kennel::invalid_argument("'{}' has no tensor named 'input'", path);
}

int write_logits(Classifier& classifier, const std::string& input_path, const std::string& output_path) {
  auto input = read_input(input_path);
  if (!input.ok()) return fail(input.status());
  classifier->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor logits = classifier->forward(*input);
  Status written = kennel::models::write_weight_file(output_path, {{"logits", logits.contiguous()}});
  return written.ok() ? 0 : fail(written);
}

std::vector<int64_t> parse_widths(const std::string& text) {
  std::vector<int64_t> widths;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    if (!item.empty()) widths.push_back(std::stoll(item));
  }
  return widths;
}

int logits_from_weights(int argc, char** argv) {
  kennel::models::ModelSpec spec;
  spec.arch = argv[2];
  spec.num_classes = std::stoll(argv[3]);
  spec.freeze = "none";
  if (argc > 7) spec.head_hidden = parse_widths(argv[7]);
  auto classifier = kennel::models::build_classifier(spec);
  if (!classifier.ok()) return fail(classifier.status());
  auto state = kennel::models::read_weight_file(argv[4]);
  if (!state.ok()) return fail(state.status());
  auto report = kennel::models::apply_state_dict(*classifier, *state);
  if (!report.ok()) return fail(report.status());
  return write_logits(*classifier, argv[5], argv[6]);
}

int logits_from_model_dir(char** argv) {
  auto loaded = kennel::models::load_model_dir(argv[2]);
  if (!loaded.ok()) return fail(loaded.status());
  return write_logits(loaded->classifier, argv[3], argv[4]);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  if (command == "logits" && (argc == 7 || argc == 8)) return logits_from_weights(argc, argv);
  if (command == "logits-dir" && argc == 5) return logits_from_model_dir(argv);
  std::fprintf(stderr,
               "usage: model_tool logits ARCH NUM_CLASSES WEIGHTS INPUT OUTPUT [HEAD]\n"
               "       model_tool logits-dir MODEL_DIR INPUT OUTPUT\n");
  return 2;
}

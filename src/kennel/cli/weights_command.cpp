// `kennel weights`: the pretrained backbones Kennel can start from.
//   kennel weights list [--json]            what is in the weights folder, with provenance
//   kennel weights import-tfjs DIR --out F  a TF.js layers-format Keras MobileNetV2 -> F (.safetensors)
//                                           plus model.json beside it (arch, Keras padding, preprocessing,
//                                           classes, source), so `--pretrained F` builds the matching model
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kennel/cli/command.h"
#include "kennel/models/classifier.h"
#include "kennel/models/model_dir.h"
#include "kennel/models/tfjs_import.h"
#include "kennel/models/weight_file.h"
#include "kennel/util/fs.h"
#include "kennel/util/status.h"

namespace kennel::cli {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// model.json for an imported backbone: a Kennel model description of the
// network as imported (its own head and classes), plus where it came from.
models::ModelInfo imported_model_info(const json& info, const fs::path& source_dir) {
  const json& spec = info.at("spec");
  const json kennel = info.value("kennel", json::object());
  models::ModelInfo model;
  model.arch = spec.at("arch").get<std::string>();
  model.head_hidden = spec.value("head_hidden", std::vector<int64_t>{});
  model.keras_compat = spec.value("keras_compat", false);
  const int64_t classes = spec.at("num_classes").get<int64_t>();
  model.classes = kennel.value("classes", std::vector<std::string>{});
  if (static_cast<int64_t>(model.classes.size()) != classes) {
    model.classes.clear();
    for (int64_t i = 0; i < classes; ++i) model.classes.push_back(fmt::format("class{}", i));
  }
  // input_size: [height, width] from the model's input layer (square for MobileNetV2).
  const json size = info.value("input_size", json());
  model.input_size = size.is_array() && !size.empty() && size[0].is_number_integer() ? size[0].get<int64_t>()
                     : size.is_number_integer()                                       ? size.get<int64_t>()
                                                                                      : int64_t{224};
  model.resize = model.input_size;
  // TF.js models scale pixels themselves; record what the package does (nsfwjs: /255, no mean/std).
  const json preprocessing = kennel.value("preprocessing", json::object());
  const double scale = preprocessing.value("scale", 1.0 / 255);
  const double offset = preprocessing.value("offset", 0.0);
  // Kennel computes (p/255 - mean) / std; the package computes p * scale + offset.
  const double std_value = 1.0 / (scale * 255.0);
  const double mean_value = offset == 0 ? 0.0 : -offset * std_value;  // never a "-0" in model.json
  model.mean = {static_cast<float>(mean_value), static_cast<float>(mean_value), static_cast<float>(mean_value)};
  model.std = {static_cast<float>(std_value), static_cast<float>(std_value), static_cast<float>(std_value)};
  model.pretrained = source_dir.string();
  model.source = kennel.value("source", json::object());
  if (model.source.is_object()) {
    model.source["imported_from"] = source_dir.string();
    model.source["imported_by"] = "kennel weights import-tfjs";
    if (kennel.contains("architecture")) model.source["architecture"] = kennel["architecture"];
  }
  return model;
}

void import_tfjs(const fs::path& dir, const fs::path& out, bool force) {
  if (out.extension() != ".safetensors") {
    throw Error(invalid_argument("--out '{}' must end in .safetensors", out.string()));
  }
  std::error_code error;
  const fs::path json_path = out.parent_path() / "model.json";
  if (!force && (fs::exists(out, error) || fs::exists(json_path, error))) {
    throw Error(Status(ErrorCode::kAlreadyExists,
                       fmt::format("'{}' or its model.json already exists: pass --force to replace them",
                                   out.string())));
  }
  json info;
  auto state = models::import_tfjs_mobilenet_v2(dir, &info);
  if (!state.ok()) throw Error(state.status());
  const models::ModelInfo model = imported_model_info(info, fs::absolute(dir, error));
  // Prove the weights build the model they describe before writing anything.
  models::ModelSpec spec;
  spec.arch = model.arch;
  spec.head_hidden = model.head_hidden;
  spec.num_classes = static_cast<int64_t>(model.classes.size());
  spec.keras_compat = model.keras_compat;
  spec.freeze = "none";
  auto classifier = models::build_classifier(spec);
  if (!classifier.ok()) throw Error(classifier.status());
  auto loaded = models::apply_state_dict(*classifier, *state);
  if (!loaded.ok()) throw Error(loaded.status().with_context(fmt::format("the weights imported from '{}'", dir.string())));
  if (!out.parent_path().empty()) {
    Status made = kennel::create_directories(out.parent_path());
    if (!made.ok()) throw Error(made);
  }
  Status written = models::write_safetensors(out, *state, {{"format", "pt"}, {"arch", model.arch}});
  if (!written.ok()) throw Error(written);
  json description = models::to_json(model);
  description["weights"] = out.filename().string();
  written = write_file_atomic(json_path, description.dump(2) + "\n");
  if (!written.ok()) throw Error(written);
  std::cout << fmt::format("imported {} ({} tensors, {} classes: {}) -> {}\n", model.arch, state->size(),
                           model.classes.size(), fmt::join(model.classes, ", "), out.string());
  std::cout << fmt::format("model.json: {} (keras_compat {}, preprocessing pixel/255 with mean {} std {})\n",
                           json_path.string(), model.keras_compat, model.mean[0], model.std[0]);
}

void list_weights(bool json_output) {
  const auto entries = models::list_pretrained_weights();
  const fs::path dir = models::pretrained_weights_dir();
  if (json_output) {
    json out = json::array();
    for (const auto& entry : entries) {
      json item = {{"arch", entry.arch}, {"weights", entry.weights.string()}};
      if (entry.info) {
        item["keras_compat"] = entry.info->keras_compat;
        item["classes"] = entry.info->classes;
        item["mean"] = entry.info->mean;
        item["std"] = entry.info->std;
        item["source"] = entry.info->source;
      }
      item["default_for_arch"] = models::default_pretrained_weights(entry.arch) == entry.weights.string();
      out.push_back(item);
    }
    std::cout << json{{"dir", dir.string()}, {"weights", out}}.dump(2) << "\n";
    return;
  }
  std::cout << "weights folder: " << (dir.empty() ? "(none: set KENNEL_WEIGHTS_DIR)" : dir.string()) << "\n";
  if (entries.empty()) {
    std::cout << "no pretrained weights yet: `bash scripts/backbone.sh` imports MobileNetV2 from the nsfwjs npm "
                 "package; or pass --pretrained FILE (.pth/.safetensors from torchvision or timm)\n";
    return;
  }
  for (const auto& entry : entries) {
    const bool is_default = models::default_pretrained_weights(entry.arch) == entry.weights.string();
    std::string origin = "a weight file";
    if (entry.info && entry.info->source.is_object() && entry.info->source.contains("package")) {
      origin = fmt::format("npm {}@{} ({})", entry.info->source.value("package", "?"),
                           entry.info->source.value("version", "?"), entry.info->source.value("license", "?"));
    }
    std::cout << fmt::format("{:<14} {}{}\n  from {}\n", entry.arch, entry.weights.string(),
                             is_default ? "  [default --pretrained]" : "", origin);
  }
}

}  // namespace

void register_weights_commands(CLI::App& app, CommandContext&) {
  auto* weights = app.add_subcommand("weights", "Pretrained backbones: list them, import them");
  weights->require_subcommand(1);

  auto list_json = std::make_shared<bool>(false);
  auto* list = weights->add_subcommand("list", "The pretrained weights Kennel finds, and where they came from");
  list->add_flag("--json", *list_json, "As JSON");
  list->callback([list_json] { list_weights(*list_json); });

  struct ImportFlags {
    std::string dir, out;
    bool force = false;
  };
  auto flags = std::make_shared<ImportFlags>();
  auto* import = weights->add_subcommand(
      "import-tfjs", "A TF.js layers-format Keras MobileNetV2 (model.json + shards) -> .safetensors + model.json");
  import->add_option("dir", flags->dir, "Folder with model.json and its weight shards")->required();
  import->add_option("--out", flags->out, "The .safetensors file to write (model.json goes beside it)")->required();
  import->add_flag("--force", flags->force, "Replace an existing file");
  import->callback([flags] { import_tfjs(flags->dir, flags->out, flags->force); });
}

}  // namespace kennel::cli

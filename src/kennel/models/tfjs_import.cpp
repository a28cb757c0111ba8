#include "kennel/models/tfjs_import.h"

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "kennel/util/fs.h"

namespace kennel::models {

namespace {

using nlohmann::json;
namespace stdfs = std::filesystem;

static_assert(std::endian::native == std::endian::little, "TF.js shards are little-endian");

constexpr uint64_t kMaxModelJsonBytes = uint64_t{64} << 20;
constexpr uint64_t kMaxWeightBytes = uint64_t{1} << 30;
constexpr int64_t kPooledFeatures = 1280;  // MobileNetV2's last conv width: the head's input
constexpr double kKerasBatchNormEps = 1e-3;
constexpr int kLastKerasBlock = 16;  // block_1 .. block_16; block 0 is "expanded_conv"

// ---- errors ------------------------------------------------------------------
Status tfjs_file_error(ErrorCode code, const stdfs::path& file, const std::string& message) {
  return {code, fmt::format("{}: {}", path_text(file), message)};
}

// Thrown inside this file only; import_tfjs_mobilenet_v2 returns its Status.
[[noreturn]] void fail(ErrorCode code, const stdfs::path& file, const std::string& message) {
  throw Error(tfjs_file_error(code, file, message));
}

std::string shape_text(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// ---- Keras layer names -> Kennel names -------------------------------------------
enum class LayerKind { kConv, kDepthwise, kBatchNorm, kDense };

const char* kind_name(LayerKind kind) {
  switch (kind) {
    case LayerKind::kConv:
      return "Conv2D";
    case LayerKind::kDepthwise:
      return "DepthwiseConv2D";
    case LayerKind::kBatchNorm:
      return "BatchNormalization";
    case LayerKind::kDense:
      return "Dense";
  }
  return "?";
}

struct Target {
  std::string prefix;  // "features.3.conv.1.0"
  LayerKind kind;
};

std::optional<Target> trunk_target(std::string_view layer) {
  static const std::map<std::string_view, Target> fixed = {
      {"Conv1", {"features.0.0", LayerKind::kConv}},
      {"bn_Conv1", {"features.0.1", LayerKind::kBatchNorm}},
      {"expanded_conv_depthwise", {"features.1.conv.0.0", LayerKind::kDepthwise}},
      {"expanded_conv_depthwise_BN", {"features.1.conv.0.1", LayerKind::kBatchNorm}},
      {"expanded_conv_project", {"features.1.conv.1", LayerKind::kConv}},
      {"expanded_conv_project_BN", {"features.1.conv.2", LayerKind::kBatchNorm}},
      {"Conv_1", {"features.18.0", LayerKind::kConv}},
      {"Conv_1_bn", {"features.18.1", LayerKind::kBatchNorm}},
  };
  if (auto it = fixed.find(layer); it != fixed.end()) return it->second;

  constexpr std::string_view kBlock = "block_";
  if (!layer.starts_with(kBlock)) return std::nullopt;
  const std::string_view rest = layer.substr(kBlock.size());
  int block = 0;
  const auto [end, error] = std::from_chars(rest.data(), rest.data() + rest.size(), block);
  if (error != std::errc() || block < 1 || block > kLastKerasBlock ||
      end == rest.data() + rest.size() || *end != '_' || rest.front() == '0') {
    return std::nullopt;
  }
  const std::string_view role(end + 1, rest.data() + rest.size() - (end + 1));
  struct Role {
    std::string_view suffix, path;
    LayerKind kind;
  };
  static constexpr std::array<Role, 6> kRoles = {{
      {"expand", "conv.0.0", LayerKind::kConv},
      {"expand_BN", "conv.0.1", LayerKind::kBatchNorm},
      {"depthwise", "conv.1.0", LayerKind::kDepthwise},
      {"depthwise_BN", "conv.1.1", LayerKind::kBatchNorm},
      {"project", "conv.2", LayerKind::kConv},
      {"project_BN", "conv.3", LayerKind::kBatchNorm},
  }};
  for (const Role& candidate : kRoles) {
    if (role == candidate.suffix) {
      return Target{fmt::format("features.{}.{}", block + 1, candidate.path), candidate.kind};
    }
  }
  return std::nullopt;
}

// Keras parameter name -> torch parameter name, per layer kind.
std::optional<std::string_view> param_target(LayerKind kind, std::string_view param) {
  switch (kind) {
    case LayerKind::kConv:
      if (param == "kernel") return "weight";
      break;
    case LayerKind::kDepthwise:
      if (param == "depthwise_kernel") return "weight";
      break;
    case LayerKind::kBatchNorm:
      if (param == "gamma") return "weight";
      if (param == "beta") return "bias";
      if (param == "moving_mean") return "running_mean";
      if (param == "moving_variance") return "running_var";
      break;
    case LayerKind::kDense:
      if (param == "kernel") return "weight";
      if (param == "bias") return "bias";
      break;
  }
  return std::nullopt;
}

// ---- the topology ------------------------------------------------------------------
struct Topology {
  std::vector<const json*> layers;  // flattened: nested models' layers in place of the model
  std::map<std::string, const json*> by_name;
  std::vector<std::string> dense;  // Dense layer names in topology order
};

std::string layer_name(const json& layer) {
  if (const auto config = layer.find("config"); config != layer.end() && config->is_object() &&
                                                config->contains("name") &&
                                                (*config)["name"].is_string()) {
    return (*config)["name"].get<std::string>();
  }
  if (layer.contains("name") && layer["name"].is_string()) return layer["name"].get<std::string>();
  return {};
}

const json* nested_layers(const json& model) {
  const auto config = model.find("config");
  if (config == model.end()) return nullptr;
  if (config->is_array()) return &*config;  // Keras < 2.2 Sequential: config is the layer list
  if (config->is_object() && config->contains("layers") && (*config)["layers"].is_array()) {
    return &(*config)["layers"];
  }
  return nullptr;
}

void flatten_layers(const json& layers, Topology& topology, const stdfs::path& file, int depth) {
  if (depth > 8) {
    fail(ErrorCode::kInvalidArgument, file, "modelTopology nests models more than 8 deep");
  }
  for (const json& layer : layers) {
    if (!layer.is_object() || !layer.contains("class_name") || !layer["class_name"].is_string()) {
      fail(ErrorCode::kInvalidArgument, file, "modelTopology has a layer without a class_name");
    }
    const std::string class_name = layer["class_name"].get<std::string>();
    if (class_name == "Model" || class_name == "Functional" || class_name == "Sequential") {
      if (const json* inner = nested_layers(layer)) {
        flatten_layers(*inner, topology, file, depth + 1);
        continue;
      }
    }
    const std::string name = layer_name(layer);
    if (name.empty()) {
      fail(ErrorCode::kInvalidArgument, file,
           fmt::format("modelTopology has a {} without a name", class_name));
    }
    topology.layers.push_back(&layer);
    topology.by_name[name] = &layer;
    if (class_name == "Dense") topology.dense.push_back(name);
  }
}

Topology read_topology(const json& model_json, const stdfs::path& file) {
  if (!model_json.contains("modelTopology") || !model_json["modelTopology"].is_object()) {
    fail(ErrorCode::kInvalidArgument, file,
         "has no modelTopology object: not a TF.js layers model");
  }
  const json& topology_json = model_json["modelTopology"];
  const json& model =
      topology_json.contains("model_config") ? topology_json["model_config"] : topology_json;
  const json* layers = nested_layers(model);
  if (layers == nullptr) {
    fail(ErrorCode::kInvalidArgument, file, "modelTopology has no config.layers list");
  }
  Topology topology;
  flatten_layers(*layers, topology, file, 0);
  return topology;
}

const json& config_of(const json& layer) {
  static const json kEmpty = json::object();
  const auto config = layer.find("config");
  return config != layer.end() && config->is_object() ? *config : kEmpty;
}

// What Kennel's keras_compat MobileNetV2 reproduces, checked layer by layer.
void check_topology(const Topology& topology, const stdfs::path& file) {
  for (const json* layer : topology.layers) {
    const std::string class_name = (*layer)["class_name"].get<std::string>();
    const json& config = config_of(*layer);
    const std::string name = layer_name(*layer);
    if (class_name == "BatchNormalization" && config.contains("epsilon") &&
        config["epsilon"].is_number()) {
      const double eps = config["epsilon"].get<double>();
      if (std::abs(eps - kKerasBatchNormEps) > 1e-9) {
        fail(ErrorCode::kInvalidArgument, file,
             fmt::format("layer {} has BatchNormalization epsilon {}; Kennel's keras_compat "
                         "MobileNetV2 uses {}",
                         name, eps, kKerasBatchNormEps));
      }
    }
    if (class_name == "ZeroPadding2D" && config.contains("padding") &&
        config["padding"] != json::parse("[[0, 1], [0, 1]]")) {
      fail(ErrorCode::kInvalidArgument, file,
           fmt::format("layer {} pads {}; Kennel's keras_compat padding is TF 'same', "
                       "[[0, 1], [0, 1]] at even sizes",
                       name, config["padding"].dump()));
    }
  }
  for (size_t i = 0; i < topology.dense.size(); ++i) {
    const json& config = config_of(*topology.by_name.at(topology.dense[i]));
    const std::string activation = config.value("activation", std::string("linear"));
    const bool last = i + 1 == topology.dense.size();
    if (!last && activation != "relu") {
      fail(ErrorCode::kInvalidArgument, file,
           fmt::format("hidden Dense layer {} has activation '{}': Kennel's head uses relu",
                       topology.dense[i], activation));
    }
    if (last && activation != "softmax" && activation != "linear") {
      fail(ErrorCode::kInvalidArgument, file,
           fmt::format("last Dense layer {} has activation '{}': Kennel's head ends in logits "
                       "(softmax or linear in Keras)",
                       topology.dense[i], activation));
    }
    if (!config.value("use_bias", true)) {
      fail(ErrorCode::kInvalidArgument, file,
           fmt::format("Dense layer {} has no bias: Kennel's head Linear layers have one",
                       topology.dense[i]));
    }
  }
}

// ---- the weights manifest --------------------------------------------------------
struct WeightSpec {
  std::string name;
  std::vector<int64_t> shape;
  std::string stored;  // dtype of the bytes: float32, uint8, uint16, float16
  double min = 0, scale = 1;
  int64_t elements = 1;
  uint64_t bytes = 0;
};

size_t bytes_per_element(const std::string& stored) {
  if (stored == "float32") return 4;
  if (stored == "uint16" || stored == "float16") return 2;
  if (stored == "uint8") return 1;
  return 0;
}

WeightSpec parse_weight_spec(const json& entry, const stdfs::path& file) {
  if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string()) {
    fail(ErrorCode::kInvalidArgument, file, "weightsManifest has a weight without a name");
  }
  WeightSpec spec;
  spec.name = entry["name"].get<std::string>();
  auto bad = [&](const std::string& what) {
    fail(ErrorCode::kInvalidArgument, file, fmt::format("weight '{}': {}", spec.name, what));
  };
  if (!entry.contains("shape") || !entry["shape"].is_array()) bad("has no shape list");
  for (const json& dim : entry["shape"]) {
    if (!dim.is_number_integer() || dim.get<int64_t>() < 0) {
      bad(fmt::format("shape {} is not a list of sizes", entry["shape"].dump()));
    }
    spec.shape.push_back(dim.get<int64_t>());
    if (spec.shape.back() > 0 &&
        spec.elements > static_cast<int64_t>(kMaxWeightBytes) / spec.shape.back()) {
      fail(ErrorCode::kResourceExhausted, file,
           fmt::format("weight '{}' has an absurd shape {}", spec.name, entry["shape"].dump()));
    }
    spec.elements *= spec.shape.back();
  }
  const std::string dtype = entry.value("dtype", std::string());
  if (dtype != "float32") bad(fmt::format("dtype '{}' is not supported (float32 only)", dtype));
  spec.stored = dtype;
  if (const auto quantization = entry.find("quantization");
      quantization != entry.end() && !quantization->is_null()) {
    if (!quantization->is_object() || !quantization->contains("dtype") ||
        !(*quantization)["dtype"].is_string()) {
      bad("quantization has no dtype");
    }
    spec.stored = (*quantization)["dtype"].get<std::string>();
    if (spec.stored == "uint8" || spec.stored == "uint16") {
      const json& q = *quantization;
      if (!q.contains("min") || !q["min"].is_number() || !q.contains("scale") ||
          !q["scale"].is_number()) {
        bad(fmt::format("{} quantization needs numeric min and scale", spec.stored));
      }
      spec.min = q["min"].get<double>();
      spec.scale = q["scale"].get<double>();
    } else if (spec.stored != "float16") {
      bad(fmt::format("quantization dtype '{}' is not supported (uint8, uint16, float16)",
                      spec.stored));
    }
  }
  spec.bytes = static_cast<uint64_t>(spec.elements) * bytes_per_element(spec.stored);
  return spec;
}

// Keras' layout, float32: what TF.js decodes the bytes to.
at::Tensor decode_weight(const WeightSpec& spec, const uint8_t* data) {
  at::Tensor out = at::empty(spec.shape, at::kFloat);
  float* values = out.data_ptr<float>();
  if (spec.stored == "float32") {
    std::memcpy(values, data, spec.bytes);
  } else if (spec.stored == "uint8") {
    for (int64_t i = 0; i < spec.elements; ++i) {
      values[i] = static_cast<float>(spec.min + spec.scale * data[i]);
    }
  } else if (spec.stored == "uint16") {
    for (int64_t i = 0; i < spec.elements; ++i) {
      uint16_t q = 0;
      std::memcpy(&q, data + 2 * i, 2);
      values[i] = static_cast<float>(spec.min + spec.scale * q);
    }
  } else {  // float16
    at::Tensor half = at::empty(spec.shape, at::kHalf);
    std::memcpy(half.data_ptr(), data, spec.bytes);
    out.copy_(half);
  }
  return out;
}

// Shard paths are relative to the folder and may not leave it.
stdfs::path shard_path(const stdfs::path& dir, const json& entry, const stdfs::path& file) {
  if (!entry.is_string()) {
    fail(ErrorCode::kInvalidArgument, file, "weightsManifest has a non-string path");
  }
  const stdfs::path relative(entry.get<std::string>());
  bool escapes = relative.empty() || relative.is_absolute();
  for (const auto& part : relative) escapes = escapes || part == "..";
  if (escapes) {
    fail(ErrorCode::kInvalidArgument, file,
         fmt::format("shard path '{}' must be a relative path inside the folder",
                     relative.string()));
  }
  return dir / relative;
}

// ---- Keras tensor -> Kennel tensor ---------------------------------------------------
at::Tensor to_kennel_layout(const WeightSpec& spec, const std::string& layer, LayerKind kind,
                            std::string_view param, at::Tensor value, const stdfs::path& file) {
  auto rank_error = [&](int64_t rank, const char* layout) {
    fail(ErrorCode::kInvalidArgument, file,
         fmt::format("weight '{}' (layer {}, {}) has shape {}: expected rank {} ({})", spec.name,
                     layer, kind_name(kind), shape_text(spec.shape), rank, layout));
  };
  switch (kind) {
    case LayerKind::kConv:
      if (value.dim() != 4) rank_error(4, "HWIO");
      return value.permute({3, 2, 0, 1}).contiguous();  // HWIO -> OIHW
    case LayerKind::kDepthwise:
      if (value.dim() != 4) rank_error(4, "H, W, channels, multiplier");
      if (value.size(3) != 1) {
        fail(
            ErrorCode::kInvalidArgument, file,
            fmt::format("weight '{}' (layer {}) has shape {}: only depth_multiplier 1 is supported",
                        spec.name, layer, shape_text(spec.shape)));
      }
      return value.permute({2, 3, 0, 1}).contiguous();  // HW C 1 -> C 1 HW
    case LayerKind::kBatchNorm:
      if (value.dim() != 1) rank_error(1, "channels");
      return value;
    case LayerKind::kDense:
      if (param == "bias") {
        if (value.dim() != 1) rank_error(1, "units");
        return value;
      }
      if (value.dim() != 2) rank_error(2, "in, out");
      return value.t().contiguous();  // (in, out) -> (out, in)
  }
  return value;
}

struct Imported {
  StateDict state;
  std::map<std::string, int64_t> stored_dtypes;
  int64_t weights = 0;
  std::map<std::string, int64_t> dense_units;  // Dense layer -> units (from its kernel)
  int64_t first_dense_inputs = -1;
};

Imported import_weights(const stdfs::path& dir, const json& model_json, const Topology& topology,
                        const stdfs::path& file) {
  if (!model_json.contains("weightsManifest") || !model_json["weightsManifest"].is_array()) {
    fail(ErrorCode::kInvalidArgument, file, "has no weightsManifest list");
  }
  std::map<std::string, size_t> dense_index;
  for (size_t i = 0; i < topology.dense.size(); ++i) dense_index[topology.dense[i]] = i;

  Imported result;
  std::set<std::string> seen;
  std::vector<std::string> batch_norms;  // prefixes, first appearance order
  uint64_t total_bytes = 0;
  for (const json& group : model_json["weightsManifest"]) {
    if (!group.is_object() || !group.contains("paths") || !group["paths"].is_array() ||
        !group.contains("weights") || !group["weights"].is_array()) {
      fail(ErrorCode::kInvalidArgument, file,
           "a weightsManifest group needs 'paths' and 'weights' lists");
    }
    // The group's shards, concatenated: its weights' bytes in order.
    std::vector<uint8_t> data;
    std::vector<std::string> shard_names;
    for (const json& entry : group["paths"]) {
      const stdfs::path shard = shard_path(dir, entry, file);
      auto bytes = read_file_bytes(shard, kMaxWeightBytes - total_bytes);
      if (!bytes.ok()) {
        throw Error(bytes.status().with_context("reading a weight shard of " + path_text(file)));
      }
      total_bytes += bytes->size();
      data.insert(data.end(), bytes->begin(), bytes->end());
      shard_names.push_back(path_text(shard));
    }
    const std::string shards = fmt::format("{}", fmt::join(shard_names, " + "));
    uint64_t offset = 0;
    for (const json& entry : group["weights"]) {
      const WeightSpec spec = parse_weight_spec(entry, file);
      if (spec.bytes > data.size() - offset) {
        fail(ErrorCode::kDataLoss, shards,
             fmt::format("has {} bytes, but weight '{}' needs bytes {}..{}: truncated shard(s)",
                         data.size(), spec.name, offset, offset + spec.bytes));
      }
      at::Tensor value = decode_weight(spec, data.data() + offset);
      offset += spec.bytes;
      ++result.weights;
      ++result.stored_dtypes[spec.stored];
      if (!seen.insert(spec.name).second) {
        fail(ErrorCode::kInvalidArgument, file,
             fmt::format("weight '{}' appears twice in the manifest", spec.name));
      }

      // "[model/]layer/param"
      const size_t slash = spec.name.rfind('/');
      if (slash == std::string::npos) {
        fail(ErrorCode::kInvalidArgument, file,
             fmt::format("weight '{}' is not named layer/parameter", spec.name));
      }
      const std::string param = spec.name.substr(slash + 1);
      const std::string scoped = spec.name.substr(0, slash);
      const std::string layer =
          scoped.substr(scoped.rfind('/') == std::string::npos ? 0 : scoped.rfind('/') + 1);
      std::optional<Target> target = trunk_target(layer);
      if (!target && dense_index.contains(layer)) {
        target =
            Target{fmt::format("classifier.{}", 1 + 3 * dense_index[layer]), LayerKind::kDense};
      }
      if (!target) {
        fail(ErrorCode::kInvalidArgument, file,
             fmt::format("weight '{}': layer {} is not part of a Keras MobileNetV2 (Conv1, "
                         "bn_Conv1, expanded_conv_*, block_1..16_*, Conv_1, Conv_1_bn) or a "
                         "Dense layer of its topology",
                         spec.name, layer));
      }
      const auto torch_param = param_target(target->kind, param);
      if (!torch_param) {
        fail(ErrorCode::kInvalidArgument, file,
             fmt::format(
                 "weight '{}': a {} layer ({}) has no parameter '{}' in Kennel's MobileNetV2",
                 spec.name, kind_name(target->kind), layer, param));
      }
      at::Tensor tensor =
          to_kennel_layout(spec, layer, target->kind, param, std::move(value), file);
      if (target->kind == LayerKind::kDense && param == "kernel") {
        result.dense_units[layer] = tensor.size(0);
        if (dense_index[layer] == 0) result.first_dense_inputs = tensor.size(1);
      }
      if (target->kind == LayerKind::kBatchNorm &&
          std::find(batch_norms.begin(), batch_norms.end(), target->prefix) == batch_norms.end()) {
        batch_norms.push_back(target->prefix);
      }
      result.state.push_back(
          {fmt::format("{}.{}", target->prefix, *torch_param), std::move(tensor)});
    }
    if (offset != data.size()) {
      fail(ErrorCode::kDataLoss, shards,
           fmt::format("has {} bytes but the manifest's weights take {}: not the shards this "
                       "model.json describes",
                       data.size(), offset));
    }
  }
  for (const auto& prefix : batch_norms) {
    result.state.push_back({prefix + ".num_batches_tracked", at::zeros({}, at::kLong)});
  }
  return result;
}

json describe(const json& model_json, const Topology& topology, const Imported& imported) {
  json info;
  json head = json::array();
  std::vector<int64_t> hidden;
  for (size_t i = 0; i < topology.dense.size(); ++i) {
    const std::string& name = topology.dense[i];
    const json& config = config_of(*topology.by_name.at(name));
    const int64_t units =
        config.value("units", imported.dense_units.count(name) ? imported.dense_units.at(name) : 0);
    head.push_back(
        {{"layer", name}, {"units", units}, {"activation", config.value("activation", "linear")}});
    if (i + 1 < topology.dense.size()) hidden.push_back(units);
  }
  info["head"] = head;
  info["spec"] = {{"arch", "mobilenet_v2"},
                  {"keras_compat", true},
                  {"head_hidden", hidden},
                  {"num_classes", head.empty() ? json(nullptr) : head.back()["units"]}};
  for (const json* layer : topology.layers) {
    if ((*layer)["class_name"] != "InputLayer") continue;
    const json& config = config_of(*layer);
    const json shape = config.contains("batch_input_shape") ? config["batch_input_shape"]
                                                            : config.value("batch_shape", json());
    if (shape.is_array() && shape.size() == 4) info["input_size"] = {shape[1], shape[2]};
    break;
  }
  const json& topology_json = model_json["modelTopology"];
  info["keras_version"] = topology_json.value("keras_version", json());
  info["format"] = model_json.value("format", json());
  info["generated_by"] = model_json.value("generatedBy", json());
  info["converted_by"] = model_json.value("convertedBy", json());
  info["weights"] = imported.weights;
  info["stored_dtypes"] = imported.stored_dtypes;
  if (model_json.contains("kennel")) info["kennel"] = model_json["kennel"];
  return info;
}

}  // namespace

Result<StateDict> import_tfjs_mobilenet_v2(const std::filesystem::path& dir, nlohmann::json* info) {
  const stdfs::path file = dir / "model.json";
  try {
    auto bytes = read_file_bytes(file, kMaxModelJsonBytes);
    if (!bytes.ok()) {
      return bytes.status().code() == ErrorCode::kResourceExhausted
                 ? tfjs_file_error(ErrorCode::kResourceExhausted, file,
                              "is over 64 MiB: not a model.json")
                 : bytes.status().with_context("reading a TF.js model folder");
    }
    json model_json =
        json::parse(bytes->begin(), bytes->end(), nullptr, /*allow_exceptions=*/false);
    if (model_json.is_discarded() || !model_json.is_object()) {
      return tfjs_file_error(ErrorCode::kInvalidArgument, file,
                        "is not a JSON object: not a TF.js model.json");
    }
    const Topology topology = read_topology(model_json, file);
    check_topology(topology, file);
    Imported imported = import_weights(dir, model_json, topology, file);
    if (!topology.dense.empty() && imported.first_dense_inputs >= 0 &&
        imported.first_dense_inputs != kPooledFeatures) {
      return tfjs_file_error(
          ErrorCode::kInvalidArgument, file,
          fmt::format(
              "the first Dense layer {} reads {} features; Kennel's head reads the {} globally "
              "pooled MobileNetV2 features",
              topology.dense.front(), imported.first_dense_inputs, kPooledFeatures));
    }
    if (info != nullptr) *info = describe(model_json, topology, imported);
    return std::move(imported.state);
  } catch (const Error& error) {
    return error.status();
  } catch (const json::exception& error) {
    return tfjs_file_error(ErrorCode::kInvalidArgument, file,
                      fmt::format("malformed model.json: {}", error.what()));
  } catch (const c10::Error& error) {
    return tfjs_file_error(ErrorCode::kInternal, file,
                      fmt::format("building tensors: {}", error.what_without_backtrace()));
  }
}

}  // namespace kennel::models

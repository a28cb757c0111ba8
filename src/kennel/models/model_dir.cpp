#include "kennel/models/model_dir.h"

#include <algorithm>
#include <cstdlib>
#include <random>

#include <nlohmann/json.hpp>
#include <torch/version.h>

#include <spdlog/spdlog.h>

#include "kennel/data/s3_sync.h"
#include "kennel/data/transforms.h"
#include "kennel/models/weight_file.h"
#include "kennel/store/layout.h"
#include "kennel/util/fs.h"
#include "kennel/util/hash.h"
#include "kennel/util/version.h"

namespace kennel::models {

namespace fs = std::filesystem;
using nlohmann::json;

json to_json(const ModelInfo& info) {
  return {{"format_version", kModelFormatVersion},
          {"arch", info.arch},
          {"head", info.head_hidden},
          {"dropout", info.dropout},
          {"num_classes", info.classes.size()},
          {"classes", info.classes},
          {"input_size", info.input_size},
          {"resize", info.resize},
          {"preprocessing",
           {{"color", "RGB"},
            {"resize", "shorter side to 'resize', antialiased bilinear (PIL semantics)"},
            {"crop", "center crop to input_size x input_size"},
            {"scale", "pixel / 255"},
            {"mean", info.mean},
            {"std", info.std}}},
          {"weights", "model.safetensors"},
          {"source_job", info.source_job},
          {"pretrained", info.pretrained},
          {"keras_compat", info.keras_compat},
          {"precision", info.precision},
          {"precision_requested", info.precision_auto ? "auto" : info.precision},
          {"source", info.source},
          {"kennel_version", kVersion},
          {"libtorch_version", TORCH_VERSION}};
}

Result<ModelInfo> model_info_from_json(const json& j, const std::string& origin) {
  try {
    if (j.value("format_version", 0) > kModelFormatVersion) {
      return failed_precondition("{}: format_version {} is newer than this kennel reads ({})", origin,
                                 j.value("format_version", 0), kModelFormatVersion);
    }
    ModelInfo info;
    info.arch = j.at("arch").get<std::string>();
    info.head_hidden = j.value("head", std::vector<int64_t>{});
    info.dropout = j.value("dropout", 0.5);
    info.classes = j.at("classes").get<std::vector<std::string>>();
    info.input_size = j.value("input_size", int64_t{224});
    info.resize = j.value("resize", int64_t{256});
    if (j.contains("preprocessing")) {
      const auto& pre = j.at("preprocessing");
      info.mean = pre.value("mean", info.mean);
      info.std = pre.value("std", info.std);
    }
    info.source_job = j.value("source_job", "");
    info.pretrained = j.value("pretrained", "");
    info.keras_compat = j.value("keras_compat", false);
    info.precision = j.value("precision", "");
    info.precision_auto = j.value("precision_requested", "") == "auto";
    if (j.contains("source")) info.source = j.at("source");
    if (info.classes.empty()) return invalid_argument("{}: 'classes' is empty", origin);
    return info;
  } catch (const json::exception& error) {
    return invalid_argument("{}: {}", origin, error.what());
  }
}

Status save_model_dir(const fs::path& dir, Classifier& classifier, const ModelInfo& info, bool export_pth) {
  std::random_device random;
  const fs::path staging = dir.parent_path() / fmt::format(".{}.tmp-{:x}", dir.filename().string(), random());
  KENNEL_RETURN_IF_ERROR(kennel::create_directories(staging));
  const StateDict state = state_dict_of(*classifier);
  Status status = write_safetensors(staging / "model.safetensors", state,
                                    {{"format", "pt"}, {"arch", info.arch}, {"kennel_version", kVersion}});
  if (status.ok()) status = write_file_atomic(staging / "model.json", to_json(info).dump(2) + "\n");
  if (status.ok() && export_pth) status = write_pth(staging / "model.pth", state);
  std::error_code error;
  if (status.ok()) {
    const fs::path previous = dir.parent_path() / fmt::format(".{}.old-{:x}", dir.filename().string(), random());
    const bool had_previous = fs::exists(dir, error);
    if (had_previous) fs::rename(dir, previous, error);
    if (!error) fs::rename(staging, dir, error);
    if (error) {
      status = internal_error("cannot move the model into '{}': {}", dir.string(), error.message());
      if (had_previous) fs::rename(previous, dir, error);
    } else if (had_previous) {
      fs::remove_all(previous, error);
    }
  }
  if (!status.ok()) fs::remove_all(staging, error);
  return status;
}

Result<std::string> model_dir_digest(const fs::path& dir) {
  std::string manifest;
  for (const char* name : {"model.json", "model.safetensors"}) {
    auto bytes = read_file_bytes(dir / name);
    if (!bytes.ok()) return bytes.status().with_context("identifying the model");
    manifest += fmt::format("{}\t{}\n", name, sha256_hex(bytes->data(), bytes->size()));
  }
  return sha256_hex(manifest);
}

data::TransformSpec eval_transform_of(const ModelInfo& info) {
  data::TransformSpec transform;
  transform.resize = static_cast<int>(info.resize);
  transform.crop = static_cast<int>(info.input_size);
  transform.mean = info.mean;
  transform.std = info.std;
  return transform;
}

Result<LoadedModel> load_model_dir(const fs::path& dir) {
  const fs::path json_path = dir / "model.json";
  auto text = read_file_text(json_path);
  if (!text.ok()) {
    return not_found("'{}' is not a Kennel model directory: {} is missing (a model is a job's model/ folder)",
                     dir.string(), json_path.string());
  }
  json parsed;
  try {
    parsed = json::parse(*text);
  } catch (const json::exception& error) {
    return invalid_argument("'{}' is not valid JSON: {}", json_path.string(), error.what());
  }
  auto info = model_info_from_json(parsed, json_path.string());
  if (!info.ok()) return info.status();
  ModelSpec spec;
  spec.arch = info->arch;
  spec.head_hidden = info->head_hidden;
  spec.dropout = info->dropout;
  spec.num_classes = static_cast<int64_t>(info->classes.size());
  spec.freeze = "none";
  spec.keras_compat = info->keras_compat;
  auto classifier = build_classifier(spec);
  if (!classifier.ok()) return classifier.status().with_context(json_path.string());
  auto state = read_weight_file(dir / "model.safetensors");
  if (!state.ok()) return state.status();
  LoadOptions options;
  options.drop_mismatched_head = false;
  auto report = apply_state_dict(*classifier, *state, options);
  if (!report.ok()) return report.status().with_context(fmt::format("loading the model in '{}'", dir.string()));
  (*classifier)->set_training(false);
  return LoadedModel{std::move(info).value(), std::move(classifier).value()};
}

fs::path pretrained_weights_dir() {
  if (const char* env = std::getenv("KENNEL_WEIGHTS_DIR"); env != nullptr && *env != '\0') return env;
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return fs::path(home) / ".cache" / "kennel" / "weights";
  }
  return {};
}

std::string default_pretrained_weights(const std::string& arch) {
  const fs::path dir = pretrained_weights_dir();
  if (dir.empty()) return {};
  std::error_code error;
  for (const fs::path& candidate : {dir / arch / "model.safetensors", dir / (arch + ".safetensors")}) {
    if (fs::exists(candidate, error)) return candidate.string();
  }
  return {};
}

std::optional<ModelInfo> pretrained_info(const fs::path& weights_file) {
  const fs::path json_path = weights_file.parent_path() / "model.json";
  auto text = read_file_text(json_path);
  if (!text.ok()) return std::nullopt;
  const json parsed = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || parsed.value("weights", "") != weights_file.filename().string()) return std::nullopt;
  auto info = model_info_from_json(parsed, json_path.string());
  if (!info.ok()) return std::nullopt;
  return *info;
}

std::vector<PretrainedEntry> list_pretrained_weights() {
  std::vector<PretrainedEntry> entries;
  const fs::path dir = pretrained_weights_dir();
  std::error_code error;
  if (dir.empty() || !fs::is_directory(dir, error)) return entries;
  for (const auto& item : fs::directory_iterator(dir, error)) {
    const fs::path path = item.path();
    if (item.is_directory(error) && fs::exists(path / "model.safetensors", error)) {
      auto info = pretrained_info(path / "model.safetensors");
      entries.push_back({info ? info->arch : path.filename().string(), path / "model.safetensors", info});
    } else if (path.extension() == ".safetensors") {
      entries.push_back({path.stem().string(), path, std::nullopt});
    }
  }
  std::sort(entries.begin(), entries.end(),
            [](const PretrainedEntry& a, const PretrainedEntry& b) { return a.weights < b.weights; });
  return entries;
}

Result<std::filesystem::path> resolve_model_dir(const std::string& model, const std::filesystem::path& home) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (s3::is_s3_uri(model)) {
    // A model directory in S3 (a job's --output s3://.../NAME/model/): its committed files, synced.
    data::S3TransferOptions transfer;
    transfer.quiet = true;
    auto synced = data::sync_s3_folder(model, store::HomeLayout(home).s3_cache(), data::SyncedKind::kModel,
                                       transfer);
    if (!synced.ok()) return synced.status().with_context(fmt::format("loading the model {}", model));
    if (synced->downloaded > 0) {
      spdlog::info("model {}: {} files downloaded ({} bytes) into {}", model, synced->downloaded,
                   synced->bytes_downloaded, synced->root.string());
    }
    if (fs::exists(synced->root / "model.json", error)) return synced->root;
    if (fs::exists(synced->root / "model" / "model.json", error)) return synced->root / "model";
    return not_found("{} holds no model.json: point at a model directory (a job's .../NAME/model/)", model);
  }
  if (fs::is_directory(model, error)) {
    if (fs::exists(fs::path(model) / "model.json", error)) return fs::path(model);
    if (fs::exists(fs::path(model) / "model" / "model.json", error)) return fs::path(model) / "model";
  }
  const fs::path job_model = store::HomeLayout(home).job(model).model();
  if (fs::exists(job_model / "model.json", error)) return job_model;
  return not_found("'{}' is neither a model directory (with model.json) nor a completed job in '{}'", model,
                   home.string());
}

}  // namespace kennel::models

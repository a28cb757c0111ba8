// A trained model on disk: `model/model.safetensors` (the classifier's state
// dict, torchvision names), `model/model.json` (architecture, head, classes,
// input size, resize/crop policy, mean/std, versions, source job) and, on
// request, `model/model.pth` for `torch.load` + torchvision. This is what
// `kennel evaluate`, `kennel serve` and `kennel predict` load.
// The directory is written under a temporary name and renamed into place.
// Thread-safety: free functions.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kennel/models/classifier.h"
#include "kennel/util/status.h"

namespace kennel::data {
struct TransformSpec;
}

namespace kennel::models {

inline constexpr int kModelFormatVersion = 1;

struct ModelInfo {
  std::string arch;
  std::vector<int64_t> head_hidden;
  double dropout = 0.5;
  std::vector<std::string> classes;
  int64_t input_size = 224;
  int64_t resize = 256;
  std::array<float, 3> mean = {0.485f, 0.456f, 0.406f};
  std::array<float, 3> std = {0.229f, 0.224f, 0.225f};
  std::string source_job;
  std::string pretrained;
  // MobileNetV2 converted from Keras: TF "same" padding and BatchNorm eps 1e-3 (ModelSpec::keras_compat).
  bool keras_compat = false;
  // The precision the model was trained at ("" for imported or older models) and whether it came from
  // `auto`: a server on a CPU without native bf16 then runs fp32 and says so.
  std::string precision;
  bool precision_auto = false;
  // Where imported weights came from ({package, version, integrity, license, ...}); null for Kennel's own jobs.
  nlohmann::json source;
};

nlohmann::json to_json(const ModelInfo& info);
// The transform a saved model's predictions are made with (its resize, crop, mean and std);
// include kennel/data/transforms.h to use the result.
data::TransformSpec eval_transform_of(const ModelInfo& info);
Result<ModelInfo> model_info_from_json(const nlohmann::json& json, const std::string& origin);

// Writes dir/{model.safetensors, model.json[, model.pth]}; an existing dir is replaced only after the new one is complete.
Status save_model_dir(const std::filesystem::path& dir, Classifier& classifier, const ModelInfo& info,
                      bool export_pth);

struct LoadedModel {
  ModelInfo info;
  Classifier classifier{nullptr};  // eval mode, CPU
};
// Errors name the directory and the missing/corrupt file.
Result<LoadedModel> load_model_dir(const std::filesystem::path& dir);

// SHA-256 over the files that make the model (model.json and
// model.safetensors): two directories with the same digest predict the same.
// Errors name the unreadable file.
Result<std::string> model_dir_digest(const std::filesystem::path& dir);

// A model directory (with model.json), a folder holding model/, or the name of
// a completed job under `home` -> the model directory. kNotFound naming both.
// An s3://BUCKET/PREFIX/ model directory is synced into home's S3 cache (only
// the files its manifest commits, data/s3_sync.h) and the local copy returned.
Result<std::filesystem::path> resolve_model_dir(const std::string& model, const std::filesystem::path& home);

// Where pretrained weights live: $KENNEL_WEIGHTS_DIR, else ~/.cache/kennel/weights.
std::filesystem::path pretrained_weights_dir();

// The default pretrained weight file for an architecture, or "" when there is
// none: `<arch>/model.safetensors` (an imported backbone, a model directory)
// or `<arch>.safetensors` in pretrained_weights_dir().
std::string default_pretrained_weights(const std::string& arch);

// The model.json beside a weight file, when there is one that describes it
// (an imported backbone: keras_compat, preprocessing, source). nullopt otherwise.
std::optional<ModelInfo> pretrained_info(const std::filesystem::path& weights_file);

// Every pretrained weight file under pretrained_weights_dir(), with its info when it has one.
struct PretrainedEntry {
  std::string arch;  // from model.json, else the file name
  std::filesystem::path weights;
  std::optional<ModelInfo> info;
};
std::vector<PretrainedEntry> list_pretrained_weights();

}  // namespace kennel::models

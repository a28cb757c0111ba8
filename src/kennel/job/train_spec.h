// TrainSpec: everything a training job needs, as one flat set of keys that
// a spec file (YAML or JSON), command-line flags (`--lr 0.01`,
// `--batch-size 64`, or `--set key=value`) and a tuner all address by name.
//
// One table (train_spec_keys()) describes every key: its type, default,
// allowed values and help. The CLI builds its flags from it, the parser
// rejects unknown keys from it, and `resolve()` validates every value in
// one place, naming the key. The resolved spec (all defaults filled) is what
// a job saves as spec.json. Thread-safety: values.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "kennel/util/status.h"

namespace kennel::job {

struct TrainSpec {
  // identity and data
  std::string name;          // empty: <arch>-<yyyymmdd-hhmmss>
  std::string data;          // ImageFolder root (required)
  double valid_ratio = 0.2;  // held out of train when valid/ is missing
  // model
  std::string arch = "resnet50";
  std::string pretrained;  // weight file; "none" = random init; empty = the arch's default if any
  std::vector<int64_t> head;  // hidden sizes: [] one Linear, [256] Linear-ReLU-Dropout-Linear
  double dropout = 0.5;       // in the head, when it has hidden layers
  std::string freeze = "backbone";  // backbone | none | last:N
  // train (batch statistics) | frozen (running statistics everywhere) | sync (over every data-parallel rank)
  std::string batchnorm = "train";
  // hyperparameters
  double lr = 1e-3;
  int64_t batch_size = 32;
  int64_t epochs = 5;
  std::string optimizer = "adam";  // sgd | momentum | adam | adamw
  double momentum = 0.9;           // for momentum (and sgd when > 0 is wanted, use momentum)
  double weight_decay = 0;
  std::string lr_schedule = "constant";  // constant | step | cosine
  int64_t lr_step_epochs = 0;            // step schedule period; 0 = max(1, epochs / 3)
  double lr_gamma = 0.1;                 // step schedule factor
  double warmup_epochs = 0;              // linear warm-up from 0, in (fractional) epochs
  double lr_min = 0;                     // cosine schedule: the rate it ends at (PyTorch's eta_min)
  double label_smoothing = 0;
  // input
  int64_t input_size = 224;  // crop size fed to the model
  int64_t resize = 0;        // shorter side before the center crop; 0 = input_size * 256 / 224
  bool augment = false;      // random resized crop + flip for training
  double augment_scale = 0.08;  // smallest share of the image area a random crop keeps (torchvision scale[0])
  // Pixel normalisation after /255: auto (what the pretrained backbone was
  // trained with, else imagenet), imagenet (torchvision's mean/std), none
  // (inputs in [0, 1]), or "m,m,m/s,s,s" per RGB channel.
  std::string normalize = "auto";
  // runtime
  uint64_t seed = 0;
  int64_t threads = 0;            // CPU threads (0 = all); split between decode and compute
  std::string device = "auto";    // auto | cpu | cuda | cuda:N
  // auto | fp32 | bf16 (autocast, fp32 master weights) | fp16 (CUDA autocast). resolve_train_spec
  // turns auto into bf16 where the CPU has native bf16 (AMX, avx512_bf16), else fp32.
  std::string precision = "auto";
  // Filled by resolve_train_spec, not keys: whether precision came from auto, and why it is what it is.
  bool precision_auto = false;
  std::string precision_reason;
  bool feature_cache = true;      // frozen backbone + no augmentation: train the head on cached features
  int64_t max_steps = 0;          // stop after this many steps (0 = no limit; for smoke tests)
  bool export_pth = false;        // also write model/model.pth for Python users
  // hooks
  std::string debugger = "off";   // off | default | a debugger spec file (YAML/JSON; docs/debugger.md)
  std::string profiler = "off";   // off | default | a profiler spec file (YAML/JSON; docs/profiler.md)
};

// A parsed `normalize` value: (pixel / 255 - mean) / std per RGB channel.
struct Normalization {
  std::array<float, 3> mean;
  std::array<float, 3> std;
};
// kInvalidArgument naming the key and value when malformed or a std is <= 0.
Result<Normalization> parse_normalization(const std::string& value);

enum class SpecKeyType { kString, kInt, kFloat, kBool, kIntList };

struct SpecKey {
  std::string name;  // as in the file; the flag is --name with '_' -> '-'
  SpecKeyType type;
  std::string help;
  std::function<void(TrainSpec&, const nlohmann::json&)> set;  // throws kennel::Error naming the key
  std::function<nlohmann::json(const TrainSpec&)> get;
};

// The one table of keys.
const std::vector<SpecKey>& train_spec_keys();

// The key under which a data-parallel job's spec.json records how it ran
// (world size, effective batch size, launcher); readers skip it.
inline constexpr const char* kDistributedRecordKey = "distributed";
// The key under which spec.json records how `precision` was chosen
// (requested, reason, CPU); readers skip it, a resume reads it.
inline constexpr const char* kPrecisionRecordKey = "precision_choice";

// Applies every key of a JSON object (unknown keys: kInvalidArgument naming
// the key and the closest known one). Values may be strings ("0.01") as from flags.
Status apply_spec_json(TrainSpec& spec, const nlohmann::json& object, const std::string& origin);

// Reads a YAML or JSON spec file (YAML is a superset; .json files are parsed as JSON).
Result<nlohmann::json> read_spec_file(const std::filesystem::path& path);

// Fills dependent defaults and validates every value, naming the key:
// "lr must be > 0, got -0.1". Checks the data path exists.
Result<TrainSpec> resolve_train_spec(TrainSpec spec);

nlohmann::json to_json(const TrainSpec& spec);

// Job names (training and tuning): a letter or digit first, then letters,
// digits, '-', '_', '.'; at most 128. `what` names the field in the error.
Status validate_job_name(const std::string& name, const std::string& what);

}  // namespace kennel::job

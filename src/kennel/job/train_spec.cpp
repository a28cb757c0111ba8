#include "kennel/job/train_spec.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "kennel/s3/addressing.h"
#include "kennel/util/cpu_features.h"
#include "kennel/util/fs.h"

namespace kennel::job {

using nlohmann::json;

namespace {

[[noreturn]] void bad_value(const std::string& key, const json& value, const std::string& expected) {
  throw Error(invalid_argument("spec key '{}': expected {}, got {}", key, expected, value.dump()));
}

// Values from flags arrive as strings; from files as typed JSON. Accept both.
std::string as_string(const std::string& key, const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number() || value.is_boolean()) return value.dump();
  bad_value(key, value, "a string");
}

double as_float(const std::string& key, const json& value) {
  if (value.is_number()) return value.get<double>();
  if (value.is_string()) {
    const std::string text = value.get<std::string>();
    try {
      size_t used = 0;
      const double parsed = std::stod(text, &used);
      if (used == text.size()) return parsed;
    } catch (const std::exception&) {
    }
  }
  bad_value(key, value, "a number");
}

int64_t as_int(const std::string& key, const json& value) {
  if (value.is_number_integer()) return value.get<int64_t>();
  const double parsed = as_float(key, value);
  if (std::floor(parsed) != parsed || std::abs(parsed) > 9e15) bad_value(key, value, "an integer");
  return static_cast<int64_t>(parsed);
}

bool as_bool(const std::string& key, const json& value) {
  if (value.is_boolean()) return value.get<bool>();
  if (value.is_string()) {
    const std::string text = value.get<std::string>();
    if (text == "true" || text == "1" || text == "yes" || text == "on") return true;
    if (text == "false" || text == "0" || text == "no" || text == "off") return false;
  }
  if (value.is_number_integer() && (value == 0 || value == 1)) return value == 1;
  bad_value(key, value, "true or false");
}

std::vector<int64_t> as_int_list(const std::string& key, const json& value) {
  json list = value;
  if (value.is_string()) {
    // "[256]", "256,128", "256" or "" from a flag.
    std::string text = value.get<std::string>();
    text.erase(std::remove_if(text.begin(), text.end(), [](char c) { return c == '[' || c == ']' || c == ' '; }),
               text.end());
    list = json::array();
    size_t start = 0;
    while (start < text.size()) {
      const size_t comma = text.find(',', start);
      list.push_back(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  if (!list.is_array()) bad_value(key, value, "a list of integers such as [256]");
  std::vector<int64_t> out;
  for (const auto& item : list) out.push_back(as_int(key, item));
  return out;
}

template <typename Field>
SpecKey string_key(std::string name, Field TrainSpec::*field, std::string help) {
  return {name, SpecKeyType::kString, std::move(help),
          [name, field](TrainSpec& spec, const json& value) { spec.*field = as_string(name, value); },
          [field](const TrainSpec& spec) { return json(spec.*field); }};
}
template <typename Field>
SpecKey int_key(std::string name, Field TrainSpec::*field, std::string help) {
  return {name, SpecKeyType::kInt, std::move(help),
          [name, field](TrainSpec& spec, const json& value) {
            spec.*field = static_cast<Field>(as_int(name, value));
          },
          [field](const TrainSpec& spec) { return json(spec.*field); }};
}
SpecKey float_key(std::string name, double TrainSpec::*field, std::string help) {
  return {name, SpecKeyType::kFloat, std::move(help),
          [name, field](TrainSpec& spec, const json& value) { spec.*field = as_float(name, value); },
          [field](const TrainSpec& spec) { return json(spec.*field); }};
}
SpecKey bool_key(std::string name, bool TrainSpec::*field, std::string help) {
  return {name, SpecKeyType::kBool, std::move(help),
          [name, field](TrainSpec& spec, const json& value) { spec.*field = as_bool(name, value); },
          [field](const TrainSpec& spec) { return json(spec.*field); }};
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1] ? 1 : 0)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

json yaml_to_json(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      json object = json::object();
      for (const auto& item : node) object[item.first.as<std::string>()] = yaml_to_json(item.second);
      return object;
    }
    case YAML::NodeType::Sequence: {
      json array = json::array();
      for (const auto& item : node) array.push_back(yaml_to_json(item));
      return array;
    }
    case YAML::NodeType::Scalar: {
      // Plain scalars keep their YAML meaning (numbers, booleans); quoted ones stay strings.
      const std::string text = node.Scalar();
      if (node.Tag() == "!") return text;
      if (text == "true" || text == "false") return text == "true";
      try {
        size_t used = 0;
        const long long integer = std::stoll(text, &used);
        if (used == text.size()) return integer;
      } catch (const std::exception&) {
      }
      try {
        size_t used = 0;
        const double number = std::stod(text, &used);
        if (used == text.size()) return number;
      } catch (const std::exception&) {
      }
      return text;
    }
    default:
      return nullptr;
  }
}

bool one_of(const std::string& value, std::initializer_list<const char*> allowed) {
  return std::any_of(allowed.begin(), allowed.end(), [&](const char* a) { return value == a; });
}

// debugger / profiler: off, default, or a spec file that exists (made absolute: trials run elsewhere).
Status resolve_hook_key(const char* key, std::string& value) {
  if (value.empty()) value = "off";
  if (value == "off" || value == "default") return {};
  std::error_code error;
  if (!std::filesystem::is_regular_file(value, error)) {
    return invalid_argument("spec key '{}': '{}' is not off, default, or a {} spec file that exists", key, value,
                            key);
  }
  value = std::filesystem::absolute(value, error).lexically_normal().string();
  return {};
}

}  // namespace

Result<Normalization> parse_normalization(const std::string& value) {
  if (value == "imagenet") return Normalization{{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}};
  if (value == "none") return Normalization{{0, 0, 0}, {1, 1, 1}};
  auto fail = [&] {
    return invalid_argument(
        "spec key 'normalize' is '{}': use auto, imagenet, none, or three means and three stds as m,m,m/s,s,s "
        "(e.g. 0.5,0.5,0.5/0.5,0.5,0.5; stds > 0)",
        value);
  };
  const auto slash = value.find('/');
  if (slash == std::string::npos) return fail();
  auto three = [](const std::string& text, std::array<float, 3>& out) {
    size_t start = 0;
    for (size_t i = 0; i < 3; ++i) {
      const size_t end = i < 2 ? text.find(',', start) : text.size();
      if (end == std::string::npos) return false;
      const std::string item = text.substr(start, end - start);
      char* stop = nullptr;
      const double number = std::strtod(item.c_str(), &stop);
      if (item.empty() || stop != item.c_str() + item.size() || !std::isfinite(number)) return false;
      out[i] = static_cast<float>(number);
      start = end + 1;
    }
    return true;
  };
  Normalization normalization{};
  if (!three(value.substr(0, slash), normalization.mean) || !three(value.substr(slash + 1), normalization.std)) {
    return fail();
  }
  for (const float s : normalization.std) {
    if (!(s > 0)) return fail();
  }
  return normalization;
}

const std::vector<SpecKey>& train_spec_keys() {
  static const std::vector<SpecKey> keys = {
      string_key("name", &TrainSpec::name, "Job name (default: <arch>-<date>-<time>)"),
      string_key("data", &TrainSpec::data, "ImageFolder dataset root (train/ [valid/] [test/])"),
      float_key("valid_ratio", &TrainSpec::valid_ratio, "Share of train held out as valid when valid/ is missing"),
      string_key("arch", &TrainSpec::arch, "Backbone: resnet18/34/50/101/152, mobilenet_v2"),
      string_key("pretrained", &TrainSpec::pretrained,
                 "Weight file (.pth/.pt/.safetensors); 'none' for random init; empty = the arch's default"),
      {"head", SpecKeyType::kIntList, "Head hidden sizes: [] = one Linear, [256] = Linear-ReLU-Dropout-Linear",
       [](TrainSpec& spec, const json& value) { spec.head = as_int_list("head", value); },
       [](const TrainSpec& spec) { return json(spec.head); }},
      float_key("dropout", &TrainSpec::dropout, "Dropout in the head (with hidden layers)"),
      string_key("freeze", &TrainSpec::freeze, "backbone (train the head only), none, or last:N (last N stages trainable)"),
      string_key("batchnorm", &TrainSpec::batchnorm,
                 "train (batch statistics where the backbone trains), frozen (running statistics everywhere) or "
                 "sync (batch statistics over every data-parallel rank)"),
      float_key("lr", &TrainSpec::lr, "Learning rate"),
      int_key("batch_size", &TrainSpec::batch_size, "Images per step"),
      int_key("epochs", &TrainSpec::epochs, "Passes over the training split"),
      string_key("optimizer", &TrainSpec::optimizer, "sgd, momentum, adam or adamw"),
      float_key("momentum", &TrainSpec::momentum, "Momentum of the momentum optimizer"),
      float_key("weight_decay", &TrainSpec::weight_decay, "L2 weight decay (decoupled for adamw)"),
      string_key("lr_schedule", &TrainSpec::lr_schedule, "constant, step or cosine"),
      int_key("lr_step_epochs", &TrainSpec::lr_step_epochs, "Step schedule: epochs between decays (0 = epochs/3)"),
      float_key("lr_gamma", &TrainSpec::lr_gamma, "Step schedule: decay factor"),
      float_key("warmup_epochs", &TrainSpec::warmup_epochs, "Linear learning-rate warm-up, in epochs"),
      float_key("lr_min", &TrainSpec::lr_min,
                "Cosine schedule: the rate at the last step (PyTorch's eta_min; 0 = decay to nothing)"),
      float_key("label_smoothing", &TrainSpec::label_smoothing, "Cross-entropy label smoothing in [0, 1)"),
      int_key("input_size", &TrainSpec::input_size, "Model input size (crop), pixels"),
      int_key("resize", &TrainSpec::resize, "Shorter side before the center crop (0 = input_size*256/224)"),
      bool_key("augment", &TrainSpec::augment, "Random resized crop + horizontal flip for training"),
      float_key("augment_scale", &TrainSpec::augment_scale,
                "Augmentation: smallest share of the image's area a random crop keeps, in (0, 1] "
                "(torchvision's RandomResizedCrop scale 0.08; 0.5 or more for small, centred objects)"),
      string_key("normalize", &TrainSpec::normalize,
                 "Pixel normalisation after /255: auto (the pretrained backbone's, else imagenet), imagenet, none, or m,m,m/s,s,s"),
      int_key("seed", &TrainSpec::seed, "Random seed (data order, augmentation, init)"),
      int_key("threads", &TrainSpec::threads, "CPU threads (0 = all cores)"),
      string_key("device", &TrainSpec::device, "auto, cpu, cuda or cuda:N"),
      string_key("precision", &TrainSpec::precision,
                 "auto (bf16 where the CPU has native bf16: AMX or avx512_bf16; else fp32), fp32, bf16 (autocast, "
                 "fp32 master weights) or fp16 (CUDA)"),
      bool_key("feature_cache", &TrainSpec::feature_cache,
               "Frozen backbone without augmentation: compute features once and reuse them"),
      int_key("max_steps", &TrainSpec::max_steps, "Stop after this many steps (0 = no limit)"),
      bool_key("export_pth", &TrainSpec::export_pth, "Also write model/model.pth for PyTorch users"),
      string_key("debugger", &TrainSpec::debugger,
                 "off, default (hook + built-in rules), or a debugger spec file (YAML/JSON)"),
      string_key("profiler", &TrainSpec::profiler,
                 "off, default (system monitor + step phases + operator window + rules), or a profiler spec file"),
  };
  return keys;
}

Status apply_spec_json(TrainSpec& spec, const json& object, const std::string& origin) {
  if (!object.is_object()) {
    return invalid_argument("{}: a spec must be a mapping of keys to values", origin);
  }
  const auto& keys = train_spec_keys();
  for (const auto& [name, value] : object.items()) {
    // A data-parallel job's spec.json records how it ran (world size, effective batch size): not an input.
    if (name == kDistributedRecordKey || name == kPrecisionRecordKey) continue;
    auto it = std::find_if(keys.begin(), keys.end(), [&](const SpecKey& key) { return key.name == name; });
    if (it == keys.end()) {
      const auto closest = std::min_element(keys.begin(), keys.end(), [&](const SpecKey& a, const SpecKey& b) {
        return edit_distance(name, a.name) < edit_distance(name, b.name);
      });
      return invalid_argument("{}: unknown key '{}'{} (`kennel train --help` lists every key)", origin, name,
                              edit_distance(name, closest->name) <= 3
                                  ? fmt::format(": did you mean '{}'?", closest->name)
                                  : std::string());
    }
    try {
      it->set(spec, value);
    } catch (const Error& error) {
      return error.status().with_context(origin);
    }
  }
  return {};
}

Result<json> read_spec_file(const std::filesystem::path& path) {
  auto text = read_file_text(path);
  if (!text.ok()) return text.status().with_context("reading spec file");
  try {
    if (path.extension() == ".json") return json::parse(*text);
    return yaml_to_json(YAML::Load(*text));
  } catch (const std::exception& error) {
    return invalid_argument("spec file '{}' is not valid {}: {}", path.string(),
                            path.extension() == ".json" ? "JSON" : "YAML", error.what());
  }
}

Status validate_job_name(const std::string& name, const std::string& what) {
  const bool starts_alnum = !name.empty() && std::isalnum(static_cast<unsigned char>(name[0]));
  const bool allowed = std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
  if (!starts_alnum || !allowed || name.size() > 128) {
    return invalid_argument(
        "{}: '{}' must start with a letter or digit and contain only letters, digits, '-', '_' and '.' (at most 128)",
        what, name);
  }
  return {};
}

Result<TrainSpec> resolve_train_spec(TrainSpec spec) {
  if (spec.data.empty()) return invalid_argument("spec key 'data' is required: the dataset root folder");
  std::error_code error;
  if (s3::is_s3_uri(spec.data)) {
    // Synced into the home's cache when the job is prepared (prepare.h).
    auto location = s3::parse_s3_uri(spec.data);
    if (!location.ok()) return location.status().with_context("spec key 'data'");
  } else if (!std::filesystem::is_directory(spec.data, error)) {
    return not_found("spec key 'data': dataset folder '{}' does not exist", spec.data);
  }
  if (spec.name.empty()) {
    const std::time_t now = std::time(nullptr);
    char stamp[32];
    std::strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", std::localtime(&now));
    spec.name = fmt::format("{}-{}", spec.arch, stamp);
  }
  KENNEL_RETURN_IF_ERROR(validate_job_name(spec.name, "spec key 'name'"));
  KENNEL_RETURN_IF_ERROR(resolve_hook_key("debugger", spec.debugger));
  KENNEL_RETURN_IF_ERROR(resolve_hook_key("profiler", spec.profiler));
  if (spec.normalize.empty()) spec.normalize = "auto";
  if (spec.normalize != "auto") KENNEL_RETURN_IF_ERROR(parse_normalization(spec.normalize).status());
  if (!(spec.valid_ratio >= 0 && spec.valid_ratio < 1)) {
    return invalid_argument("spec key 'valid_ratio' must be in [0, 1), got {}", spec.valid_ratio);
  }
  if (!(spec.lr > 0) || !std::isfinite(spec.lr)) return invalid_argument("spec key 'lr' must be > 0, got {}", spec.lr);
  if (spec.batch_size < 1) return invalid_argument("spec key 'batch_size' must be >= 1, got {}", spec.batch_size);
  if (spec.epochs < 1) return invalid_argument("spec key 'epochs' must be >= 1, got {}", spec.epochs);
  if (!one_of(spec.optimizer, {"sgd", "momentum", "adam", "adamw"})) {
    return invalid_argument("spec key 'optimizer' must be sgd, momentum, adam or adamw, got '{}'", spec.optimizer);
  }
  if (!(spec.momentum >= 0 && spec.momentum < 1)) {
    return invalid_argument("spec key 'momentum' must be in [0, 1), got {}", spec.momentum);
  }
  if (!(spec.weight_decay >= 0)) {
    return invalid_argument("spec key 'weight_decay' must be >= 0, got {}", spec.weight_decay);
  }
  if (!one_of(spec.lr_schedule, {"constant", "step", "cosine"})) {
    return invalid_argument("spec key 'lr_schedule' must be constant, step or cosine, got '{}'", spec.lr_schedule);
  }
  if (spec.lr_step_epochs < 0) return invalid_argument("spec key 'lr_step_epochs' must be >= 0, got {}", spec.lr_step_epochs);
  if (spec.lr_step_epochs == 0) spec.lr_step_epochs = std::max<int64_t>(1, spec.epochs / 3);
  if (!(spec.lr_gamma > 0 && spec.lr_gamma <= 1)) {
    return invalid_argument("spec key 'lr_gamma' must be in (0, 1], got {}", spec.lr_gamma);
  }
  if (!(spec.warmup_epochs >= 0)) return invalid_argument("spec key 'warmup_epochs' must be >= 0, got {}", spec.warmup_epochs);
  if (!(spec.lr_min >= 0 && spec.lr_min <= spec.lr)) {
    return invalid_argument("spec key 'lr_min' must be in [0, lr ({})], got {}", spec.lr, spec.lr_min);
  }
  if (!(spec.augment_scale > 0 && spec.augment_scale <= 1)) {
    return invalid_argument("spec key 'augment_scale' must be in (0, 1], got {}", spec.augment_scale);
  }
  if (!(spec.label_smoothing >= 0 && spec.label_smoothing < 1)) {
    return invalid_argument("spec key 'label_smoothing' must be in [0, 1), got {}", spec.label_smoothing);
  }
  if (!(spec.dropout >= 0 && spec.dropout < 1)) {
    return invalid_argument("spec key 'dropout' must be in [0, 1), got {}", spec.dropout);
  }
  for (int64_t size : spec.head) {
    if (size < 1) return invalid_argument("spec key 'head': hidden sizes must be >= 1, got {}", size);
  }
  if (spec.input_size < 16 || spec.input_size > 1024) {
    return invalid_argument("spec key 'input_size' must be in [16, 1024], got {}", spec.input_size);
  }
  if (spec.resize == 0) spec.resize = spec.input_size * 256 / 224;
  if (spec.resize < spec.input_size) {
    return invalid_argument("spec key 'resize' ({}) must be >= input_size ({})", spec.resize, spec.input_size);
  }
  if (spec.threads < 0) return invalid_argument("spec key 'threads' must be >= 0, got {}", spec.threads);
  if (!(spec.device == "auto" || spec.device == "cpu" || spec.device.rfind("cuda", 0) == 0)) {
    return invalid_argument("spec key 'device' must be auto, cpu, cuda or cuda:N, got '{}'", spec.device);
  }
  if (!one_of(spec.precision, {"auto", "fp32", "bf16", "fp16"})) {
    return invalid_argument("spec key 'precision' must be auto, fp32, bf16 or fp16, got '{}'", spec.precision);
  }
  if (spec.precision == "auto") {
    // Resolved once, here, when the job is created: spec.json then says what ran (a resume re-checks the CPU).
    spec.precision_auto = true;
    if (spec.device.rfind("cuda", 0) == 0) {
      spec.precision = "fp32";
      spec.precision_reason = "auto on a CUDA device: fp32 (the bf16 rule reads CPU flags)";
    } else {
      const PrecisionChoice choice = choose_precision("auto", host_cpu_features());
      spec.precision = choice.precision;
      spec.precision_reason = choice.reason;
    }
  } else if (spec.precision_reason.empty()) {
    spec.precision_reason = spec.precision + " as asked";
  }
  if (!(spec.freeze == "backbone" || spec.freeze == "none" || spec.freeze.rfind("last:", 0) == 0)) {
    return invalid_argument("spec key 'freeze' must be backbone, none or last:N, got '{}'", spec.freeze);
  }
  if (!one_of(spec.batchnorm, {"train", "frozen", "sync"})) {
    return invalid_argument("spec key 'batchnorm' must be train, frozen or sync, got '{}'", spec.batchnorm);
  }
  if (spec.max_steps < 0) return invalid_argument("spec key 'max_steps' must be >= 0, got {}", spec.max_steps);
  return spec;
}

json to_json(const TrainSpec& spec) {
  json out = json::object();
  for (const auto& key : train_spec_keys()) out[key.name] = key.get(spec);
  return out;
}

}  // namespace kennel::job

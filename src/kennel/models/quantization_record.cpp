#include "kennel/models/quantization_record.h"

#include <nlohmann/json.hpp>

#include "kennel/util/fs.h"

namespace kennel::models {

namespace fs = std::filesystem;
using nlohmann::json;

Status write_quantization_record(const fs::path& dir, const QuantizationRecord& record) {
  json ranges = json::object();
  for (const auto& [name, range] : record.ranges) ranges[name] = {{"min", range.min}, {"max", range.max}};
  const QuantizationCheck& check = record.check;
  const json out = {
      {"format", kQuantizationFormat},
      {"engine", record.engine},
      {"weights", record.weights},
      {"activations", record.activations},
      {"calibration",
       {{"data", record.calibration_data},
        {"split", record.calibration_split},
        {"images", record.calibration_images},
        {"seed", record.seed}}},
      {"check",
       {{"data", check.data},
        {"split", check.split},
        {"images", check.images},
        {"agreement", check.agreement},
        {"accuracy_int8", check.accuracy_int8},
        {"accuracy_fp32", check.accuracy_fp32},
        {"max_logit_difference", check.max_logit_difference}}},
      {"cpu", record.cpu},
      {"created_at", record.created_at},
      {"ranges", ranges},
  };
  return write_file_atomic(dir / kQuantizationFile, out.dump(2) + "\n");
}

Result<std::optional<QuantizationRecord>> read_quantization_record(const fs::path& dir) {
  const fs::path path = dir / kQuantizationFile;
  std::error_code error;
  if (!fs::exists(path, error)) return std::optional<QuantizationRecord>();
  auto text = read_file_text(path);
  if (!text.ok()) return text.status();
  const json parsed = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object()) return invalid_argument("'{}' is not a JSON object: run kennel quantize again", path.string());
  const auto bad = [&](const std::string& field) {
    return invalid_argument("'{}': field '{}' is missing or malformed: run kennel quantize again", path.string(), field);
  };
  if (parsed.value("format", 0) != kQuantizationFormat) return bad("format");
  QuantizationRecord record;
  try {
    record.engine = parsed.at("engine").get<std::string>();
    record.weights = parsed.value("weights", record.weights);
    record.activations = parsed.value("activations", record.activations);
    const json& calibration = parsed.at("calibration");
    record.calibration_data = calibration.value("data", "");
    record.calibration_split = calibration.value("split", "");
    record.calibration_images = calibration.value("images", int64_t{0});
    record.seed = calibration.value("seed", uint64_t{0});
    const json& check = parsed.at("check");
    record.check.data = check.value("data", "");
    record.check.split = check.value("split", "");
    record.check.images = check.value("images", int64_t{0});
    record.check.agreement = check.at("agreement").get<double>();
    record.check.accuracy_int8 = check.value("accuracy_int8", 0.0);
    record.check.accuracy_fp32 = check.value("accuracy_fp32", 0.0);
    record.check.max_logit_difference = check.value("max_logit_difference", 0.0);
    record.cpu = parsed.value("cpu", "");
    record.created_at = parsed.value("created_at", "");
  } catch (const json::exception&) {
    return bad("engine, calibration or check.agreement");
  }
  if (record.engine != "onednn") return bad("engine");
  if (!(record.check.agreement >= 0 && record.check.agreement <= 1)) return bad("check.agreement");
  const auto ranges = parsed.find("ranges");
  if (ranges == parsed.end() || !ranges->is_object() || ranges->empty()) return bad("ranges");
  for (const auto& [name, range] : ranges->items()) {
    if (!range.is_object() || !range.contains("min") || !range.contains("max") || !range["min"].is_number() ||
        !range["max"].is_number() || range["min"].get<double>() > range["max"].get<double>()) {
      return bad("ranges." + name);
    }
    record.ranges[name] = {range["min"].get<double>(), range["max"].get<double>(), true};
  }
  return std::optional<QuantizationRecord>(std::move(record));
}

}  // namespace kennel::models

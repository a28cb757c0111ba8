// The search space of a tuning job: named hyperparameter ranges and the
// values a trial gets. Three kinds, as cloud tuners have them:
//   continuous  {min: 1e-4, max: 1e-1, scale: log}   scales linear | log | reverse-log
//   integer     {min: 2, max: 10}                    (type: integer, or integer bounds
//                                                     for an integer training key)
//   categorical [32, 64, 128] or ["adam", "sgd"]
// Strategies work in a unit interval per numeric parameter (the scale is the
// map between it and the value) and in choice indices for categoricals.
// Thread-safety: values.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kennel/util/status.h"

namespace kennel::tune {

enum class ParamType { kContinuous, kInteger, kCategorical };
enum class Scale { kLinear, kLog, kReverseLog };

const char* param_type_name(ParamType type);  // "continuous" | "integer" | "categorical"
const char* scale_name(Scale scale);          // "linear" | "log" | "reverse-log"

struct Parameter {
  std::string name;
  ParamType type = ParamType::kContinuous;
  Scale scale = Scale::kLinear;
  double min = 0, max = 0;             // numeric kinds
  std::vector<nlohmann::json> choices;  // categorical

  // Numeric kinds: [min, max] <-> [0, 1] through the scale. from_unit rounds integers.
  double to_unit(double value) const;
  nlohmann::json from_unit(double unit) const;
  // Whether a value (e.g. from another study) lies in this range / among the choices.
  bool contains(const nlohmann::json& value) const;
  // Categorical: index of a value among the choices, if there.
  std::optional<size_t> choice_index(const nlohmann::json& value) const;

  nlohmann::json to_json() const;

 private:
  double unit_low() const;
  double unit_high() const;
};

// The type a training key expects, so "epochs: {min: 2, max: 10}" is an
// integer range and "lr: {min: 0, max: 1}" continuous.
enum class ValueHint { kUnknown, kInteger, kFloat, kText };

// From a spec entry: an object with min/max[/scale/type] or a list of choices.
// Errors name the parameter and what is wrong (empty range, min > max, log
// scale with min <= 0, reverse-log outside [0, 1), no choices, duplicates).
Result<Parameter> parse_parameter(const std::string& name, const nlohmann::json& definition, ValueHint hint);
// From a flag: "lr=1e-4..1e-1:log", "epochs=2..10", "batch_size=16,32,64",
// "optimizer=adam,sgd", or "lr={\"min\":...}" (JSON).
Result<Parameter> parse_parameter_flag(const std::string& text, const std::function<ValueHint(const std::string&)>& hint_of);

struct SearchSpace {
  std::vector<Parameter> parameters;

  const Parameter* find(const std::string& name) const;
  nlohmann::json to_json() const;  // {"lr": {"type": "continuous", "min": ..., ...}, ...}
  // Reads what to_json wrote.
  static Result<SearchSpace> from_json(const nlohmann::json& object);
};

}  // namespace kennel::tune

#include "kennel/tune/search_space.h"

#include <algorithm>
#include <cerrno>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <functional>

namespace kennel::tune {

using nlohmann::json;

const char* param_type_name(ParamType type) {
  switch (type) {
    case ParamType::kInteger: return "integer";
    case ParamType::kCategorical: return "categorical";
    case ParamType::kContinuous: break;
  }
  return "continuous";
}

const char* scale_name(Scale scale) {
  switch (scale) {
    case Scale::kLog: return "log";
    case Scale::kReverseLog: return "reverse-log";
    case Scale::kLinear: break;
  }
  return "linear";
}

namespace {

// The scale's map from a value to the line on which the unit interval is uniform.
double forward(Scale scale, double value) {
  switch (scale) {
    case Scale::kLog: return std::log(value);
    case Scale::kReverseLog: return -std::log(1.0 - value);  // dense near 1, as for momentum 0.9..0.999
    case Scale::kLinear: break;
  }
  return value;
}

double inverse(Scale scale, double line) {
  switch (scale) {
    case Scale::kLog: return std::exp(line);
    case Scale::kReverseLog: return 1.0 - std::exp(-line);
    case Scale::kLinear: break;
  }
  return line;
}

// No exceptions: TPE calls this for every past trial on every suggestion.
std::optional<double> parse_number(const json& value) {
  if (value.is_number()) return value.get<double>();
  if (!value.is_string()) return std::nullopt;
  const std::string& text = value.get_ref<const std::string&>();
  if (text.empty() || std::isspace(static_cast<unsigned char>(text.front()))) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const double parsed = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || errno == ERANGE) return std::nullopt;
  return parsed;
}

std::optional<Scale> parse_scale(const std::string& text) {
  if (text == "linear" || text == "Linear" || text == "auto" || text == "Auto") return Scale::kLinear;
  if (text == "log" || text == "logarithmic" || text == "Logarithmic") return Scale::kLog;
  if (text == "reverse-log" || text == "reverse_log" || text == "ReverseLogarithmic") return Scale::kReverseLog;
  return std::nullopt;
}

// A choice as typed JSON: "64" from a flag becomes 64 so it compares equal to a spec's 64.
json typed_choice(const json& value, ValueHint hint) {
  if (!value.is_string() || hint == ValueHint::kText) return value;
  const auto number = parse_number(value);
  if (!number) return value;
  if (std::floor(*number) == *number && std::abs(*number) < 9e15 && hint != ValueHint::kFloat) {
    return static_cast<int64_t>(*number);
  }
  return *number;
}

}  // namespace

// Integers own equal shares of the unit line (on the scale), so the end values are as likely as the others.
double Parameter::unit_low() const { return forward(scale, type == ParamType::kInteger ? min - 0.5 : min); }
double Parameter::unit_high() const { return forward(scale, type == ParamType::kInteger ? max + 0.5 : max); }

double Parameter::to_unit(double value) const {
  const double low = unit_low(), high = unit_high();
  if (high == low) return 0.5;
  return std::clamp((forward(scale, value) - low) / (high - low), 0.0, 1.0);
}

json Parameter::from_unit(double unit) const {
  unit = std::clamp(unit, 0.0, 1.0);
  const double value = std::clamp(inverse(scale, unit_low() + unit * (unit_high() - unit_low())), min, max);
  if (type == ParamType::kInteger) return static_cast<int64_t>(std::clamp(std::round(value), min, max));
  return value;
}

bool Parameter::contains(const json& value) const {
  if (type == ParamType::kCategorical) return choice_index(value).has_value();
  const auto number = parse_number(value);
  if (!number) return false;
  if (type == ParamType::kInteger && std::floor(*number) != *number) return false;
  const double slack = 1e-9 * std::max(1.0, std::abs(max));
  return *number >= min - slack && *number <= max + slack;
}

std::optional<size_t> Parameter::choice_index(const json& value) const {
  for (size_t i = 0; i < choices.size(); ++i) {
    if (choices[i] == value) return i;
  }
  // 32, 32.0 and "32" (from a flag) are the same choice.
  const auto number = parse_number(value);
  if (!number) return std::nullopt;
  for (size_t i = 0; i < choices.size(); ++i) {
    const auto choice = parse_number(choices[i]);
    if (choice && *choice == *number) return i;
  }
  return std::nullopt;
}

json Parameter::to_json() const {
  json out = {{"type", param_type_name(type)}};
  if (type == ParamType::kCategorical) {
    out["choices"] = choices;
  } else {
    out["scale"] = scale_name(scale);
    if (type == ParamType::kInteger) {
      out["min"] = static_cast<int64_t>(min);
      out["max"] = static_cast<int64_t>(max);
    } else {
      out["min"] = min;
      out["max"] = max;
    }
  }
  return out;
}

Result<Parameter> parse_parameter(const std::string& name, const json& definition, ValueHint hint) {
  Parameter parameter;
  parameter.name = name;
  if (name.empty()) return invalid_argument("a hyperparameter range has an empty name");
  const json* values = nullptr;
  if (definition.is_array()) values = &definition;
  if (definition.is_object() && definition.contains("choices")) values = &definition["choices"];
  if (definition.is_object() && definition.contains("values")) values = &definition["values"];
  if (values) {
    parameter.type = ParamType::kCategorical;
    if (!values->is_array() || values->empty()) {
      return invalid_argument("hyperparameter '{}': a categorical range needs at least one value, got {}", name,
                              values->dump());
    }
    for (const auto& value : *values) {
      if (!(value.is_string() || value.is_number() || value.is_boolean())) {
        return invalid_argument("hyperparameter '{}': categorical values must be numbers or strings, got {}", name,
                                value.dump());
      }
      json typed = typed_choice(value, hint);
      if (parameter.choice_index(typed)) {
        return invalid_argument("hyperparameter '{}': value {} is listed twice", name, typed.dump());
      }
      parameter.choices.push_back(std::move(typed));
    }
    return parameter;
  }
  if (!definition.is_object()) {
    return invalid_argument(
        "hyperparameter '{}': expected a range such as {{min: 1e-4, max: 1e-1, scale: log}} or a list of values, got {}",
        name, definition.dump());
  }
  for (const auto& [key, unused] : definition.items()) {
    if (key != "min" && key != "max" && key != "scale" && key != "type") {
      return invalid_argument("hyperparameter '{}': unknown field '{}' (a range has min, max, scale, type)", name, key);
    }
  }
  if (!definition.contains("min") || !definition.contains("max")) {
    return invalid_argument("hyperparameter '{}': a range needs both min and max, got {}", name, definition.dump());
  }
  const auto min = parse_number(definition["min"]), max = parse_number(definition["max"]);
  if (!min || !std::isfinite(*min)) {
    return invalid_argument("hyperparameter '{}': min must be a number, got {}", name, definition["min"].dump());
  }
  if (!max || !std::isfinite(*max)) {
    return invalid_argument("hyperparameter '{}': max must be a number, got {}", name, definition["max"].dump());
  }
  parameter.min = *min;
  parameter.max = *max;
  std::string type_text;
  if (definition.contains("type")) {
    if (!definition["type"].is_string()) return invalid_argument("hyperparameter '{}': type must be a string", name);
    type_text = definition["type"].get<std::string>();
  }
  if (type_text == "integer" || type_text == "int" || type_text == "Integer") {
    parameter.type = ParamType::kInteger;
  } else if (type_text == "continuous" || type_text == "float" || type_text == "Continuous") {
    parameter.type = ParamType::kContinuous;
  } else if (!type_text.empty()) {
    return invalid_argument("hyperparameter '{}': type '{}' is not one of continuous, integer (use a list for "
                            "categorical values)",
                            name, type_text);
  } else {
    const bool integral_bounds = std::floor(*min) == *min && std::floor(*max) == *max;
    parameter.type = hint == ValueHint::kInteger || (hint == ValueHint::kUnknown && integral_bounds &&
                                                      definition["min"].is_number_integer() &&
                                                      definition["max"].is_number_integer())
                         ? ParamType::kInteger
                         : ParamType::kContinuous;
  }
  if (parameter.type == ParamType::kInteger && (std::floor(*min) != *min || std::floor(*max) != *max)) {
    return invalid_argument("hyperparameter '{}': an integer range needs integer bounds, got min {} max {}", name,
                            *min, *max);
  }
  if (parameter.type == ParamType::kInteger && hint == ValueHint::kFloat) {
    // A float key tuned over integers is fine (e.g. warmup_epochs); nothing to do.
  }
  if (hint == ValueHint::kInteger && parameter.type == ParamType::kContinuous) {
    return invalid_argument("hyperparameter '{}' takes integers: give integer bounds (got min {} max {})", name, *min,
                            *max);
  }
  if (hint == ValueHint::kText) {
    return invalid_argument("hyperparameter '{}' takes text values: give a list of choices, not a range", name);
  }
  if (*min > *max) {
    return invalid_argument("hyperparameter '{}': min {} is greater than max {}", name, *min, *max);
  }
  if (*min == *max) {
    return invalid_argument("hyperparameter '{}': the range [{}, {}] is empty; fix the value in the base spec instead",
                            name, *min, *max);
  }
  if (definition.contains("scale")) {
    const auto scale = definition["scale"].is_string() ? parse_scale(definition["scale"].get<std::string>())
                                                       : std::nullopt;
    if (!scale) {
      return invalid_argument("hyperparameter '{}': scale {} is not one of linear, log, reverse-log", name,
                              definition["scale"].dump());
    }
    parameter.scale = *scale;
  }
  if (parameter.scale == Scale::kLog && *min <= 0) {
    return invalid_argument("hyperparameter '{}': a log scale needs min > 0, got {}", name, *min);
  }
  if (parameter.scale == Scale::kReverseLog && (*min < 0 || *max >= 1)) {
    return invalid_argument(
        "hyperparameter '{}': a reverse-log scale samples 1 - x on a log scale and needs 0 <= min < max < 1, got "
        "[{}, {}]",
        name, *min, *max);
  }
  return parameter;
}

Result<Parameter> parse_parameter_flag(const std::string& text,
                                       const std::function<ValueHint(const std::string&)>& hint_of) {
  const auto equals = text.find('=');
  if (equals == std::string::npos || equals == 0) {
    return invalid_argument("--param '{}': expected NAME=MIN..MAX[:log|:linear|:reverse-log] or NAME=A,B,C", text);
  }
  const std::string name = text.substr(0, equals);
  const std::string body = text.substr(equals + 1);
  const ValueHint hint = hint_of ? hint_of(name) : ValueHint::kUnknown;
  if (body.empty()) return invalid_argument("--param '{}': no values after '='", text);
  if (body.front() == '{' || body.front() == '[') {
    json definition;
    try {
      definition = json::parse(body);
    } catch (const std::exception& error) {
      return invalid_argument("--param '{}': not valid JSON ({})", text, error.what());
    }
    return parse_parameter(name, definition, hint);
  }
  const auto dots = body.find("..");
  if (dots != std::string::npos) {
    std::string range = body, scale = "linear";
    const auto colon = body.find(':', dots);
    if (colon != std::string::npos) {
      range = body.substr(0, colon);
      scale = body.substr(colon + 1);
    }
    json definition = {{"min", range.substr(0, dots)}, {"max", range.substr(dots + 2)}, {"scale", scale}};
    if (scale == "int" || scale == "integer") {
      definition["scale"] = "linear";
      definition["type"] = "integer";
    }
    // "2..10" for an unknown name (an external command's flag) is an integer range.
    if (hint == ValueHint::kUnknown) {
      const auto is_integer_text = [](const std::string& s) {
        return !s.empty() && s.find_first_not_of("-0123456789") == std::string::npos;
      };
      if (is_integer_text(range.substr(0, dots)) && is_integer_text(range.substr(dots + 2)) &&
          !definition.contains("type")) {
        definition["type"] = "integer";
      }
    }
    return parse_parameter(name, definition, hint);
  }
  json choices = json::array();
  size_t start = 0;
  while (true) {
    const size_t comma = body.find(',', start);
    choices.push_back(body.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  for (const auto& choice : choices) {
    if (choice.get<std::string>().empty()) return invalid_argument("--param '{}': an empty value in the list", text);
  }
  return parse_parameter(name, choices, hint);
}

const Parameter* SearchSpace::find(const std::string& name) const {
  for (const auto& parameter : parameters) {
    if (parameter.name == name) return &parameter;
  }
  return nullptr;
}

json SearchSpace::to_json() const {
  json out = json::object();
  for (const auto& parameter : parameters) out[parameter.name] = parameter.to_json();
  return out;
}

Result<SearchSpace> SearchSpace::from_json(const json& object) {
  if (!object.is_object()) return invalid_argument("a search space must be an object of ranges, got {}", object.dump());
  SearchSpace space;
  for (const auto& [name, definition] : object.items()) {
    json range = definition;
    ValueHint hint = ValueHint::kUnknown;
    if (definition.is_object() && definition.contains("type")) {
      const std::string type = definition["type"].is_string() ? definition["type"].get<std::string>() : "";
      if (type == "categorical") {
        range = definition.contains("choices") ? definition["choices"] : json::array();
        hint = ValueHint::kText;  // choices are stored typed already
      }
      if (type == "integer") hint = ValueHint::kInteger;
      if (type == "continuous") hint = ValueHint::kFloat;
    }
    auto parameter = parse_parameter(name, range, hint);
    if (!parameter.ok()) return parameter.status();
    space.parameters.push_back(std::move(*parameter));
  }
  return space;
}

}  // namespace kennel::tune

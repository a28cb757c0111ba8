// Defensive reads of a report's JSON summary: a missing key or a value of the
// wrong type reads as absent instead of throwing, so a report renders from any
// summary (an older one, a hand-edited one). Shared by the tuning and profile
// reports. Thread-safety: pure functions.
#pragma once

#include <cmath>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace kennel::report {

// A null that outlives any caller: what an absent value reads as.
inline const nlohmann::json& absent() {
  static const nlohmann::json kNull;
  return kNull;
}

// `object[key]`, or absent() when `object` is not an object or has no `key`.
inline const nlohmann::json& field(const nlohmann::json& object, std::string_view key) {
  if (!object.is_object()) return absent();
  const auto it = object.find(key);
  return it == object.end() ? absent() : *it;
}

// `object[key]` when it is an array, else an empty array.
inline const nlohmann::json& array_field(const nlohmann::json& object, std::string_view key) {
  static const nlohmann::json kEmpty = nlohmann::json::array();
  const nlohmann::json& value = field(object, key);
  return value.is_array() ? value : kEmpty;
}

// A finite number, or nullopt (not a number, NaN, inf).
inline std::optional<double> finite_number(const nlohmann::json& value) {
  if (!value.is_number()) return std::nullopt;
  const double number = value.get<double>();
  return std::isfinite(number) ? std::optional(number) : std::nullopt;
}

inline std::optional<double> number_field(const nlohmann::json& object, std::string_view key) {
  return finite_number(field(object, key));
}

inline std::string or_dash(const std::string& text) { return text.empty() ? "-" : text; }

}  // namespace kennel::report

// Reading loosely typed values from spec files and flags: an integer may come
// as a JSON number or as text ("12") — YAML, JSON and the command line all
// reach the same fields. Callers name the field in their own errors.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>

#include <nlohmann/json_fwd.hpp>

namespace kennel {

// The integer a JSON number or a whole decimal string holds; nullopt otherwise.
std::optional<int64_t> json_integer(const nlohmann::json& value);

}  // namespace kennel

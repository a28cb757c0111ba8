// Helpers shared by the tuning unit tests: a parameter from its JSON definition
// (a parse failure fails the calling test), and substring checks for messages.
#pragma once

#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "kennel/tune/search_space.h"

namespace kennel::tune::test_helpers {

inline Parameter param(const std::string& name, const nlohmann::json& definition,
                       ValueHint hint = ValueHint::kUnknown) {
  auto parsed = parse_parameter(name, definition, hint);
  if (!parsed.ok()) ADD_FAILURE() << parsed.status().to_string();
  return parsed.ok() ? *parsed : Parameter{};
}

inline bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace kennel::tune::test_helpers

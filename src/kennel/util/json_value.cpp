#include "kennel/util/json_value.h"

#include <string>

#include <nlohmann/json.hpp>

namespace kennel {

std::optional<int64_t> json_integer(const nlohmann::json& value) {
  if (value.is_number_integer()) return value.get<int64_t>();
  if (!value.is_string()) return std::nullopt;
  const std::string& text = value.get_ref<const std::string&>();
  try {
    size_t used = 0;
    const long long parsed = std::stoll(text, &used);
    if (used == text.size()) return parsed;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

}  // namespace kennel

#include "kennel/studio/detail/json_files.h"

#include <cctype>

#include <fmt/format.h>

#include "kennel/util/fs.h"

namespace kennel::studio::detail {

using nlohmann::json;

Result<json> parse_json_object(std::string_view text) {
  json value = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return Status(ErrorCode::kDataLoss, "not valid JSON");
  if (!value.is_object())
    return Status(ErrorCode::kDataLoss, fmt::format("a JSON {}, not an object", value.type_name()));
  return value;
}

Result<json> read_json_file(const std::filesystem::path& path, uint64_t max_bytes) {
  auto bytes = read_file_bytes(path, max_bytes);
  if (!bytes.ok()) return bytes.status();
  auto value = parse_json_object(
      std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size()));
  if (!value.ok())
    return Status(ErrorCode::kDataLoss,
                  fmt::format("'{}' is {}", path.string(), value.status().message()));
  return value;
}

namespace {

std::string encode(std::string_view text, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (std::isalnum(byte) || c == '-' || c == '.' || c == '_' || c == '~' ||
        (keep_slash && c == '/')) {
      out += c;
    } else {
      out += '%';
      out += kHex[byte >> 4];
      out += kHex[byte & 15];
    }
  }
  return out;
}

}  // namespace

std::string url_encode(std::string_view text) {
  return encode(text, false);
}
std::string url_encode_path(std::string_view path) {
  return encode(path, true);
}

std::string regex_escape(std::string_view text) {
  std::string out;
  for (const char c : text) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

}  // namespace kennel::studio::detail

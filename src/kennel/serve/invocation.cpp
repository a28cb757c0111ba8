#include "kennel/serve/invocation.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>

#include <nlohmann/json.hpp>

namespace kennel::serve {

namespace {

using nlohmann::json;

std::string lower_media_type(std::string_view content_type) {
  std::string type(content_type.substr(0, content_type.find(';')));
  type.erase(std::remove_if(type.begin(), type.end(), [](unsigned char c) { return std::isspace(c); }),
             type.end());
  std::transform(type.begin(), type.end(), type.begin(), [](unsigned char c) { return std::tolower(c); });
  return type;
}

bool is_image_media_type(const std::string& type) {
  static const std::array<std::string_view, 9> kTypes = {
      "image/jpeg", "image/jpg",          "image/png",  "image/bmp", "image/webp", "image/tiff",
      "image/gif",  "application/x-image", "application/octet-stream"};
  return std::find(kTypes.begin(), kTypes.end(), type) != kTypes.end();
}

Result<int64_t> parse_top_k(std::string_view text, const std::string& origin, int64_t max_top_k) {
  int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value < 1 || value > max_top_k) {
    return invalid_argument("{} top_k='{}': expected an integer in [1, {}]", origin, text, max_top_k);
  }
  return value;
}

// "top_k=5" among comma- or semicolon-separated key=value pairs.
Result<int64_t> top_k_from_attributes(std::string_view attributes, int64_t max_top_k) {
  size_t start = 0;
  while (start <= attributes.size()) {
    size_t end = attributes.find_first_of(",;", start);
    if (end == std::string_view::npos) end = attributes.size();
    std::string_view pair = attributes.substr(start, end - start);
    while (!pair.empty() && std::isspace(static_cast<unsigned char>(pair.front()))) pair.remove_prefix(1);
    while (!pair.empty() && std::isspace(static_cast<unsigned char>(pair.back()))) pair.remove_suffix(1);
    if (pair.rfind("top_k=", 0) == 0) {
      return parse_top_k(pair.substr(6), "X-Amzn-SageMaker-Custom-Attributes", max_top_k);
    }
    start = end + 1;
  }
  return int64_t{0};
}

Result<ImageInput> input_from_json(const json& value, const std::string& where) {
  ImageInput input;
  if (value.is_string()) {
    input.url = value.get<std::string>();
  } else if (value.is_object() && value.contains("url")) {
    if (!value["url"].is_string()) return invalid_argument("{}: \"url\" must be a string", where);
    input.url = value["url"].get<std::string>();
  } else if (value.is_object() && (value.contains("image") || value.contains("b64"))) {
    const json& image = value.contains("image") ? value["image"] : value["b64"];
    if (!image.is_string()) return invalid_argument("{}: \"image\" must be a base64 string", where);
    auto bytes = decode_base64(image.get<std::string>());
    if (!bytes.ok()) return bytes.status().with_context(where + " \"image\"");
    input.bytes = std::move(bytes).value();
    if (input.bytes.empty()) return invalid_argument("{}: \"image\" is empty", where);
  } else {
    return invalid_argument("{}: expected {{\"url\": ...}} or {{\"image\": \"<base64>\"}}", where);
  }
  if (input.bytes.empty() && input.url.empty()) return invalid_argument("{}: \"url\" is empty", where);
  return input;
}

Result<std::vector<ImageInput>> inputs_from_json(const json& body) {
  std::vector<ImageInput> inputs;
  auto add_all = [&](const json& list, const std::string& key) -> Status {
    if (!list.is_array()) return invalid_argument("\"{}\" must be a list", key);
    if (list.empty()) return invalid_argument("\"{}\" is an empty list", key);
    for (size_t i = 0; i < list.size(); ++i) {
      auto input = input_from_json(list[i], fmt::format("\"{}\"[{}]", key, i));
      if (!input.ok()) return input.status();
      inputs.push_back(std::move(input).value());
    }
    return {};
  };
  if (!body.is_object()) {
    return invalid_argument("the JSON body must be an object such as {{\"url\": \"https://...\"}}");
  }
  if (body.contains("instances")) {
    KENNEL_RETURN_IF_ERROR(add_all(body["instances"], "instances"));
  } else if (body.contains("urls")) {
    KENNEL_RETURN_IF_ERROR(add_all(body["urls"], "urls"));
  } else if (body.contains("url") || body.contains("image") || body.contains("b64")) {
    auto input = input_from_json(body, "the body");
    if (!input.ok()) return input.status();
    inputs.push_back(std::move(input).value());
  } else {
    std::string keys;
    for (const auto& [key, value] : body.items()) keys += (keys.empty() ? "" : ", ") + key;
    return invalid_argument("the JSON body has no usable key (got: {}): send \"url\", \"urls\", \"image\" or "
                            "\"instances\"",
                            keys.empty() ? "none" : keys);
  }
  return inputs;
}

}  // namespace

Result<std::string> decode_base64(std::string_view text) {
  if (text.rfind("data:", 0) == 0) {
    const size_t comma = text.find(',');
    if (comma == std::string_view::npos || text.substr(0, comma).find(";base64") == std::string_view::npos) {
      return invalid_argument("a data: URL must be base64 (data:image/jpeg;base64,...)");
    }
    text.remove_prefix(comma + 1);
  }
  auto value_of = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  out.reserve(text.size() / 4 * 3);
  uint32_t buffer = 0;
  int bits = 0;
  size_t padding = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (std::isspace(static_cast<unsigned char>(c))) continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    const int value = value_of(c);
    if (value < 0 || padding > 0) {
      return invalid_argument("invalid base64 at character {} ('{}')", i, value < 0 ? std::string(1, c) : "=");
    }
    buffer = (buffer << 6) | static_cast<uint32_t>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xFF));
    }
  }
  if (bits >= 6 || padding > 2) return invalid_argument("invalid base64: the text ends mid-character");
  return out;
}

Result<Invocation> parse_invocation(std::string_view content_type, std::string_view body,
                                    std::string_view top_k_query, std::string_view custom_attributes,
                                    const InvocationLimits& limits) {
  Invocation invocation;
  if (!top_k_query.empty()) {
    auto k = parse_top_k(top_k_query, "query parameter", limits.max_top_k);
    if (!k.ok()) return k.status();
    invocation.top_k = *k;
  } else if (!custom_attributes.empty()) {
    auto k = top_k_from_attributes(custom_attributes, limits.max_top_k);
    if (!k.ok()) return k.status();
    invocation.top_k = *k;
  }
  const std::string type = lower_media_type(content_type);
  if (body.empty()) return invalid_argument("the request body is empty: send an image or a JSON object");
  if (type == "application/json" || type == "text/json") {
    json parsed;
    try {
      parsed = json::parse(body.begin(), body.end());
    } catch (const json::exception& error) {
      // parse_error for bad syntax, but also out_of_range for a number past double
      // (e.g. 1e400): both are the client's malformed body, not an internal error.
      return invalid_argument("the body is not valid JSON: {}", error.what());
    }
    auto inputs = inputs_from_json(parsed);
    if (!inputs.ok()) return inputs.status();
    invocation.inputs = std::move(inputs).value();
  } else if (is_image_media_type(type)) {
    invocation.inputs.push_back({.url = "", .bytes = std::string(body)});
  } else {
    return Status(ErrorCode::kUnsupportedMediaType,
                  fmt::format("Content-Type '{}' is not supported: use application/json ({{\"url\": ...}}) or an "
                              "image type (image/jpeg, image/png, application/x-image)",
                              content_type.empty() ? "(none)" : std::string(content_type)));
  }
  if (static_cast<int64_t>(invocation.inputs.size()) > limits.max_images) {
    return invalid_argument("{} images in one request: the limit is {}", invocation.inputs.size(), limits.max_images);
  }
  return invocation;
}

}  // namespace kennel::serve

// Small pieces the Studio API shares: defensive JSON reads of the files a job
// folder holds (a damaged file is an error naming it, never an exception), and
// the escaping of names put into URLs and regular expressions.
// Thread-safety: pure functions (and file reads).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "kennel/util/status.h"

namespace kennel::studio::detail {

// `text` parsed as a JSON object; kDataLoss saying why when it is not one.
Result<nlohmann::json> parse_json_object(std::string_view text);
// A file holding one JSON object: kNotFound when it does not exist, kDataLoss
// naming the file when it is not JSON (or not an object), other read errors as
// util/fs.h reports them. Files above `max_bytes` are refused (kResourceExhausted).
Result<nlohmann::json> read_json_file(const std::filesystem::path& path,
                                      uint64_t max_bytes = 64 << 20);

// Percent-encodes everything but RFC 3986's unreserved characters.
std::string url_encode(std::string_view text);
// The same, keeping '/' between path components.
std::string url_encode_path(std::string_view path);
// `text` as a regular expression that matches exactly it.
std::string regex_escape(std::string_view text);

}  // namespace kennel::studio::detail

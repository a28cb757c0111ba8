// The two INI files of the AWS tools, read as botocore reads them:
// ~/.aws/credentials (sections named after the profile: `[ml]`) and
// ~/.aws/config (`[default]`, `[profile ml]`, `[services name]`). Keys are
// lower-cased; values are trimmed; full-line comments start with '#' or ';';
// an empty value followed by indented `key = value` lines is a nested block
// (`s3 =` then `    addressing_style = path`). Parse errors name the file
// and line but never echo the line: in a credentials file it may hold a secret.
// Thread-safety: values and pure functions.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "kennel/util/status.h"

namespace kennel::s3 {

struct AwsIniSection {
  std::map<std::string, std::string> values;
  std::map<std::string, std::map<std::string, std::string>>
      nested;    // "s3" -> {addressing_style: path}
  int line = 0;  // where the section starts, for messages

  // The value of `key`, or nullopt when absent (an empty value counts as absent).
  std::optional<std::string> get(const std::string& key) const;
  std::optional<std::string> get_nested(const std::string& block, const std::string& key) const;
};

struct AwsIniFile {
  std::filesystem::path path;
  std::map<std::string, AwsIniSection> sections;  // by the name between the brackets

  const AwsIniSection* section(const std::string& name) const;
};

// Parses the text of an AWS INI file. kInvalidArgument naming path:line for a
// line outside any section, a line that is not `key = value`, or an indented
// line with nothing to nest under.
Result<AwsIniFile> parse_aws_ini(std::string_view text, const std::filesystem::path& path);

// Reads and parses `path`; nullopt when the file does not exist (AWS tools
// treat a missing file as empty). Errors: unreadable file, parse errors.
Result<std::optional<AwsIniFile>> load_aws_ini(const std::filesystem::path& path);

}  // namespace kennel::s3

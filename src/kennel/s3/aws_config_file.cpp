#include "kennel/s3/aws_config_file.h"

#include <cctype>
#include <system_error>

#include "kennel/util/fs.h"
#include "kennel/util/text.h"

namespace kennel::s3 {

namespace {

std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) {
    text.remove_prefix(1);
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
    text.remove_suffix(1);
  }
  return text;
}


}  // namespace

std::optional<std::string> AwsIniSection::get(const std::string& key) const {
  const auto found = values.find(key);
  if (found == values.end() || found->second.empty()) return std::nullopt;
  return found->second;
}

std::optional<std::string> AwsIniSection::get_nested(const std::string& block,
                                                     const std::string& key) const {
  const auto found_block = nested.find(block);
  if (found_block == nested.end()) return std::nullopt;
  const auto found = found_block->second.find(key);
  if (found == found_block->second.end() || found->second.empty()) return std::nullopt;
  return found->second;
}

const AwsIniSection* AwsIniFile::section(const std::string& name) const {
  const auto found = sections.find(name);
  return found == sections.end() ? nullptr : &found->second;
}

Result<AwsIniFile> parse_aws_ini(std::string_view text, const std::filesystem::path& path) {
  AwsIniFile file;
  file.path = path;
  AwsIniSection* section = nullptr;
  std::string last_key;  // the key an indented line continues or nests under
  int line_number = 0;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = std::min(text.find('\n', start), text.size());
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const std::string_view content = trim(line);
    if (content.empty() || content.front() == '#' || content.front() == ';') continue;
    const auto where = [&] { return fmt::format("{}:{}", path_text(path), line_number); };

    const bool indented = std::isspace(static_cast<unsigned char>(line.front()));
    if (indented && section && !last_key.empty()) {
      // A nested block under an empty value, or the continuation of a value.
      const size_t equals = content.find('=');
      if (section->values[last_key].empty() && equals != std::string_view::npos) {
        section->nested[last_key][ascii_lower(trim(content.substr(0, equals)))] =
            std::string(trim(content.substr(equals + 1)));
      } else if (section->nested.count(last_key) == 0) {
        std::string& value = section->values[last_key];
        value += (value.empty() ? "" : "\n") + std::string(content);
      } else {
        return invalid_argument("{}: the line under the nested block '{}' is not 'key = value'",
                                where(), last_key);
      }
      continue;
    }
    if (content.front() == '[') {
      if (content.back() != ']') {
        return invalid_argument("{}: section header '{}' has no closing ']'", where(), content);
      }
      const std::string name(trim(content.substr(1, content.size() - 2)));
      section = &file.sections[name];
      if (section->line == 0) section->line = line_number;
      last_key.clear();
      continue;
    }
    if (!section) {
      return invalid_argument(
          "{}: a setting comes before any [section] (profiles start with [default] or "
          "[profile NAME])",
          where());
    }
    const size_t equals = content.find('=');
    if (equals == std::string_view::npos) {
      return invalid_argument("{}: the line is not 'key = value'", where());
    }
    last_key = ascii_lower(trim(content.substr(0, equals)));
    if (last_key.empty()) {
      return invalid_argument("{}: the line has no key before '='", where());
    }
    section->values[last_key] = std::string(trim(content.substr(equals + 1)));
    section->nested.erase(last_key);
  }
  return file;
}

Result<std::optional<AwsIniFile>> load_aws_ini(const std::filesystem::path& path) {
  std::error_code error;
  if (!std::filesystem::exists(path, error) && !error) return std::optional<AwsIniFile>();
  auto text = read_file_text(path);
  if (!text.ok()) return text.status();
  auto file = parse_aws_ini(*text, path);
  if (!file.ok()) return file.status();
  return std::optional<AwsIniFile>(std::move(*file));
}

}  // namespace kennel::s3

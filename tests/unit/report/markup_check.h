// A strict-enough well-formedness check for the markup the report module
// writes, so tests need no XML library: tags nest and close in order,
// attribute values are quoted and hold no raw '<', every '&' starts a known
// entity, and no raw '<' sits in text. HTML void elements can be allowed for
// checking a whole page. Not a validator: it proves what it checks, no more.
#pragma once

#include <cctype>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace kennel::report::testing {

// Empty when well-formed, else what is wrong and where.
inline std::string markup_error(std::string_view text,
                                const std::set<std::string>& void_elements = {}) {
  std::vector<std::string> open;
  const auto entity_ok = [&](size_t at) {
    for (std::string_view entity : {"&amp;", "&lt;", "&gt;", "&quot;", "&#39;"}) {
      if (text.substr(at, entity.size()) == entity) return true;
    }
    return false;
  };
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == '&') {
      if (!entity_ok(i)) return "bare '&' at " + std::to_string(i);
      ++i;
      continue;
    }
    if (c != '<') {
      ++i;
      continue;
    }
    if (text.substr(i, 2) == "<!") {  // <!DOCTYPE html>
      const size_t end = text.find('>', i);
      if (end == std::string_view::npos) return "unterminated declaration";
      i = end + 1;
      continue;
    }
    const bool closing = text.substr(i, 2) == "</";
    size_t at = i + (closing ? 2 : 1);
    const size_t name_start = at;
    while (at < text.size() &&
           (std::isalnum(static_cast<unsigned char>(text[at])) || text[at] == '-'))
      ++at;
    const std::string name(text.substr(name_start, at - name_start));
    if (name.empty()) return "raw '<' at " + std::to_string(i);
    if (closing) {
      if (at >= text.size() || text[at] != '>') return "bad closing tag </" + name;
      if (open.empty() || open.back() != name) {
        return "</" + name + "> closes <" + (open.empty() ? std::string("nothing") : open.back()) +
               ">";
      }
      open.pop_back();
      i = at + 1;
      continue;
    }
    // Attributes: name="value" or name='value'.
    while (true) {
      while (at < text.size() && std::isspace(static_cast<unsigned char>(text[at]))) ++at;
      if (at >= text.size()) return "unterminated tag <" + name;
      if (text[at] == '>') {
        if (!void_elements.count(name)) open.push_back(name);
        i = at + 1;
        break;
      }
      if (text.substr(at, 2) == "/>") {
        i = at + 2;
        break;
      }
      const size_t attribute_start = at;
      while (at < text.size() && text[at] != '=' &&
             !std::isspace(static_cast<unsigned char>(text[at])) && text[at] != '>')
        ++at;
      if (at == attribute_start || at >= text.size() || text[at] != '=') {
        return "attribute without value in <" + name;
      }
      ++at;
      if (at >= text.size() || (text[at] != '"' && text[at] != '\''))
        return "unquoted attribute in <" + name;
      const char quote = text[at];
      const size_t value_end = text.find(quote, at + 1);
      if (value_end == std::string_view::npos) return "unterminated attribute in <" + name;
      for (size_t v = at + 1; v < value_end; ++v) {
        if (text[v] == '<') return "raw '<' in an attribute of <" + name;
        if (text[v] == '&' && !entity_ok(v)) return "bare '&' in an attribute of <" + name;
      }
      at = value_end + 1;
    }
  }
  if (!open.empty()) return "<" + open.back() + "> is never closed";
  return "";
}

// Every <svg>...</svg> element of an HTML page.
inline std::vector<std::string> svg_elements(const std::string& html) {
  std::vector<std::string> found;
  size_t at = 0;
  while ((at = html.find("<svg", at)) != std::string::npos) {
    const size_t end = html.find("</svg>", at);
    if (end == std::string::npos) {
      found.push_back(html.substr(at));  // unclosed: let the check report it
      break;
    }
    found.push_back(html.substr(at, end + 6 - at));
    at = end + 6;
  }
  return found;
}

inline size_t count_occurrences(std::string_view text, std::string_view needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string_view::npos;
       at = text.find(needle, at + needle.size())) {
    ++count;
  }
  return count;
}

}  // namespace kennel::report::testing

#include "kennel/report/html.h"

#include <algorithm>
#include <charconv>
#include <cstdint>

namespace kennel::report {

namespace {

constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD in UTF-8

// Length of the well-formed UTF-8 sequence of a non-ASCII lead byte at
// text[at], or 0 when it is malformed (overlong, surrogate, beyond U+10FFFF,
// truncated) or a noncharacter XML forbids (U+FFFE, U+FFFF).
size_t valid_utf8_sequence_length(std::string_view text, size_t at) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[at + i]); };
  const auto continuation = [&](size_t i) {
    return at + i < text.size() && (byte(i) & 0xC0) == 0x80;
  };
  const uint8_t lead = byte(0);
  if (lead >= 0xC2 && lead <= 0xDF) return continuation(1) ? 2 : 0;
  if (lead >= 0xE0 && lead <= 0xEF) {
    if (!continuation(1) || !continuation(2)) return 0;
    if (lead == 0xE0 && byte(1) < 0xA0) return 0;  // overlong
    if (lead == 0xED && byte(1) > 0x9F) return 0;  // UTF-16 surrogate
    if (lead == 0xEF && byte(1) == 0xBF && (byte(2) == 0xBE || byte(2) == 0xBF)) return 0;
    return 3;
  }
  if (lead >= 0xF0 && lead <= 0xF4) {
    if (!continuation(1) || !continuation(2) || !continuation(3)) return 0;
    if (lead == 0xF0 && byte(1) < 0x90) return 0;  // overlong
    if (lead == 0xF4 && byte(1) > 0x8F) return 0;  // beyond U+10FFFF
    return 4;
  }
  return 0;
}

bool reads_as_number(std::string_view cell) {
  if (cell.empty()) return false;
  double value = 0;
  const char* end = cell.data() + cell.size();
  const auto [ptr, error] = std::from_chars(cell.data(), end, value);
  return error == std::errc() && ptr == end;
}

// Small on purpose: a report should read well printed and on a phone, and
// everything here must stay inside the one file.
constexpr std::string_view kStylesheet = R"css(
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 14px;
       color: #222; margin: 24px auto; max-width: 1320px; padding: 0 16px; line-height: 1.4; }
h1 { font-size: 22px; margin: 0 0 16px; }
h2 { font-size: 17px; margin: 28px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #ddd; }
h3 { font-size: 14px; margin: 16px 0 6px; }
p.note { color: #666; }
dl.summary { display: grid; grid-template-columns: max-content auto; gap: 4px 16px; margin: 0; }
dl.summary dt { font-weight: 600; color: #555; }
dl.summary dd { margin: 0; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; font-weight: 600; }
tbody tr:nth-child(even) { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
div.charts { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
div.charts > svg, svg.chart { max-width: 100%; height: auto; border: 1px solid #eee; background: #fff; }
)css";

}  // namespace

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  size_t at = 0;
  while (at < text.size()) {
    const auto c = static_cast<unsigned char>(text[at]);
    if (c >= 0x80) {
      const size_t length = valid_utf8_sequence_length(text, at);
      if (length == 0) {
        out += kReplacementCharacter;
        ++at;
      } else {
        out.append(text.substr(at, length));
        at += length;
      }
      continue;
    }
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      case '\t':
      case '\n':
      case '\r':
        out += static_cast<char>(c);
        break;
      default:
        if (c < 0x20) {
          out += kReplacementCharacter;
        } else {
          out += static_cast<char>(c);
        }
    }
    ++at;
  }
  return out;
}

std::string html_table(const std::vector<std::string>& header,
                       const std::vector<std::vector<std::string>>& rows) {
  std::string out = "<table>\n<thead><tr>";
  for (const auto& name : header) out += "<th>" + html_escape(name) + "</th>";
  out += "</tr></thead>\n<tbody>\n";
  for (const auto& row : rows) {
    out += "<tr>";
    const size_t cells = std::max(row.size(), header.size());
    for (size_t i = 0; i < cells; ++i) {
      const std::string_view cell = i < row.size() ? std::string_view(row[i]) : std::string_view();
      out += reads_as_number(cell) ? "<td class=\"num\">" : "<td>";
      out += html_escape(cell);
      out += "</td>";
    }
    out += "</tr>\n";
  }
  out += "</tbody>\n</table>\n";
  return out;
}

std::string html_page(std::string_view title, std::string_view body_html) {
  const std::string escaped_title = html_escape(title);
  std::string out;
  out.reserve(body_html.size() + kStylesheet.size() + 512);
  out += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  out += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  out += "<meta name=\"generator\" content=\"kennel\">\n";
  out += "<title>" + escaped_title + "</title>\n<style>";
  out += kStylesheet;
  out += "</style>\n</head>\n<body>\n<h1>" + escaped_title + "</h1>\n";
  out += body_html;
  out += "\n</body>\n</html>\n";
  return out;
}

}  // namespace kennel::report

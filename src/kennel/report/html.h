// HTML building blocks for Kennel's self-contained reports: text escaping,
// tables, and a complete HTML5 page with its stylesheet embedded, so a report
// is one file that opens offline (no network, no script libraries).
// The report module owns presentation only; it reads JSON and returns text,
// and writing the file (atomically) is the caller's job. No torch here.
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kennel::report {

// Escapes & < > " ' so the result is safe as element text and inside quoted
// attributes, in HTML and in XML (SVG). Characters XML 1.0 forbids even when
// escaped (control characters other than tab/newline/CR, U+FFFE/U+FFFF) and
// bytes that are not valid UTF-8 become U+FFFD, so the output always parses.
std::string html_escape(std::string_view text);

// A <table> with a header row. Every cell is escaped; rows shorter than the
// header are padded with empty cells. Cells that read as numbers get
// class="num" (right-aligned by html_page's stylesheet).
std::string html_table(const std::vector<std::string>& header,
                       const std::vector<std::vector<std::string>>& rows);

// A complete HTML5 document: <title> and <h1> from `title` (escaped), then
// `body_html` as given (trusted markup: build it from the escaped pieces of
// this module). The stylesheet styles tables, headings, <dl class="summary">
// key/value lists, and <div class="charts"> rows that lay charts side by side
// and wrap on narrow screens.
std::string html_page(std::string_view title, std::string_view body_html);

}  // namespace kennel::report

// Small text helpers shared by parsers of headers, config files and URLs.
// ASCII only and locale-independent on purpose: protocol names, header names,
// hosts and config keys are ASCII, and a user's locale must not change them.
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>

namespace kennel {

// `text` with A-Z turned into a-z; every other byte unchanged.
std::string ascii_lower(std::string_view text);

}  // namespace kennel

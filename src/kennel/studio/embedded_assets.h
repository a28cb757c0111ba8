// The web assets compiled into the binary (cmake/embed_assets.cmake generates
// the definition at build time from src/kennel/studio/assets/ and the pinned
// chart library that scripts/studio.sh installs), so Studio serves every byte
// of its pages itself, offline. Thread-safety: immutable data.
#pragma once

#include <span>
#include <string_view>

namespace kennel::studio {

struct EmbeddedAsset {
  std::string_view path;  // the URL path it is served at, e.g. "/assets/app.js"
  std::string_view content_type;
  std::string_view body;
  std::string_view etag;  // quoted, as the ETag header wants it
};

std::span<const EmbeddedAsset> embedded_assets();

}  // namespace kennel::studio

// Shared by the libFuzzer targets in this folder (built by scripts/fuzz.sh,
// not by CMake): decode a byte string and check what Kennel promises about
// the result. Errors are fine; a broken promise aborts, which libFuzzer
// reports as a crash with a reproducer.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string_view>

#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>

#include "kennel/data/decode.h"
#include "kennel/data/image_header.h"
#include "kennel/util/status.h"

namespace kennel::fuzz {

// What the serving path uses: a 4-megapixel bomb limit and a reduced JPEG
// decode that keeps the shorter side >= 32.
inline constexpr int64_t kMaxPixels = 4'000'000;

[[noreturn]] inline void fail(const char* what, const std::string& detail = "") {
  std::fprintf(stderr, "FUZZ INVARIANT BROKEN: %s %s\n", what, detail.c_str());
  std::abort();
}

inline void silence_opencv() { cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT); }

inline std::span<const uint8_t> as_bytes(std::string_view text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

// Decodes `bytes` and checks the result against decode.h's contract.
inline void check_decode(std::span<const uint8_t> bytes, const data::DecodeOptions& options) {
  const auto probed = data::probe_image_header(bytes);
  auto decoded = data::decode_image(bytes, options);
  if (!decoded.ok()) {
    const Status& status = decoded.status();
    const ErrorCode code = status.code();
    if (code != ErrorCode::kInvalidArgument && code != ErrorCode::kResourceExhausted &&
        code != ErrorCode::kDataLoss) {
      fail("decode_image returned an undocumented code:", status.to_string());
    }
    if (status.message().empty()) fail("decode_image error without a message");
    if (!probed && !bytes.empty() && code != ErrorCode::kInvalidArgument) {
      fail("unrecognised bytes should be 'not an image':", status.to_string());
    }
    (void)http_status_for(code);
    return;
  }
  if (!probed) fail("decode_image succeeded on bytes with no known signature");
  const data::DecodedImage& image = *decoded;
  if (image.rgb.empty() || image.rgb.type() != CV_8UC3) fail("decoded image is not non-empty CV_8UC3");
  if (image.reduction != 1 && image.reduction != 2 && image.reduction != 4 && image.reduction != 8) {
    fail("bad reduction");
  }
  if (image.header.truncated) fail("decoded an image whose header says it is truncated");
  // The bomb guard: nothing bigger than max_pixels may have been decoded.
  if (options.max_pixels > 0 && static_cast<int64_t>(image.rgb.total()) > options.max_pixels) {
    fail("decompression-bomb guard bypassed:",
         std::to_string(image.rgb.cols) + "x" + std::to_string(image.rgb.rows) + " decoded, header said " +
             std::to_string(image.header.width) + "x" + std::to_string(image.header.height));
  }
  (void)data::image_format_name(image.header.format);
  (void)data::color_model_name(image.header.color_model);
}

inline data::DecodeOptions serving_options() {
  data::DecodeOptions options;
  options.max_pixels = kMaxPixels;
  options.min_short_side = 32;
  return options;
}

}  // namespace kennel::fuzz

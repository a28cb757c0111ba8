// Image decoding: bytes in, 8-bit RGB cv::Mat out.
//
// Every decode first probes the header (image_header.h) so that a
// decompression bomb is refused before any pixel memory is allocated, and a
// truncated JPEG/PNG is reported as such instead of decoding to grey.
// JPEGs decode at a reduced DCT scale (1/2, 1/4, 1/8) when the result still
// covers `min_short_side`, which is several times faster for large photos.
// EXIF orientation is applied. Thread-safety: pure, safe from any thread.
#pragma once

#include <cstdint>
#include <span>

#include <opencv2/core.hpp>

#include "kennel/data/image_header.h"
#include "kennel/util/status.h"

namespace kennel::data {

// Bump when a change to decoding changes the pixels of some image (a new
// reduced-scale rule, orientation handling, colour conversion): cached
// features computed from the old pixels are then no longer used.
inline constexpr int kDecodeVersion = 1;

struct DecodeOptions {
  // Refuse images whose header claims more pixels than this (PIL's default
  // bomb limit is ~89.5 M; a 50000x50000 header is 2.5 G). 0 disables.
  int64_t max_pixels = 89'478'485;
  // 0: decode at full size. Otherwise the decoded image's shorter side is at
  // least this (used to pick a reduced JPEG scale).
  int min_short_side = 0;
  bool apply_exif_orientation = true;
};

struct DecodedImage {
  cv::Mat rgb;         // CV_8UC3, RGB order
  ImageHeader header;  // what the file says about itself (size before any reduction)
  int reduction = 1;   // 1, 2, 4 or 8: the DCT scale used
};

// Errors: kInvalidArgument "not an image" (unknown signature), kResourceExhausted
// (over max_pixels), kDataLoss (truncated or the decoder failed).
Result<DecodedImage> decode_image(std::span<const uint8_t> bytes, const DecodeOptions& options);

}  // namespace kennel::data

// Image header probing: format, size and colour model read from the first
// bytes of a file, without decoding pixels. This is what lets Kennel refuse
// a decompression bomb before allocating for it, tell grayscale, CMYK and
// alpha images apart, and notice a JPEG or PNG whose end is missing.
// Formats: JPEG, PNG, BMP, WebP, TIFF. Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace kennel::data {

enum class ImageFormat { kJpeg, kPng, kBmp, kWebp, kTiff };
const char* image_format_name(ImageFormat format);

enum class ColorModel { kUnknown, kGray, kGrayAlpha, kRgb, kRgba, kPalette, kPaletteAlpha, kCmyk };
const char* color_model_name(ColorModel model);

struct ImageHeader {
  ImageFormat format = ImageFormat::kJpeg;
  int64_t width = 0;   // 0 when the header does not say (e.g. an odd TIFF)
  int64_t height = 0;
  ColorModel color_model = ColorModel::kUnknown;
  bool truncated = false;      // JPEG without its end-of-image marker, PNG without IEND
  int exif_orientation = 1;    // 1..8, JPEG only
  bool progressive = false;    // progressive JPEG (no reduced decode speed-up)

  // width x height as the header claims it. PNG and TIFF sizes are 32-bit
  // fields, so the product can reach ~1.8e19: past int64_t (signed overflow,
  // which made a 4Gx4G header look small), never past uint64_t.
  uint64_t pixel_count() const {
    if (width <= 0 || height <= 0) return 0;
    return static_cast<uint64_t>(width) * static_cast<uint64_t>(height);
  }

  bool is_grayscale() const {
    return color_model == ColorModel::kGray || color_model == ColorModel::kGrayAlpha;
  }
  bool has_alpha() const {
    return color_model == ColorModel::kRgba || color_model == ColorModel::kGrayAlpha ||
           color_model == ColorModel::kPaletteAlpha;
  }
};

// std::nullopt when the bytes start with no known image signature.
std::optional<ImageHeader> probe_image_header(std::span<const uint8_t> bytes);

// Recognised file extensions (case-insensitive): jpg jpeg png bmp webp tif tiff.
bool has_image_extension(const std::string& filename);

}  // namespace kennel::data

// The colour adjustments torchvision's ColorJitter applies to PIL images
// (torchvision/transforms/functional_pil.py -> PIL.ImageEnhance, Image.blend,
// and PIL's RGB<->HSV conversions), reproduced with Pillow's integer and
// float arithmetic so the results match PIL's exactly, not just closely.
// Internal to transforms.cpp and its tests; inputs are CV_8UC3 RGB images and
// every function returns a new image. Thread-safety: pure.
#pragma once

#include <cstdint>

#include <opencv2/core.hpp>

namespace kennel::data::detail {

// PIL's RGB -> L: ITU-R 601-2 luma in 16-bit fixed point with rounding
// ((r*19595 + g*38470 + b*7471 + 0x8000) >> 16), the formula Pillow's
// convert("L") actually uses; the documented R*299/1000 + ... truncates and
// differs for about one colour in three.
inline uint8_t pil_luma(uint8_t r, uint8_t g, uint8_t b) {
  return static_cast<uint8_t>((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);
}

// ImageEnhance.Brightness(img).enhance(factor): blend with black.
cv::Mat adjust_brightness(const cv::Mat& rgb, double factor);
// ImageEnhance.Contrast: blend with the image's mean luma, rounded to an integer.
cv::Mat adjust_contrast(const cv::Mat& rgb, double factor);
// ImageEnhance.Color: blend with the image's own luma.
cv::Mat adjust_saturation(const cv::Mat& rgb, double factor);
// torchvision's adjust_hue on PIL images: convert to PIL's 8-bit HSV, add
// uint8(hue_factor * 255) to H with wrap-around, convert back.
cv::Mat adjust_hue(const cv::Mat& rgb, double hue_factor);

}  // namespace kennel::data::detail

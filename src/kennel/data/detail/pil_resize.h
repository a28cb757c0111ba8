// PIL's antialiased bilinear resampling (Pillow's ImagingResample for 8-bit
// images, src/libImaging/Resample.c) reproduced bit for bit on CV_8UC3 images.
//
// Pillow resamples separably, horizontal pass first. Each output index gets a
// window of input indices weighted by a triangle filter whose support is
// stretched by the downscale factor (that is the antialiasing); the weights are
// normalised, converted to fixed point with kPrecisionBits fractional bits, and
// the horizontal result is rounded and clipped to uint8 before the vertical
// pass. Doing exactly the same makes Kennel's eval transform equal to
// torchvision's on PIL images, not merely close.
// Internal to transforms.cpp; the public entry point is
// resize_bilinear_antialiased() in transforms.h.
#pragma once

#include <cstdint>
#include <vector>

#include <opencv2/core.hpp>

namespace kennel::data::detail {

// 8 bits for the result plus 2 spare bits for overflow, as in Pillow.
inline constexpr int kPrecisionBits = 32 - 8 - 2;

// The windows of one axis for the output indices [out_begin, out_end).
struct ResampleAxis {
  int ksize = 0;                 // stride of `weights`: Pillow's ceil(support) * 2 + 1
  std::vector<int> first;        // first input index of each window
  std::vector<int> count;        // taps in each window (<= ksize)
  std::vector<int32_t> weights;  // (out_end - out_begin) * ksize fixed-point weights
};

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter.
ResampleAxis bilinear_axis(int in_size, int out_size, int out_begin, int out_end);

// Resizes `rgb` (CV_8UC3, any row stride, e.g. an ROI) to out_width x
// out_height and returns only the part `roi` of that result. Computing a
// sub-rectangle gives the same pixels as resizing everything and cropping,
// because each output pixel depends only on its own windows.
cv::Mat resample_bilinear(const cv::Mat& rgb, int out_width, int out_height, const cv::Rect& roi);

}  // namespace kennel::data::detail

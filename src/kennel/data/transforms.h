// Image transforms with torchvision's semantics, on 8-bit RGB cv::Mat images
// (HxWx3, CV_8UC3, RGB order), plus the final normalise-and-pack step that
// writes floats straight into a batch tensor's memory.
//
// Resizing follows PIL's antialiased bilinear filter (what torchvision's
// Resize does on PIL images, i.e. the classic ImageFolder pipeline), so the
// eval transform matches torchvision within rounding; see
// tests/parity/test_transform_parity.py and docs/data.md for the tolerance.
// Randomness comes only from the caller's Rng, so a sample's augmentation is
// a function of (seed, epoch, sample) whatever thread runs it.
// Thread-safety: all functions are pure apart from the Rng they are given.
#pragma once

#include <array>
#include <cstdint>
#include <random>

#include <opencv2/core.hpp>

#include "kennel/util/status.h"

namespace kennel::data {

using Rng = std::mt19937_64;

// Bump when a change to a transform (resize filter, crop rounding, packing)
// changes its output for some image: it keys the feature cache.
inline constexpr int kTransformVersion = 1;

inline constexpr std::array<float, 3> kImageNetMean = {0.485f, 0.456f, 0.406f};
inline constexpr std::array<float, 3> kImageNetStd = {0.229f, 0.224f, 0.225f};

// Resizes so that the shorter side becomes `size` (torchvision Resize(int)):
// the longer side is int(size * long / short), truncated like torchvision.
cv::Mat resize_shorter_side(const cv::Mat& rgb, int size);
// Resizes to exactly width x height with PIL's antialiased bilinear filter.
cv::Mat resize_bilinear_antialiased(const cv::Mat& rgb, int width, int height);
// torchvision CenterCrop: offsets round((dim - crop) / 2) with round-half-to-even;
// pads with zeros when the image is smaller than the crop, as torchvision does.
cv::Mat center_crop(const cv::Mat& rgb, int height, int width);

struct RandomResizedCropParams {
  std::array<double, 2> scale = {0.08, 1.0};
  std::array<double, 2> ratio = {3.0 / 4.0, 4.0 / 3.0};
};
// torchvision RandomResizedCrop.get_params (10 attempts, then the central
// fallback), then a resize of the crop to size x size.
cv::Mat random_resized_crop(const cv::Mat& rgb, int size, const RandomResizedCropParams& params,
                            Rng& rng);

cv::Mat horizontal_flip(const cv::Mat& rgb);

struct ColorJitterParams {
  float brightness = 0;  // factor drawn from [max(0, 1-b), 1+b]
  float contrast = 0;    // likewise, blended with the mean grey level
  float saturation = 0;  // likewise, blended with the greyscale image
  float hue = 0;         // shift drawn from [-h, h], h <= 0.5
  bool enabled() const { return brightness > 0 || contrast > 0 || saturation > 0 || hue > 0; }
};
// torchvision ColorJitter: the four adjustments in a random order.
cv::Mat color_jitter(const cv::Mat& rgb, const ColorJitterParams& params, Rng& rng);

enum class PixelLayout {
  kChw,  // planar, NCHW batches (contiguous)
  kHwc,  // interleaved, NHWC memory = channels-last NCHW batches
};
// Writes (pixel / 255 - mean) / std for every pixel of `rgb` into `out`
// (rgb.rows * rgb.cols * 3 floats) in the given layout.
void normalize_into(const cv::Mat& rgb, const std::array<float, 3>& mean,
                    const std::array<float, 3>& std, PixelLayout layout, float* out);

// The whole per-sample pipeline, resolved once from a spec.
struct TransformSpec {
  int resize = 256;       // shorter side before the center crop (eval path)
  int crop = 224;         // output is crop x crop
  bool augment = false;   // train-time: random resized crop + flip + jitter instead of resize+crop
  RandomResizedCropParams random_crop;
  float hflip_probability = 0.5f;
  ColorJitterParams jitter;
  std::array<float, 3> mean = kImageNetMean;
  std::array<float, 3> std = kImageNetStd;

  // Rejects out-of-range fields, naming them (e.g. "crop must be > 0, got -1").
  Status validate() const;
};

class ImagePipeline {
 public:
  explicit ImagePipeline(TransformSpec spec);  // throws kennel::Error if spec is invalid

  const TransformSpec& spec() const { return spec_; }
  int output_size() const { return spec_.crop; }
  // The shorter side the decoder must deliver at least (lets JPEG decode at reduced scale).
  int min_decode_short_side() const;
  // Transforms `rgb` and writes crop*crop*3 normalised floats into `out`.
  void apply(const cv::Mat& rgb, Rng& rng, PixelLayout layout, float* out) const;
  // The transformed 8-bit image, before normalisation (previews, tests).
  cv::Mat transform_image(const cv::Mat& rgb, Rng& rng) const;

 private:
  TransformSpec spec_;
};

}  // namespace kennel::data

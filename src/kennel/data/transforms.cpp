#include "kennel/data/transforms.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <utility>

#include <fmt/format.h>

#include "kennel/data/detail/pil_color.h"
#include "kennel/data/detail/pil_resize.h"

namespace kennel::data {
namespace {

void check_rgb(const cv::Mat& rgb, const char* function) {
  if (rgb.empty() || rgb.type() != CV_8UC3) {
    throw Error(
        invalid_argument("{}: expected a non-empty 8-bit RGB image (CV_8UC3), got {}x{} of type {}",
                         function, rgb.cols, rgb.rows, rgb.type()));
  }
}

void check_size(int value, const char* function, const char* name) {
  if (value <= 0) {
    throw Error(invalid_argument("{}: {} must be > 0, got {}", function, name, value));
  }
}

// Python's round(): half to even, which is what std::nearbyint does in the
// default rounding mode.
int round_half_even(double value) {
  return static_cast<int>(std::nearbyint(value));
}

// Random draws written out rather than taken from std::uniform_*_distribution,
// whose algorithms differ between standard libraries: a sample's augmentation
// must be the same function of the seed everywhere.
double uniform01(Rng& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

double uniform(Rng& rng, double low, double high) {
  return low + (high - low) * uniform01(rng);
}

// Uniform in [low, high] (inclusive, like torch.randint(low, high + 1)). The
// modulo's bias is below 2^-32 for any image dimension.
int uniform_int(Rng& rng, int low, int high) {
  const uint64_t span = static_cast<uint64_t>(high - low) + 1;
  return low + static_cast<int>(rng() % span);
}

// torchvision's _compute_resized_output_size for Resize(int): the shorter
// side becomes `size`, the longer int(size * long / short), truncated.
cv::Size shorter_side_size(const cv::Size& in, int size) {
  const int short_side = std::min(in.width, in.height);
  const int long_side = std::max(in.width, in.height);
  const int new_long =
      static_cast<int>(static_cast<double>(static_cast<int64_t>(size) * long_side) / short_side);
  return in.width <= in.height ? cv::Size(size, new_long) : cv::Size(new_long, size);
}

// torchvision's CenterCrop offsets for an image at least as large as the crop.
cv::Rect center_rect(const cv::Size& image, int height, int width) {
  return {round_half_even((image.width - width) / 2.0),
          round_half_even((image.height - height) / 2.0), width, height};
}

// RandomResizedCrop.get_params: top, left, height, width of the crop.
cv::Rect random_crop_rect(const cv::Size& image, const RandomResizedCropParams& params, Rng& rng) {
  const int height = image.height;
  const int width = image.width;
  const double area = static_cast<double>(height) * width;
  const double log_ratio_low = std::log(params.ratio[0]);
  const double log_ratio_high = std::log(params.ratio[1]);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * uniform(rng, params.scale[0], params.scale[1]);
    const double aspect_ratio = std::exp(uniform(rng, log_ratio_low, log_ratio_high));
    // Compared as doubles so that an extreme ratio cannot overflow the int.
    const double w = std::nearbyint(std::sqrt(target_area * aspect_ratio));
    const double h = std::nearbyint(std::sqrt(target_area / aspect_ratio));
    if (0 < w && w <= width && 0 < h && h <= height) {
      const int top = uniform_int(rng, 0, height - static_cast<int>(h));
      const int left = uniform_int(rng, 0, width - static_cast<int>(w));
      return {left, top, static_cast<int>(w), static_cast<int>(h)};
    }
  }
  // Fallback: the whole image, cut to the nearest allowed aspect ratio.
  const double in_ratio = static_cast<double>(width) / height;
  const double min_ratio = std::min(params.ratio[0], params.ratio[1]);
  const double max_ratio = std::max(params.ratio[0], params.ratio[1]);
  int w = width;
  int h = height;
  if (in_ratio < min_ratio) {
    h = round_half_even(w / min_ratio);
  } else if (in_ratio > max_ratio) {
    w = round_half_even(h * max_ratio);
  }
  // torchvision would fail on the empty crop a very thin image gives here.
  w = std::max(w, 1);
  h = std::max(h, 1);
  return {(width - w) / 2, (height - h) / 2, w, h};
}

// Eval path: resize_shorter_side then center_crop, computing only the pixels
// the crop keeps (each output pixel of the resize depends only on its own
// filter windows, so the result is identical).
cv::Mat resize_and_center_crop(const cv::Mat& rgb, int resize, int crop) {
  const cv::Size resized = shorter_side_size(rgb.size(), resize);
  if (resized.width < crop || resized.height < crop) {
    return center_crop(resize_shorter_side(rgb, resize), crop, crop);
  }
  const cv::Rect roi = center_rect(resized, crop, crop);
  if (resized == rgb.size()) return rgb(roi).clone();
  return detail::resample_bilinear(rgb, resized.width, resized.height, roi);
}

Status check_pair(const std::array<double, 2>& pair, const char* name, double upper) {
  if (!(pair[0] > 0 && pair[0] <= pair[1] && pair[1] <= upper && std::isfinite(pair[1]))) {
    if (std::isinf(upper)) {
      return invalid_argument("{} must satisfy 0 < min <= max, got [{}, {}]", name, pair[0],
                              pair[1]);
    }
    return invalid_argument("{} must satisfy 0 < min <= max <= {}, got [{}, {}]", name, upper,
                            pair[0], pair[1]);
  }
  return {};
}

}  // namespace

cv::Mat resize_shorter_side(const cv::Mat& rgb, int size) {
  check_rgb(rgb, "resize_shorter_side");
  check_size(size, "resize_shorter_side", "size");
  const cv::Size resized = shorter_side_size(rgb.size(), size);
  // torchvision returns the image itself when nothing changes.
  if (resized == rgb.size()) return rgb;
  return resize_bilinear_antialiased(rgb, resized.width, resized.height);
}

cv::Mat resize_bilinear_antialiased(const cv::Mat& rgb, int width, int height) {
  check_rgb(rgb, "resize_bilinear_antialiased");
  check_size(width, "resize_bilinear_antialiased", "width");
  check_size(height, "resize_bilinear_antialiased", "height");
  if (width == rgb.cols && height == rgb.rows) return rgb.clone();  // PIL returns a copy
  return detail::resample_bilinear(rgb, width, height, cv::Rect(0, 0, width, height));
}

cv::Mat center_crop(const cv::Mat& rgb, int height, int width) {
  check_rgb(rgb, "center_crop");
  check_size(height, "center_crop", "height");
  check_size(width, "center_crop", "width");
  cv::Mat image = rgb;
  if (width > image.cols || height > image.rows) {
    // torchvision pads the short dimension(s) with zeros, the odd pixel going
    // to the right/bottom, then crops as usual.
    const int pad_x = std::max(width - image.cols, 0);
    const int pad_y = std::max(height - image.rows, 0);
    cv::Mat padded;
    cv::copyMakeBorder(image, padded, pad_y / 2, (pad_y + 1) / 2, pad_x / 2, (pad_x + 1) / 2,
                       cv::BORDER_CONSTANT, cv::Scalar::all(0));
    if (padded.cols == width && padded.rows == height) return padded;
    image = padded;
  }
  return image(center_rect(image.size(), height, width)).clone();
}

cv::Mat random_resized_crop(const cv::Mat& rgb, int size, const RandomResizedCropParams& params,
                            Rng& rng) {
  check_rgb(rgb, "random_resized_crop");
  check_size(size, "random_resized_crop", "size");
  const cv::Rect rect = random_crop_rect(rgb.size(), params, rng);
  return resize_bilinear_antialiased(rgb(rect), size, size);
}

cv::Mat horizontal_flip(const cv::Mat& rgb) {
  check_rgb(rgb, "horizontal_flip");
  cv::Mat flipped;
  cv::flip(rgb, flipped, 1);
  return flipped;
}

cv::Mat color_jitter(const cv::Mat& rgb, const ColorJitterParams& params, Rng& rng) {
  check_rgb(rgb, "color_jitter");
  // ColorJitter.get_params: a random order of the four adjustments, then the
  // factors of the enabled ones, in this order.
  std::array<int, 4> order = {0, 1, 2, 3};
  for (int i = 3; i > 0; --i) std::swap(order[i], order[uniform_int(rng, 0, i)]);
  auto draw_factor = [&rng](float spread) -> std::optional<double> {
    if (!(spread > 0)) return std::nullopt;
    return uniform(rng, std::max(0.0, 1.0 - spread), 1.0 + spread);
  };
  const std::optional<double> brightness = draw_factor(params.brightness);
  const std::optional<double> contrast = draw_factor(params.contrast);
  const std::optional<double> saturation = draw_factor(params.saturation);
  std::optional<double> hue;
  if (params.hue > 0) hue = uniform(rng, -params.hue, params.hue);

  cv::Mat image = rgb.clone();
  for (int function : order) {
    if (function == 0 && brightness) image = detail::adjust_brightness(image, *brightness);
    if (function == 1 && contrast) image = detail::adjust_contrast(image, *contrast);
    if (function == 2 && saturation) image = detail::adjust_saturation(image, *saturation);
    if (function == 3 && hue) image = detail::adjust_hue(image, *hue);
  }
  return image;
}

void normalize_into(const cv::Mat& rgb, const std::array<float, 3>& mean,
                    const std::array<float, 3>& std, PixelLayout layout, float* out) {
  check_rgb(rgb, "normalize_into");
  // ToTensor + Normalize compute (p / 255 - mean) / std in float32, in this
  // order; the table holds exactly those values, so the output is bit-equal.
  std::array<std::array<float, 256>, 3> table;
  for (int c = 0; c < 3; ++c) {
    for (int p = 0; p < 256; ++p) table[c][p] = (static_cast<float>(p) / 255.0f - mean[c]) / std[c];
  }
  const int width = rgb.cols;
  const size_t plane = static_cast<size_t>(rgb.rows) * width;
  for (int y = 0; y < rgb.rows; ++y) {
    const uint8_t* src = rgb.ptr<uint8_t>(y);
    if (layout == PixelLayout::kHwc) {
      float* dst = out + static_cast<size_t>(y) * width * 3;
      for (int x = 0; x < width; ++x) {
        dst[3 * x + 0] = table[0][src[3 * x + 0]];
        dst[3 * x + 1] = table[1][src[3 * x + 1]];
        dst[3 * x + 2] = table[2][src[3 * x + 2]];
      }
    } else {
      float* red = out + static_cast<size_t>(y) * width;
      float* green = red + plane;
      float* blue = green + plane;
      for (int x = 0; x < width; ++x) {
        red[x] = table[0][src[3 * x + 0]];
        green[x] = table[1][src[3 * x + 1]];
        blue[x] = table[2][src[3 * x + 2]];
      }
    }
  }
}

Status TransformSpec::validate() const {
  if (crop <= 0) return invalid_argument("crop must be > 0, got {}", crop);
  if (resize <= 0) return invalid_argument("resize must be > 0, got {}", resize);
  if (!augment && resize < crop) {
    return invalid_argument(
        "resize must be >= crop ({}) when augment is off (the center crop would pad with black), "
        "got {}",
        crop, resize);
  }
  KENNEL_RETURN_IF_ERROR(check_pair(random_crop.scale, "random_crop.scale", 1.0));
  KENNEL_RETURN_IF_ERROR(
      check_pair(random_crop.ratio, "random_crop.ratio", std::numeric_limits<double>::infinity()));
  if (!(hflip_probability >= 0 && hflip_probability <= 1)) {
    return invalid_argument("hflip_probability must be in [0, 1], got {}", hflip_probability);
  }
  const std::pair<const char*, float> spreads[] = {{"jitter.brightness", jitter.brightness},
                                                   {"jitter.contrast", jitter.contrast},
                                                   {"jitter.saturation", jitter.saturation}};
  for (const auto& [name, value] : spreads) {
    if (!(value >= 0 && std::isfinite(value))) {
      return invalid_argument("{} must be >= 0, got {}", name, value);
    }
  }
  if (!(jitter.hue >= 0 && jitter.hue <= 0.5f)) {
    return invalid_argument("jitter.hue must be in [0, 0.5], got {}", jitter.hue);
  }
  for (int c = 0; c < 3; ++c) {
    if (!std::isfinite(mean[c])) {
      return invalid_argument("mean[{}] must be finite, got {}", c, mean[c]);
    }
    if (!(std[c] > 0 && std::isfinite(std[c]))) {
      return invalid_argument("std[{}] must be > 0, got {}", c, std[c]);
    }
  }
  return {};
}

ImagePipeline::ImagePipeline(TransformSpec spec) : spec_(spec) {
  const Status status = spec_.validate();
  if (!status.ok()) throw Error(status.with_context("invalid transform spec"));
}

int ImagePipeline::min_decode_short_side() const {
  // The random crop may take the whole image and then resizes it to `crop`;
  // decoding smaller than that would only lose detail.
  return spec_.augment ? spec_.crop : spec_.resize;
}

cv::Mat ImagePipeline::transform_image(const cv::Mat& rgb, Rng& rng) const {
  check_rgb(rgb, "ImagePipeline::transform_image");
  if (!spec_.augment) return resize_and_center_crop(rgb, spec_.resize, spec_.crop);
  cv::Mat image = random_resized_crop(rgb, spec_.crop, spec_.random_crop, rng);
  // Drawn even when the probability is 0 or 1, so that the rest of the
  // sample's random stream does not depend on it.
  if (uniform01(rng) < spec_.hflip_probability) image = horizontal_flip(image);
  if (spec_.jitter.enabled()) image = color_jitter(image, spec_.jitter, rng);
  return image;
}

void ImagePipeline::apply(const cv::Mat& rgb, Rng& rng, PixelLayout layout, float* out) const {
  normalize_into(transform_image(rgb, rng), spec_.mean, spec_.std, layout, out);
}

}  // namespace kennel::data

#include "kennel/data/detail/pil_color.h"

#include <algorithm>
#include <array>
#include <cmath>

namespace kennel::data::detail {
namespace {

// Pillow's ImagingBlend(degenerate, image, alpha) for one value: alpha is a C
// float and the result is truncated. Pillow clips only when extrapolating
// (alpha outside [0, 1]); interpolated values never leave [0, 255], so one
// clamp serves both cases.
inline uint8_t blend(int degenerate, int value, float alpha) {
  const float mixed =
      static_cast<float>(degenerate) + alpha * static_cast<float>(value - degenerate);
  return static_cast<uint8_t>(std::clamp(mixed, 0.0f, 255.0f));
}

// The blend of every 8-bit value with a constant degenerate value.
std::array<uint8_t, 256> blend_table(int degenerate, float alpha) {
  std::array<uint8_t, 256> table;
  for (int value = 0; value < 256; ++value) table[value] = blend(degenerate, value, alpha);
  return table;
}

cv::Mat apply_table(const cv::Mat& rgb, const std::array<uint8_t, 256>& table) {
  cv::Mat out;
  cv::LUT(rgb, cv::Mat(1, 256, CV_8U, const_cast<uint8_t*>(table.data())), out);
  return out;
}

// Pillow's CLIP8 macro.
inline uint8_t clip8(int value) {
  return static_cast<uint8_t>(value <= 0 ? 0 : (value < 256 ? value : 255));
}

// C's round() (half away from zero) for x >= 0, inline: the libm call was a
// third of adjust_hue's time. x - n is exact, so this equals round(x).
inline int round_nonnegative(double x) {
  const int n = static_cast<int>(x);
  return x - n >= 0.5 ? n + 1 : n;
}

// Pillow's rgb2hsv_row (Convert.c). The mix of float variables and double
// literals is deliberate: it is what Pillow computes, rounding included.
inline void rgb_to_hsv(const uint8_t* rgb, uint8_t* hsv) {
  const uint8_t r = rgb[0], g = rgb[1], b = rgb[2];
  const uint8_t maxc = std::max({r, g, b});
  const uint8_t minc = std::min({r, g, b});
  hsv[2] = maxc;
  if (minc == maxc) {
    hsv[0] = 0;
    hsv[1] = 0;
    return;
  }
  const float cr = static_cast<float>(maxc - minc);
  const float s = cr / static_cast<float>(maxc);
  const float rc = static_cast<float>(maxc - r) / cr;
  const float gc = static_cast<float>(maxc - g) / cr;
  const float bc = static_cast<float>(maxc - b) / cr;
  float h;
  if (r == maxc) {
    h = bc - gc;
  } else if (g == maxc) {
    h = static_cast<float>(2.0 + rc - bc);
  } else {
    h = static_cast<float>(4.0 + gc - rc);
  }
  // fmod(h / 6.0 + 1.0, 1.0) with h in [-1, 5]: the argument lies in [5/6, 2),
  // where subtracting 1 is exact and is what fmod returns.
  const double turns = h / 6.0 + 1.0;
  h = static_cast<float>(turns >= 1.0 ? turns - 1.0 : turns);
  hsv[0] = clip8(static_cast<int>(h * 255.0));
  hsv[1] = clip8(static_cast<int>(s * 255.0));
}

// The per-byte parts of Pillow's hsv2rgb, computed once.
struct HsvTables {
  std::array<int, 256> sector;    // i = floor(h * 6 / 255)
  std::array<float, 256> offset;  // f, the position inside the sector
  std::array<float, 256> scale;   // fs = s / 255
  HsvTables() {
    for (int value = 0; value < 256; ++value) {
      const double position = static_cast<float>(value) * 6.0 / 255.0;
      sector[value] = static_cast<int>(std::floor(position));
      offset[value] = static_cast<float>(position - static_cast<float>(sector[value]));
      scale[value] = static_cast<float>(static_cast<float>(value) / 255.0);
    }
  }
};

// Pillow's hsv2rgb (Convert.c), same care with float and double.
inline void hsv_to_rgb(const HsvTables& tables, const uint8_t* hsv, uint8_t* rgb) {
  const uint8_t h = hsv[0], s = hsv[1], v = hsv[2];
  if (s == 0) {
    rgb[0] = rgb[1] = rgb[2] = v;
    return;
  }
  const int i = tables.sector[h];
  const float f = tables.offset[h];
  const float fs = tables.scale[s];
  const auto value = static_cast<float>(v);
  const uint8_t p = clip8(round_nonnegative(value * (1.0 - fs)));
  const uint8_t q = clip8(round_nonnegative(value * (1.0 - fs * f)));
  const uint8_t t = clip8(round_nonnegative(value * (1.0 - fs * (1.0 - f))));
  switch (i % 6) {
    case 0:
      rgb[0] = v, rgb[1] = t, rgb[2] = p;
      break;
    case 1:
      rgb[0] = q, rgb[1] = v, rgb[2] = p;
      break;
    case 2:
      rgb[0] = p, rgb[1] = v, rgb[2] = t;
      break;
    case 3:
      rgb[0] = p, rgb[1] = q, rgb[2] = v;
      break;
    case 4:
      rgb[0] = t, rgb[1] = p, rgb[2] = v;
      break;
    default:
      rgb[0] = v, rgb[1] = p, rgb[2] = q;
      break;
  }
}

// Applies `function(pixel_in, pixel_out)` to every pixel; rows may be strided.
template <typename Function>
cv::Mat map_pixels(const cv::Mat& rgb, Function function) {
  cv::Mat out(rgb.size(), CV_8UC3);
  for (int y = 0; y < rgb.rows; ++y) {
    const uint8_t* src = rgb.ptr<uint8_t>(y);
    uint8_t* dst = out.ptr<uint8_t>(y);
    for (int x = 0; x < rgb.cols; ++x) function(src + 3 * x, dst + 3 * x);
  }
  return out;
}

}  // namespace

cv::Mat adjust_brightness(const cv::Mat& rgb, double factor) {
  return apply_table(rgb, blend_table(0, static_cast<float>(factor)));
}

cv::Mat adjust_contrast(const cv::Mat& rgb, double factor) {
  // ImageStat's mean of the L image: an exact integer sum over a double count.
  uint64_t sum = 0;
  for (int y = 0; y < rgb.rows; ++y) {
    const uint8_t* row = rgb.ptr<uint8_t>(y);
    for (int x = 0; x < rgb.cols; ++x) sum += pil_luma(row[3 * x], row[3 * x + 1], row[3 * x + 2]);
  }
  const double count = static_cast<double>(rgb.rows) * rgb.cols;
  // NOLINTNEXTLINE(bugprone-incorrect-roundings): ImageEnhance's int(mean + 0.5), reproduced.
  const int mean = static_cast<int>(static_cast<double>(sum) / count + 0.5);
  return apply_table(rgb, blend_table(mean, static_cast<float>(factor)));
}

cv::Mat adjust_saturation(const cv::Mat& rgb, double factor) {
  // alpha * (value - grey) for every difference, so each value costs one
  // float addition; the products are the ones Pillow computes.
  const auto alpha = static_cast<float>(factor);
  std::array<float, 511> scaled_difference;
  for (int d = -255; d <= 255; ++d) scaled_difference[d + 255] = alpha * static_cast<float>(d);
  return map_pixels(rgb, [&scaled_difference](const uint8_t* in, uint8_t* out) {
    const int grey = pil_luma(in[0], in[1], in[2]);
    const auto base = static_cast<float>(grey);
    for (int c = 0; c < 3; ++c) {
      const float mixed = base + scaled_difference[in[c] - grey + 255];
      out[c] = static_cast<uint8_t>(std::clamp(mixed, 0.0f, 255.0f));
    }
  });
}

cv::Mat adjust_hue(const cv::Mat& rgb, double hue_factor) {
  // numpy's uint8(hue_factor * 255): truncate towards zero, then wrap mod 256.
  const auto shift = static_cast<uint8_t>(static_cast<int>(hue_factor * 255.0));
  static const HsvTables tables;
  return map_pixels(rgb, [shift](const uint8_t* in, uint8_t* out) {
    uint8_t hsv[3];
    rgb_to_hsv(in, hsv);
    hsv[0] = static_cast<uint8_t>(hsv[0] + shift);
    hsv_to_rgb(tables, hsv, out);
  });
}

}  // namespace kennel::data::detail

#include "kennel/data/decode.h"

#include <algorithm>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace kennel::data {

namespace {

// libjpeg scales by 1/2, 1/4, 1/8 rounding up; pick the largest reduction
// whose result still covers the requested shorter side.
int choose_jpeg_reduction(const ImageHeader& header, int min_short_side) {
  if (min_short_side <= 0 || header.width <= 0 || header.height <= 0) return 1;
  const int64_t short_side = std::min(header.width, header.height);
  for (int reduction : {8, 4, 2}) {
    if ((short_side + reduction - 1) / reduction >= min_short_side) return reduction;
  }
  return 1;
}

int imread_flags_for(int reduction) {
  int flags = cv::IMREAD_IGNORE_ORIENTATION;
  switch (reduction) {
    case 2: return flags | cv::IMREAD_REDUCED_COLOR_2;
    case 4: return flags | cv::IMREAD_REDUCED_COLOR_4;
    case 8: return flags | cv::IMREAD_REDUCED_COLOR_8;
    default: return flags | cv::IMREAD_COLOR;
  }
}

// EXIF orientation values 1..8 (TIFF 6.0 tag 274) to the transform that shows
// the image upright.
cv::Mat apply_orientation(cv::Mat image, int orientation) {
  cv::Mat out;
  switch (orientation) {
    case 2: cv::flip(image, out, 1); return out;
    case 3: cv::rotate(image, out, cv::ROTATE_180); return out;
    case 4: cv::flip(image, out, 0); return out;
    case 5: cv::transpose(image, out); return out;
    case 6: cv::rotate(image, out, cv::ROTATE_90_CLOCKWISE); return out;
    case 7:
      cv::transpose(image, out);
      cv::rotate(out, out, cv::ROTATE_180);
      return out;
    case 8: cv::rotate(image, out, cv::ROTATE_90_COUNTERCLOCKWISE); return out;
    default: return image;
  }
}

}  // namespace

Result<DecodedImage> decode_image(std::span<const uint8_t> bytes, const DecodeOptions& options) {
  if (bytes.empty()) return Status(ErrorCode::kDataLoss, "the file is empty (0 bytes)");
  const auto header = probe_image_header(bytes);
  if (!header) {
    return invalid_argument("not an image: no JPEG, PNG, BMP, WebP or TIFF signature");
  }
  const uint64_t pixels = header->pixel_count();
  if (options.max_pixels > 0 && pixels > static_cast<uint64_t>(options.max_pixels)) {
    return Status(ErrorCode::kResourceExhausted,
                  fmt::format("the header claims {}x{} = {} pixels, over the limit of {} "
                              "(raise --max-pixels if this image is genuine)",
                              header->width, header->height, pixels, options.max_pixels));
  }
  if (header->truncated) {
    return Status(ErrorCode::kDataLoss,
                  fmt::format("truncated {}: the end of the image data is missing",
                              image_format_name(header->format)));
  }
  const int reduction = header->format == ImageFormat::kJpeg
                            ? choose_jpeg_reduction(*header, options.min_short_side)
                            : 1;
  // cv::imdecode reads from a Mat header over our buffer: no copy.
  const cv::Mat encoded(1, static_cast<int>(bytes.size()), CV_8UC1,
                        const_cast<uint8_t*>(bytes.data()));
  cv::Mat bgr;
  try {
    bgr = cv::imdecode(encoded, imread_flags_for(reduction));
  } catch (const cv::Exception& error) {
    return Status(ErrorCode::kDataLoss,
                  fmt::format("the {} decoder failed: {}", image_format_name(header->format),
                              error.msg));
  }
  if (bgr.empty()) {
    return Status(ErrorCode::kDataLoss, fmt::format("the {} decoder could not read the pixel data "
                                                    "(corrupt file)",
                                                    image_format_name(header->format)));
  }
  DecodedImage decoded;
  decoded.header = *header;
  decoded.reduction = reduction;
  cv::cvtColor(bgr, decoded.rgb, cv::COLOR_BGR2RGB);
  if (options.apply_exif_orientation) {
    decoded.rgb = apply_orientation(std::move(decoded.rgb), header->exif_orientation);
  }
  return decoded;
}

}  // namespace kennel::data

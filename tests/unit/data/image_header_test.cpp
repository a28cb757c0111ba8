#include "kennel/data/image_header.h"

#include <gtest/gtest.h>

#include "kennel/util/hash.h"
#include "unit/test_util.h"

namespace kennel::data {
namespace {

using testing::encode;
using testing::make_bgr_image;

// A PNG whose IHDR claims width x height, with a valid CRC and nothing else real.
std::vector<uint8_t> png_header_claiming(uint32_t width, uint32_t height) {
  std::vector<uint8_t> bytes = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13,
                                'I',  'H', 'D', 'R'};
  for (uint32_t value : {width, height}) {
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<uint8_t>(value >> shift));
  }
  for (uint8_t b : {8, 2, 0, 0, 0}) bytes.push_back(b);
  const uint32_t crc = crc32(bytes.data() + 12, 17);
  for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<uint8_t>(crc >> shift));
  const uint8_t iend[] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82};
  bytes.insert(bytes.end(), std::begin(iend), std::end(iend));
  return bytes;
}

TEST(ImageHeaderTest, JpegSizeAndColourModel) {
  const auto bytes = encode(make_bgr_image(120, 80), ".jpg");
  const auto header = probe_image_header(bytes);
  ASSERT_TRUE(header);
  EXPECT_EQ(header->format, ImageFormat::kJpeg);
  EXPECT_EQ(header->width, 120);
  EXPECT_EQ(header->height, 80);
  EXPECT_EQ(header->color_model, ColorModel::kRgb);
  EXPECT_FALSE(header->truncated);
  EXPECT_EQ(header->exif_orientation, 1);
}

TEST(ImageHeaderTest, GrayscaleJpeg) {
  cv::Mat gray(40, 50, CV_8UC1, cv::Scalar(128));
  const auto header = probe_image_header(encode(gray, ".jpg"));
  ASSERT_TRUE(header);
  EXPECT_TRUE(header->is_grayscale());
}

TEST(ImageHeaderTest, TruncatedJpegHasNoEndMarker) {
  auto bytes = encode(make_bgr_image(200, 150), ".jpg");
  bytes.resize(bytes.size() * 6 / 10);
  const auto header = probe_image_header(bytes);
  ASSERT_TRUE(header);
  EXPECT_TRUE(header->truncated);
}

TEST(ImageHeaderTest, TrailingBytesAfterJpegEndAreNotTruncation) {
  auto bytes = encode(make_bgr_image(64, 64), ".jpg");
  bytes.insert(bytes.end(), {0x00, 0x11, 0x22, 0x33});
  const auto header = probe_image_header(bytes);
  ASSERT_TRUE(header);
  EXPECT_FALSE(header->truncated);
}

TEST(ImageHeaderTest, JpegCutInsideHeadersIsTruncated) {
  auto bytes = encode(make_bgr_image(64, 64), ".jpg");
  bytes.resize(30);
  const auto header = probe_image_header(bytes);
  ASSERT_TRUE(header);
  EXPECT_TRUE(header->truncated);
}

TEST(ImageHeaderTest, ProgressiveJpeg) {
  const auto bytes = encode(make_bgr_image(64, 48), ".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1});
  const auto header = probe_image_header(bytes);
  ASSERT_TRUE(header);
  EXPECT_TRUE(header->progressive);
  EXPECT_EQ(header->width, 64);
  EXPECT_FALSE(header->truncated);
}

TEST(ImageHeaderTest, PngColourTypes) {
  const auto rgb = probe_image_header(encode(make_bgr_image(30, 20), ".png"));
  ASSERT_TRUE(rgb);
  EXPECT_EQ(rgb->format, ImageFormat::kPng);
  EXPECT_EQ(rgb->width, 30);
  EXPECT_EQ(rgb->height, 20);
  EXPECT_EQ(rgb->color_model, ColorModel::kRgb);

  cv::Mat rgba(10, 10, CV_8UC4, cv::Scalar(1, 2, 3, 4));
  const auto alpha = probe_image_header(encode(rgba, ".png"));
  ASSERT_TRUE(alpha);
  EXPECT_TRUE(alpha->has_alpha());

  cv::Mat gray(10, 10, CV_8UC1, cv::Scalar(9));
  const auto gray_header = probe_image_header(encode(gray, ".png"));
  ASSERT_TRUE(gray_header);
  EXPECT_TRUE(gray_header->is_grayscale());
}

TEST(ImageHeaderTest, TruncatedPngHasNoEnd) {
  auto bytes = encode(make_bgr_image(100, 100), ".png");
  bytes.resize(bytes.size() / 2);
  const auto header = probe_image_header(bytes);
  ASSERT_TRUE(header);
  EXPECT_TRUE(header->truncated);
}

TEST(ImageHeaderTest, DecompressionBombHeaderIsReadWithoutDecoding) {
  const auto header = probe_image_header(png_header_claiming(50000, 50000));
  ASSERT_TRUE(header);
  EXPECT_EQ(header->width, 50000);
  EXPECT_EQ(header->height, 50000);
}

TEST(ImageHeaderTest, BmpTiffWebp) {
  const auto image = make_bgr_image(33, 21);
  for (const char* extension : {".bmp", ".tiff", ".webp"}) {
    SCOPED_TRACE(extension);
    const auto bytes = encode(image, extension);
    ASSERT_FALSE(bytes.empty());
    const auto header = probe_image_header(bytes);
    ASSERT_TRUE(header);
    EXPECT_EQ(header->width, 33);
    EXPECT_EQ(header->height, 21);
    EXPECT_FALSE(header->truncated);
  }
}

TEST(ImageHeaderTest, TruncatedBmp) {
  auto bytes = encode(make_bgr_image(40, 40), ".bmp");
  bytes.resize(bytes.size() - 100);
  const auto header = probe_image_header(bytes);
  ASSERT_TRUE(header);
  EXPECT_TRUE(header->truncated);
}

TEST(ImageHeaderTest, GarbageIsNotAnImage) {
  std::vector<uint8_t> garbage(300);
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<uint8_t>(i * 37 + 11);
  EXPECT_FALSE(probe_image_header(garbage));
  EXPECT_FALSE(probe_image_header(std::vector<uint8_t>{}));
  EXPECT_FALSE(probe_image_header(std::vector<uint8_t>{0xFF, 0xD8}));
}

TEST(ImageHeaderTest, EveryPrefixOfAValidFileIsSafeToProbe) {
  // Attacker-controlled bytes: no prefix may read out of bounds (ASan checks this).
  for (const char* extension : {".jpg", ".png", ".bmp", ".tiff", ".webp"}) {
    const auto bytes = encode(make_bgr_image(16, 16), extension);
    for (size_t length = 0; length <= bytes.size(); ++length) {
      (void)probe_image_header(std::span<const uint8_t>(bytes.data(), length));
    }
  }
}

TEST(ImageHeaderTest, ExtensionsAreCaseInsensitive) {
  EXPECT_TRUE(has_image_extension("a.jpg"));
  EXPECT_TRUE(has_image_extension("a.JPEG"));
  EXPECT_TRUE(has_image_extension("b.Tif"));
  EXPECT_TRUE(has_image_extension("c.webp"));
  EXPECT_FALSE(has_image_extension("notes.txt"));
  EXPECT_FALSE(has_image_extension("jpg"));
  EXPECT_FALSE(has_image_extension("archive.jpg.gz"));
}

}  // namespace
}  // namespace kennel::data

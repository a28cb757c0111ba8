#include "kennel/data/decode.h"

#include <gtest/gtest.h>

#include "unit/test_util.h"

namespace kennel::data {
namespace {

using testing::encode;
using testing::make_bgr_image;

// Inserts an EXIF APP1 segment carrying `orientation` right after the SOI marker.
std::vector<uint8_t> with_exif_orientation(std::vector<uint8_t> jpeg, uint8_t orientation) {
  const std::vector<uint8_t> app1 = {
      0xFF, 0xE1, 0x00, 0x22, 'E', 'x', 'i', 'f', 0, 0,             // APP1, length 34, "Exif\0\0"
      'M',  'M',  0x00, 0x2A, 0x00, 0x00, 0x00, 0x08,              // big-endian TIFF, IFD0 at 8
      0x00, 0x01,                                                   // one entry
      0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, orientation, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00};                                      // no next IFD
  jpeg.insert(jpeg.begin() + 2, app1.begin(), app1.end());
  return jpeg;
}

// Left half red, right half blue (BGR input).
cv::Mat red_left_blue_right(int width, int height) {
  cv::Mat image(height, width, CV_8UC3, cv::Scalar(255, 0, 0));
  image(cv::Rect(0, 0, width / 2, height)).setTo(cv::Scalar(0, 0, 255));
  return image;
}

TEST(DecodeTest, DecodesToRgb) {
  cv::Mat bgr(16, 24, CV_8UC3, cv::Scalar(255, 0, 0));  // pure blue
  auto decoded = decode_image(encode(bgr, ".png"), {});
  ASSERT_TRUE(decoded.ok()) << decoded.status().to_string();
  EXPECT_EQ(decoded->rgb.type(), CV_8UC3);
  EXPECT_EQ(decoded->rgb.cols, 24);
  EXPECT_EQ(decoded->rgb.rows, 16);
  const auto pixel = decoded->rgb.at<cv::Vec3b>(0, 0);
  EXPECT_EQ(pixel[0], 0);
  EXPECT_EQ(pixel[2], 255);
}

TEST(DecodeTest, GrayscaleAndAlphaBecomeThreeChannelRgb) {
  cv::Mat gray(10, 10, CV_8UC1, cv::Scalar(77));
  auto decoded = decode_image(encode(gray, ".png"), {});
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->rgb.channels(), 3);
  EXPECT_EQ(decoded->rgb.at<cv::Vec3b>(5, 5)[1], 77);
  cv::Mat rgba(10, 10, CV_8UC4, cv::Scalar(10, 20, 30, 0));
  decoded = decode_image(encode(rgba, ".png"), {});
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->rgb.channels(), 3);
}

TEST(DecodeTest, HonoursExifOrientation) {
  const auto jpeg = with_exif_orientation(encode(red_left_blue_right(40, 20), ".jpg"), 6);
  auto decoded = decode_image(jpeg, {});
  ASSERT_TRUE(decoded.ok()) << decoded.status().to_string();
  EXPECT_EQ(decoded->header.exif_orientation, 6);
  // Rotated 90 degrees clockwise: 20 wide, 40 high, the red left half now on top.
  ASSERT_EQ(decoded->rgb.cols, 20);
  ASSERT_EQ(decoded->rgb.rows, 40);
  const auto top = decoded->rgb.at<cv::Vec3b>(5, 10);
  const auto bottom = decoded->rgb.at<cv::Vec3b>(35, 10);
  EXPECT_GT(top[0], 200);     // red
  EXPECT_GT(bottom[2], 200);  // blue

  DecodeOptions ignore;
  ignore.apply_exif_orientation = false;
  decoded = decode_image(jpeg, ignore);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->rgb.cols, 40);
}

TEST(DecodeTest, EveryOrientationHasTheRightShape) {
  const auto plain = encode(red_left_blue_right(40, 20), ".jpg");
  for (uint8_t orientation = 1; orientation <= 8; ++orientation) {
    auto decoded = decode_image(with_exif_orientation(plain, orientation), {});
    ASSERT_TRUE(decoded.ok());
    const bool swapped = orientation >= 5;
    EXPECT_EQ(decoded->rgb.cols, swapped ? 20 : 40) << int(orientation);
  }
}

TEST(DecodeTest, ReducedJpegDecodeKeepsTheRequestedShortSide) {
  const auto jpeg = encode(make_bgr_image(800, 600), ".jpg");
  DecodeOptions options;
  options.min_short_side = 100;  // 600/4 = 150 >= 100, 600/8 = 75 < 100
  auto decoded = decode_image(jpeg, options);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->reduction, 4);
  EXPECT_EQ(decoded->rgb.cols, 200);
  EXPECT_EQ(decoded->rgb.rows, 150);
  EXPECT_EQ(decoded->header.width, 800);

  options.min_short_side = 600;
  decoded = decode_image(jpeg, options);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->reduction, 1);
}

TEST(DecodeTest, RefusesOversizedHeadersBeforeDecoding) {
  DecodeOptions options;
  options.max_pixels = 100 * 100;
  auto decoded = decode_image(encode(make_bgr_image(101, 100), ".png"), options);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), ErrorCode::kResourceExhausted);
  EXPECT_NE(decoded.status().message().find("101x100"), std::string::npos);
}

TEST(DecodeTest, ReportsTruncationGarbageAndEmptyInput) {
  auto jpeg = encode(make_bgr_image(64, 64), ".jpg");
  jpeg.resize(jpeg.size() / 2);
  auto decoded = decode_image(jpeg, {});
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), ErrorCode::kDataLoss);
  EXPECT_NE(decoded.status().message().find("truncated"), std::string::npos);

  decoded = decode_image(std::vector<uint8_t>{'h', 'e', 'l', 'l', 'o'}, {});
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.status().message().find("not an image"), std::string::npos);

  decoded = decode_image(std::vector<uint8_t>{}, {});
  ASSERT_FALSE(decoded.ok());
}

TEST(DecodeTest, CorruptPixelDataIsAnErrorNotACrash) {
  auto png = encode(make_bgr_image(64, 64), ".png");
  // Scribble over the compressed data but keep the chunk structure (IEND intact).
  for (size_t i = 60; i < png.size() - 20; i += 7) png[i] ^= 0x5A;
  auto decoded = decode_image(png, {});
  EXPECT_FALSE(decoded.ok());
}

}  // namespace
}  // namespace kennel::data

namespace kennel::data {
namespace {

// Regression (found by tests/fuzz): a PNG header claiming ~4.3e9 x 4.3e9 pixels
// overflowed int64_t width * height and could slip past max_pixels.
TEST(DecodeTest, HugeClaimedSizeDoesNotOverflowThePixelLimit) {
  const std::string png("\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\xfe\xff\xff\xff\xff\xff\xff\xff", 24);
  const auto bytes = std::span(reinterpret_cast<const uint8_t*>(png.data()), png.size());
  auto decoded = decode_image(bytes, DecodeOptions{});
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), ErrorCode::kResourceExhausted) << decoded.status().to_string();
}

}  // namespace
}  // namespace kennel::data

namespace kennel::data {
namespace {

struct TiffEntry {
  uint16_t tag;
  uint16_t type;  // 3 SHORT, 4 LONG
  uint32_t value;
};

void put_le(std::vector<uint8_t>& bytes, uint64_t value, int size) {
  for (int i = 0; i < size; ++i) bytes.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

// An uncompressed 8-bit grayscale TIFF with 16x16 mid-grey pixels whose IFD0 holds
// `size_entries` (width/height, in file order, duplicates allowed) plus the tags a
// strip needs.
std::vector<uint8_t> gray_tiff(const std::vector<TiffEntry>& size_entries) {
  std::vector<TiffEntry> entries = size_entries;
  const uint32_t kPixels = 16 * 16;
  const uint32_t ifd_size = 2 + 12 * static_cast<uint32_t>(entries.size() + 7) + 4;
  const uint32_t strip_offset = 8 + ifd_size;
  for (const TiffEntry& entry : std::vector<TiffEntry>{
           {258, 3, 8}, {259, 3, 1}, {262, 3, 1}, {273, 4, strip_offset}, {277, 3, 1}, {278, 3, 16},
           {279, 4, kPixels}}) {
    entries.push_back(entry);
  }
  std::vector<uint8_t> bytes = {'I', 'I', 42, 0};
  put_le(bytes, 8, 4);
  put_le(bytes, entries.size(), 2);
  for (const TiffEntry& entry : entries) {
    put_le(bytes, entry.tag, 2);
    put_le(bytes, entry.type, 2);
    put_le(bytes, 1, 4);
    put_le(bytes, entry.value, 4);
  }
  put_le(bytes, 0, 4);  // no next IFD
  bytes.resize(bytes.size() + kPixels, 128);
  return bytes;
}

// Regression: the probe kept the last of duplicated ImageWidth/ImageLength tags while
// libtiff keeps the first, so a file whose first entries claim 60000x60000 passed the
// pixel limit as 16x16 and the decoder allocated for 3.6 G pixels.
TEST(DecodeTest, DuplicatedTiffSizeTagsAreReadAsLibtiffReadsThem) {
  const auto bomb = gray_tiff({{256, 4, 60000}, {257, 4, 60000}, {256, 3, 16}, {257, 3, 16}});
  auto decoded = decode_image(bomb, {});
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), ErrorCode::kResourceExhausted) << decoded.status().to_string();
  EXPECT_NE(decoded.status().message().find("60000x60000"), std::string::npos);

  const auto honest_first = gray_tiff({{256, 3, 16}, {257, 3, 16}, {256, 4, 32}, {257, 4, 32}});
  decoded = decode_image(honest_first, {});
  ASSERT_TRUE(decoded.ok()) << decoded.status().to_string();
  EXPECT_EQ(decoded->header.width, 16);
  EXPECT_EQ(decoded->rgb.cols, 16);
  EXPECT_EQ(decoded->rgb.rows, 16);
}

// Regression: OS/2 1.x bitmaps (12-byte BITMAPCOREHEADER, 16-bit sizes) were read with the
// Windows layout, so their sizes were garbage and real files were refused or misjudged.
TEST(DecodeTest, Os2CoreHeaderBitmapsDecode) {
  const int width = 5, height = 3;
  const uint32_t stride = (24 * width + 31) / 32 * 4;
  std::vector<uint8_t> bytes = {'B', 'M'};
  put_le(bytes, 14 + 12 + stride * height, 4);
  put_le(bytes, 0, 4);
  put_le(bytes, 14 + 12, 4);  // pixel data offset
  put_le(bytes, 12, 4);       // BITMAPCOREHEADER
  put_le(bytes, width, 2);
  put_le(bytes, height, 2);
  put_le(bytes, 1, 2);   // planes
  put_le(bytes, 24, 2);  // bits per pixel
  for (int row = 0; row < height; ++row) {
    for (int x = 0; x < width; ++x) bytes.insert(bytes.end(), {200, 100, 50});  // BGR
    bytes.resize(bytes.size() + (stride - 3 * width), 0);
  }
  const auto header = probe_image_header(bytes);
  ASSERT_TRUE(header);
  EXPECT_EQ(header->width, width);
  EXPECT_EQ(header->height, height);
  EXPECT_FALSE(header->truncated);

  auto decoded = decode_image(bytes, {});
  ASSERT_TRUE(decoded.ok()) << decoded.status().to_string();
  EXPECT_EQ(decoded->rgb.cols, width);
  EXPECT_EQ(decoded->rgb.rows, height);
  EXPECT_EQ(decoded->rgb.at<cv::Vec3b>(1, 2), cv::Vec3b(50, 100, 200));

  bytes.resize(bytes.size() - stride);
  EXPECT_TRUE(probe_image_header(bytes)->truncated);
}

}  // namespace
}  // namespace kennel::data

#include "kennel/data/transforms.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kennel/data/detail/pil_color.h"
#include "kennel/data/detail/pil_resize.h"

namespace kennel::data {
namespace {

// Pixel (x, y) = (x, y, 7x + 3y) mod 256: every pixel says where it came from.
cv::Mat coordinate_image(int width, int height) {
  cv::Mat image(height, width, CV_8UC3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      image.at<cv::Vec3b>(y, x) = cv::Vec3b(x % 256, y % 256, (7 * x + 3 * y) % 256);
    }
  }
  return image;
}

cv::Mat noise_image(int width, int height, uint64_t seed = 1) {
  cv::Mat image(height, width, CV_8UC3);
  cv::RNG rng(seed);
  rng.fill(image, cv::RNG::UNIFORM, 0, 256);
  return image;
}

bool same_pixels(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}

// ---- resize_bilinear_antialiased ---------------------------------------------

TEST(TransformResizeTest, OutputHasTheRequestedSize) {
  const cv::Mat image = noise_image(500, 375);
  for (const auto& [width, height] : std::vector<std::pair<int, int>>{
           {341, 256}, {256, 341}, {1, 1}, {223, 97}, {999, 3}, {500, 1}, {1000, 750}}) {
    const cv::Mat resized = resize_bilinear_antialiased(image, width, height);
    EXPECT_EQ(resized.cols, width);
    EXPECT_EQ(resized.rows, height);
    EXPECT_EQ(resized.type(), CV_8UC3);
  }
}

TEST(TransformResizeTest, ConstantColourStaysConstant) {
  // The filter weights of every window are normalised, so a flat image stays
  // flat whatever the scale, including at the borders where windows are cut.
  const cv::Mat image(257, 301, CV_8UC3, cv::Scalar(12, 200, 255));
  for (const auto& [width, height] :
       std::vector<std::pair<int, int>>{{299, 256}, {17, 13}, {1, 1}, {640, 480}, {301, 100}}) {
    const cv::Mat resized = resize_bilinear_antialiased(image, width, height);
    EXPECT_TRUE(same_pixels(resized, cv::Mat(height, width, CV_8UC3, cv::Scalar(12, 200, 255))))
        << width << "x" << height;
  }
}

TEST(TransformResizeTest, SameSizeIsACopy) {
  const cv::Mat image = noise_image(31, 17);
  const cv::Mat resized = resize_bilinear_antialiased(image, 31, 17);
  EXPECT_TRUE(same_pixels(resized, image));
  EXPECT_NE(resized.data, image.data);
}

TEST(TransformResizeTest, RegionOfInterestInputMatchesACopy) {
  // A crop is a strided view; the resampler must honour the row step.
  const cv::Mat image = noise_image(200, 150);
  const cv::Rect rect(13, 7, 121, 99);
  EXPECT_TRUE(same_pixels(resize_bilinear_antialiased(image(rect), 64, 64),
                          resize_bilinear_antialiased(image(rect).clone(), 64, 64)));
}

TEST(TransformResizeTest, OutputRegionEqualsCropOfFullResize) {
  const cv::Mat image = noise_image(500, 375, 7);
  const cv::Mat full = detail::resample_bilinear(image, 341, 256, cv::Rect(0, 0, 341, 256));
  const cv::Rect roi(58, 16, 224, 224);
  EXPECT_TRUE(same_pixels(detail::resample_bilinear(image, 341, 256, roi), full(roi)));
}

TEST(TransformResizeTest, AxisWindowsMatchPillowForAThirdDownscale) {
  // 3 -> 1: centre 1.5, support stretched to 3; the pixel centres sit at
  // distances 1, 0, 1 -> triangle weights 2/3, 1, 2/3, normalised 2/7, 3/7, 2/7.
  const detail::ResampleAxis axis = detail::bilinear_axis(3, 1, 0, 1);
  ASSERT_EQ(axis.first.size(), 1u);
  EXPECT_EQ(axis.first[0], 0);
  EXPECT_EQ(axis.count[0], 3);
  const double unit = 1 << detail::kPrecisionBits;
  EXPECT_NEAR(axis.weights[0], unit * 2 / 7, 1);
  EXPECT_NEAR(axis.weights[1], unit * 3 / 7, 1);
  EXPECT_EQ(axis.weights[2], axis.weights[0]);
}

TEST(TransformResizeTest, RejectsNonRgbInput) {
  EXPECT_THROW(resize_bilinear_antialiased(cv::Mat(10, 10, CV_8UC1), 5, 5), Error);
  EXPECT_THROW(resize_bilinear_antialiased(cv::Mat(), 5, 5), Error);
  EXPECT_THROW(resize_bilinear_antialiased(noise_image(10, 10), 0, 5), Error);
}

// ---- resize_shorter_side -----------------------------------------------------

TEST(TransformResizeShorterSideTest, LandscapeAndPortraitTruncateTheLongSide) {
  // 256 * 500 / 375 = 341.33 -> 341.
  EXPECT_EQ(resize_shorter_side(noise_image(500, 375), 256).size(), cv::Size(341, 256));
  EXPECT_EQ(resize_shorter_side(noise_image(375, 500), 256).size(), cv::Size(256, 341));
  // 256 * 301 / 257 = 299.83: truncated to 299, where rounding would give 300.
  EXPECT_EQ(resize_shorter_side(noise_image(301, 257), 256).size(), cv::Size(299, 256));
  EXPECT_EQ(resize_shorter_side(noise_image(257, 301), 256).size(), cv::Size(256, 299));
  // Upscaling: 256 * 150 / 100 = 384 exactly.
  EXPECT_EQ(resize_shorter_side(noise_image(150, 100), 256).size(), cv::Size(384, 256));
  EXPECT_EQ(resize_shorter_side(noise_image(64, 64), 256).size(), cv::Size(256, 256));
}

TEST(TransformResizeShorterSideTest, AlreadyTheRightSizeIsReturnedUnchanged) {
  const cv::Mat image = noise_image(341, 256);
  const cv::Mat resized = resize_shorter_side(image, 256);
  EXPECT_EQ(resized.data, image.data);
}

// ---- center_crop -------------------------------------------------------------

cv::Point top_left_source(const cv::Mat& crop) {
  const cv::Vec3b pixel = crop.at<cv::Vec3b>(0, 0);
  return {pixel[0], pixel[1]};
}

TEST(TransformCenterCropTest, OffsetsRoundHalfToEven) {
  // (10 - 4) / 2 = 3; (7 - 4) / 2 = 1.5 -> 2.
  EXPECT_EQ(top_left_source(center_crop(coordinate_image(10, 7), 4, 4)), cv::Point(3, 2));
  // (5 - 4) / 2 = 0.5 -> 0 and (9 - 4) / 2 = 2.5 -> 2: Python's round, not 1 and 3.
  EXPECT_EQ(top_left_source(center_crop(coordinate_image(9, 5), 4, 4)), cv::Point(2, 0));
  // 256x341 -> 224: (341 - 224) / 2 = 58.5 -> 58.
  EXPECT_EQ(top_left_source(center_crop(coordinate_image(256, 341), 224, 224)), cv::Point(16, 58));
}

TEST(TransformCenterCropTest, NonSquareCropAndExactFit) {
  const cv::Mat crop = center_crop(coordinate_image(20, 10), 6, 8);
  EXPECT_EQ(crop.size(), cv::Size(8, 6));
  EXPECT_EQ(top_left_source(crop), cv::Point(6, 2));
  const cv::Mat image = coordinate_image(8, 6);
  EXPECT_TRUE(same_pixels(center_crop(image, 6, 8), image));
}

TEST(TransformCenterCropTest, SmallerImageIsPaddedWithZerosLikeTorchvision) {
  // 3x2 into 6x5: left 1, right 2, top 1, bottom 2 (the odd pixel goes right/bottom).
  const cv::Mat image(2, 3, CV_8UC3, cv::Scalar(9, 9, 9));
  const cv::Mat crop = center_crop(image, 5, 6);
  ASSERT_EQ(crop.size(), cv::Size(6, 5));
  for (int y = 0; y < 5; ++y) {
    for (int x = 0; x < 6; ++x) {
      const bool inside = x >= 1 && x <= 3 && y >= 1 && y <= 2;
      EXPECT_EQ(crop.at<cv::Vec3b>(y, x), inside ? cv::Vec3b(9, 9, 9) : cv::Vec3b(0, 0, 0))
          << x << "," << y;
    }
  }
}

TEST(TransformCenterCropTest, PaddedInOneDimensionCroppedInTheOther) {
  // Height 2 -> 4 pads one row on each side; width 10 -> 4 crops from (10 - 4) / 2 = 3.
  const cv::Mat crop = center_crop(coordinate_image(10, 2), 4, 4);
  ASSERT_EQ(crop.size(), cv::Size(4, 4));
  EXPECT_EQ(crop.at<cv::Vec3b>(0, 0), cv::Vec3b(0, 0, 0));
  EXPECT_EQ(crop.at<cv::Vec3b>(1, 0), cv::Vec3b(3, 0, 21));
  EXPECT_EQ(crop.at<cv::Vec3b>(2, 3), cv::Vec3b(6, 1, 45));
  EXPECT_EQ(crop.at<cv::Vec3b>(3, 3), cv::Vec3b(0, 0, 0));
}

// ---- random_resized_crop -----------------------------------------------------

TEST(TransformRandomResizedCropTest, SeededRngIsDeterministic) {
  const cv::Mat image = noise_image(500, 375);
  const RandomResizedCropParams params;
  Rng first(42), second(42), other(43);
  const cv::Mat a = random_resized_crop(image, 224, params, first);
  const cv::Mat b = random_resized_crop(image, 224, params, second);
  const cv::Mat c = random_resized_crop(image, 224, params, other);
  EXPECT_EQ(a.size(), cv::Size(224, 224));
  EXPECT_TRUE(same_pixels(a, b));
  EXPECT_FALSE(same_pixels(a, c));
  EXPECT_EQ(first(), second());  // both consumed the same number of draws
}

TEST(TransformRandomResizedCropTest, ManySeedsStayInsideTheImage) {
  const cv::Mat image = noise_image(37, 300);
  for (uint64_t seed = 0; seed < 200; ++seed) {
    Rng rng(seed);
    EXPECT_EQ(random_resized_crop(image, 17, {}, rng).size(), cv::Size(17, 17));
  }
}

TEST(TransformRandomResizedCropTest, ImpossibleRatiosFallBackToTheCentralCrop) {
  // A square image cannot hold a full-area crop of ratio 2..3, so all ten
  // attempts fail and torchvision takes the whole width with h = round(w / 2).
  const cv::Mat image = noise_image(100, 100);
  const RandomResizedCropParams wide{{1.0, 1.0}, {2.0, 3.0}};
  const cv::Mat expected_wide =
      resize_bilinear_antialiased(image(cv::Rect(0, 25, 100, 50)), 32, 32);
  // Ratio 0.2..0.25 (tall): the whole height with w = round(100 * 0.25) = 25, left (100 - 25) / 2
  // = 37.
  const RandomResizedCropParams tall{{1.0, 1.0}, {0.2, 0.25}};
  const cv::Mat expected_tall =
      resize_bilinear_antialiased(image(cv::Rect(37, 0, 25, 100)), 32, 32);
  for (uint64_t seed = 0; seed < 5; ++seed) {
    Rng rng(seed);
    EXPECT_TRUE(same_pixels(random_resized_crop(image, 32, wide, rng), expected_wide));
    EXPECT_TRUE(same_pixels(random_resized_crop(image, 32, tall, rng), expected_tall));
  }
}

TEST(TransformRandomResizedCropTest, FullScaleMatchingRatioTakesTheWholeImage) {
  // scale 1 and ratio exactly the image's: the first attempt gives the whole image.
  const cv::Mat image = noise_image(120, 80);
  Rng rng(3);
  const cv::Mat crop = random_resized_crop(image, 40, {{1.0, 1.0}, {1.5, 1.5}}, rng);
  EXPECT_TRUE(same_pixels(crop, resize_bilinear_antialiased(image, 40, 40)));
}

// ---- horizontal_flip ---------------------------------------------------------

TEST(TransformFlipTest, MirrorsColumns) {
  const cv::Mat image = coordinate_image(7, 3);
  const cv::Mat flipped = horizontal_flip(image);
  ASSERT_EQ(flipped.size(), image.size());
  for (int y = 0; y < 3; ++y) {
    for (int x = 0; x < 7; ++x) {
      EXPECT_EQ(flipped.at<cv::Vec3b>(y, x), image.at<cv::Vec3b>(y, 6 - x));
    }
  }
  EXPECT_TRUE(same_pixels(horizontal_flip(flipped), image));
}

// ---- color_jitter ------------------------------------------------------------

TEST(TransformColorJitterTest, ZeroParametersAreIdentity) {
  const cv::Mat image = noise_image(64, 48);
  Rng rng(5);
  const ColorJitterParams none;
  EXPECT_FALSE(none.enabled());
  const cv::Mat jittered = color_jitter(image, none, rng);
  EXPECT_TRUE(same_pixels(jittered, image));
  EXPECT_NE(jittered.data, image.data);
}

TEST(TransformColorJitterTest, SeededRngIsDeterministicAndChangesPixels) {
  const cv::Mat image = noise_image(64, 48);
  const ColorJitterParams params{0.4f, 0.4f, 0.4f, 0.1f};
  Rng first(9), second(9);
  const cv::Mat a = color_jitter(image, params, first);
  EXPECT_TRUE(same_pixels(a, color_jitter(image, params, second)));
  EXPECT_FALSE(same_pixels(a, image));
}

TEST(TransformColorJitterTest, AdjustmentsFollowPillowArithmetic) {
  const cv::Mat pixel(1, 1, CV_8UC3, cv::Scalar(201, 100, 0));
  // Blend with black, truncated: 201 * 0.5 = 100.5 -> 100.
  EXPECT_EQ(detail::adjust_brightness(pixel, 0.5).at<cv::Vec3b>(0, 0), cv::Vec3b(100, 50, 0));
  // Extrapolation clips.
  EXPECT_EQ(detail::adjust_brightness(pixel, 2.0).at<cv::Vec3b>(0, 0), cv::Vec3b(255, 200, 0));
  // Saturation 0 is the luma: (201*19595 + 100*38470 + 0 + 32768) >> 16 = 119, as
  // PIL's convert("L") gives (the documented 299/587/114 per mille truncates to 118).
  EXPECT_EQ(detail::pil_luma(201, 100, 0), 119);
  EXPECT_EQ(detail::adjust_saturation(pixel, 0.0).at<cv::Vec3b>(0, 0), cv::Vec3b(119, 119, 119));
  // Contrast 0 is the mean luma of the whole image.
  EXPECT_EQ(detail::adjust_contrast(pixel, 0.0).at<cv::Vec3b>(0, 0), cv::Vec3b(119, 119, 119));
  // Greys have no hue to shift.
  const cv::Mat grey(2, 2, CV_8UC3, cv::Scalar(77, 77, 77));
  EXPECT_TRUE(same_pixels(detail::adjust_hue(grey, 0.3), grey));
  // Half a turn of pure red in PIL's 8-bit hue: H 0 + uint8(127.5) = 127, just short
  // of cyan; torchvision on PIL gives (0, 255, 252).
  const cv::Mat red(1, 1, CV_8UC3, cv::Scalar(255, 0, 0));
  EXPECT_EQ(detail::adjust_hue(red, 0.5).at<cv::Vec3b>(0, 0), cv::Vec3b(0, 255, 252));
}

// ---- normalize_into ----------------------------------------------------------

TEST(TransformNormalizeTest, ValuesAndBothLayouts) {
  cv::Mat image(2, 3, CV_8UC3);
  for (int i = 0; i < 6; ++i) image.at<cv::Vec3b>(i / 3, i % 3) = cv::Vec3b(i, 100 + i, 255 - i);
  const std::array<float, 3> mean = {0.5f, 0.25f, 0.0f};
  const std::array<float, 3> std = {0.5f, 0.25f, 2.0f};
  std::vector<float> chw(18), hwc(18);
  normalize_into(image, mean, std, PixelLayout::kChw, chw.data());
  normalize_into(image, mean, std, PixelLayout::kHwc, hwc.data());
  for (int i = 0; i < 6; ++i) {
    const cv::Vec3b pixel = image.at<cv::Vec3b>(i / 3, i % 3);
    for (int c = 0; c < 3; ++c) {
      const float expected = (pixel[c] / 255.0f - mean[c]) / std[c];
      EXPECT_EQ(chw[c * 6 + i], expected) << "chw pixel " << i << " channel " << c;
      EXPECT_EQ(hwc[i * 3 + c], expected) << "hwc pixel " << i << " channel " << c;
    }
  }
  EXPECT_EQ(chw[0], -1.0f);  // red 0 -> (0 - 0.5) / 0.5
}

TEST(TransformNormalizeTest, ImageNetExtremes) {
  cv::Mat image(1, 2, CV_8UC3);
  image.at<cv::Vec3b>(0, 0) = cv::Vec3b(0, 0, 0);
  image.at<cv::Vec3b>(0, 1) = cv::Vec3b(255, 255, 255);
  std::vector<float> out(6);
  normalize_into(image, kImageNetMean, kImageNetStd, PixelLayout::kHwc, out.data());
  EXPECT_NEAR(out[0], -2.1179f, 1e-4);
  EXPECT_NEAR(out[3], 2.2489f, 1e-4);
  EXPECT_NEAR(out[5], 2.64f, 1e-4);
}

// ---- TransformSpec / ImagePipeline -------------------------------------------

std::string validate_message(const TransformSpec& spec) {
  const Status status = spec.validate();
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
  return status.message();
}

TEST(TransformSpecTest, DefaultsAreValid) {
  EXPECT_TRUE(TransformSpec{}.validate().ok());
  TransformSpec augment;
  augment.augment = true;
  augment.jitter = {0.4f, 0.4f, 0.4f, 0.5f};
  EXPECT_TRUE(augment.validate().ok());
}

TEST(TransformSpecTest, ErrorsNameTheFieldAndValue) {
  TransformSpec spec;
  spec.crop = 0;
  EXPECT_EQ(validate_message(spec), "crop must be > 0, got 0");

  spec = {};
  spec.resize = 200;
  EXPECT_NE(validate_message(spec).find("resize must be >= crop (224)"), std::string::npos);
  spec.augment = true;  // resize is unused by the augment path
  EXPECT_TRUE(spec.validate().ok());

  spec = {};
  spec.random_crop.scale = {0.5, 0.2};
  EXPECT_EQ(validate_message(spec),
            "random_crop.scale must satisfy 0 < min <= max <= 1, got [0.5, 0.2]");
  spec.random_crop.scale = {0.0, 1.0};
  EXPECT_NE(validate_message(spec).find("random_crop.scale"), std::string::npos);
  spec.random_crop.scale = {0.5, 1.5};
  EXPECT_NE(validate_message(spec).find("got [0.5, 1.5]"), std::string::npos);

  spec = {};
  spec.random_crop.ratio = {0.0, 1.0};
  EXPECT_EQ(validate_message(spec), "random_crop.ratio must satisfy 0 < min <= max, got [0, 1]");

  spec = {};
  spec.hflip_probability = 1.5f;
  EXPECT_EQ(validate_message(spec), "hflip_probability must be in [0, 1], got 1.5");

  spec = {};
  spec.jitter.saturation = -0.5f;
  EXPECT_EQ(validate_message(spec), "jitter.saturation must be >= 0, got -0.5");
  spec = {};
  spec.jitter.hue = 0.75f;
  EXPECT_EQ(validate_message(spec), "jitter.hue must be in [0, 0.5], got 0.75");

  spec = {};
  spec.std[1] = 0.0f;
  EXPECT_EQ(validate_message(spec), "std[1] must be > 0, got 0");
}

TEST(TransformPipelineTest, InvalidSpecThrows) {
  TransformSpec spec;
  spec.crop = -1;
  try {
    ImagePipeline pipeline(spec);
    FAIL() << "expected kennel::Error";
  } catch (const Error& error) {
    EXPECT_EQ(error.status().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find("crop must be > 0, got -1"), std::string::npos);
  }
}

TEST(TransformPipelineTest, EvalPathIsResizeThenCenterCrop) {
  // The pipeline computes only the cropped part of the resize; it must equal
  // the two public steps done separately, for shrinking, growing and no-op resizes.
  const ImagePipeline pipeline(TransformSpec{});
  Rng rng(0);
  for (const auto& [width, height] : std::vector<std::pair<int, int>>{
           {500, 375}, {375, 500}, {301, 257}, {100, 80}, {341, 256}, {256, 256}, {224, 300}}) {
    const cv::Mat image = noise_image(width, height, width * 1000 + height);
    const cv::Mat expected = center_crop(resize_shorter_side(image, 256), 224, 224);
    EXPECT_TRUE(same_pixels(pipeline.transform_image(image, rng), expected))
        << width << "x" << height;
  }
}

TEST(TransformPipelineTest, DecodeSizeAndOutputSize) {
  TransformSpec spec;
  spec.resize = 288;
  spec.crop = 256;
  EXPECT_EQ(ImagePipeline(spec).min_decode_short_side(), 288);
  EXPECT_EQ(ImagePipeline(spec).output_size(), 256);
  spec.augment = true;
  EXPECT_EQ(ImagePipeline(spec).min_decode_short_side(), 256);
}

TEST(TransformPipelineTest, ApplyNormalisesTheTransformedImage) {
  TransformSpec spec;
  spec.resize = 40;
  spec.crop = 32;
  const ImagePipeline pipeline(spec);
  const cv::Mat image = noise_image(90, 60);
  Rng rng(0);
  std::vector<float> applied(32 * 32 * 3), expected(32 * 32 * 3);
  pipeline.apply(image, rng, PixelLayout::kChw, applied.data());
  normalize_into(pipeline.transform_image(image, rng), spec.mean, spec.std, PixelLayout::kChw,
                 expected.data());
  EXPECT_EQ(applied, expected);
}

TEST(TransformPipelineTest, AugmentPathIsSeededAndSized) {
  TransformSpec spec;
  spec.augment = true;
  spec.crop = 96;
  spec.jitter = {0.4f, 0.4f, 0.4f, 0.1f};
  const ImagePipeline pipeline(spec);
  const cv::Mat image = noise_image(200, 150);
  Rng first(11), second(11);
  const cv::Mat a = pipeline.transform_image(image, first);
  EXPECT_EQ(a.size(), cv::Size(96, 96));
  EXPECT_TRUE(same_pixels(a, pipeline.transform_image(image, second)));
}

TEST(TransformPipelineTest, FlipProbabilityOneAlwaysFlips) {
  TransformSpec spec;
  spec.augment = true;
  spec.crop = 50;
  spec.random_crop = {{1.0, 1.0}, {1.0, 1.0}};  // the whole (square) image
  spec.hflip_probability = 1.0f;
  const ImagePipeline pipeline(spec);
  const cv::Mat image = noise_image(50, 50);
  Rng rng(1);
  EXPECT_TRUE(same_pixels(pipeline.transform_image(image, rng), horizontal_flip(image)));
  spec.hflip_probability = 0.0f;
  EXPECT_TRUE(same_pixels(ImagePipeline(spec).transform_image(image, rng), image));
}

}  // namespace
}  // namespace kennel::data

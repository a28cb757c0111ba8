// Kennel's side of tests/parity/test_transform_parity.py: decodes an image,
// transforms it and writes the normalised float32 CHW tensor as raw bytes.
//
//   transform_dump IMAGE OUT.bin [--resize 256] [--crop 224]
//                  [--resized-crop TOP,LEFT,HEIGHT,WIDTH] [--flip]
//                  [--adjust brightness|contrast|saturation|hue=FACTOR]...
//
// By default it runs the eval ImagePipeline (resize shorter side, center
// crop). --resized-crop replaces that with torchvision's F.resized_crop to
// crop x crop (the augment path's geometry with the random draw fixed), and
// --flip / --adjust then apply the augment path's other steps, in the order
// given. The image is decoded the way torchvision's PIL loader does it:
// full size, EXIF orientation ignored. Kennel's own decoder applies the
// orientation and may decode JPEGs at reduced size; that is deliberate and
// tested elsewhere, so it is kept out of this comparison.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "kennel/data/detail/pil_color.h"
#include "kennel/data/transforms.h"
#include "kennel/util/status.h"

namespace {

using kennel::data::Rng;

int usage(const char* message) {
  std::fprintf(stderr,
               "error: %s\nusage: transform_dump IMAGE OUT.bin [--resize N] [--crop N]\n"
               "       [--resized-crop TOP,LEFT,HEIGHT,WIDTH] [--flip]\n"
               "       [--adjust brightness|contrast|saturation|hue=FACTOR]...\n",
               message);
  return 2;
}

cv::Mat decode_like_pil(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw kennel::Error(kennel::not_found("cannot open '{}'", path));
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(file)),
                                   std::istreambuf_iterator<char>());
  const cv::Mat bgr = cv::imdecode(bytes, cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
  if (bgr.empty()) {
    throw kennel::Error(kennel::ErrorCode::kDataLoss, "OpenCV could not decode '" + path + "'");
  }
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return rgb;
}

struct Adjustment {
  std::string name;
  double factor = 0;
};

cv::Mat adjust(const cv::Mat& rgb, const Adjustment& adjustment) {
  namespace detail = kennel::data::detail;
  if (adjustment.name == "brightness") return detail::adjust_brightness(rgb, adjustment.factor);
  if (adjustment.name == "contrast") return detail::adjust_contrast(rgb, adjustment.factor);
  if (adjustment.name == "saturation") return detail::adjust_saturation(rgb, adjustment.factor);
  if (adjustment.name == "hue") return detail::adjust_hue(rgb, adjustment.factor);
  throw kennel::Error(kennel::invalid_argument("unknown adjustment '{}'", adjustment.name));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage("IMAGE and OUT.bin are required");
  const std::string image_path = argv[1];
  const std::string out_path = argv[2];
  kennel::data::TransformSpec spec;
  bool resized_crop = false;
  cv::Rect crop_box;
  bool flip = false;
  std::vector<Adjustment> adjustments;
  for (int i = 3; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--flip") {
      flip = true;
      continue;
    }
    if (i + 1 >= argc) return usage(("missing value after " + flag).c_str());
    const std::string value = argv[++i];
    if (flag == "--resize") {
      spec.resize = std::atoi(value.c_str());
    } else if (flag == "--crop") {
      spec.crop = std::atoi(value.c_str());
    } else if (flag == "--resized-crop") {
      int top = 0, left = 0, height = 0, width = 0;
      if (std::sscanf(value.c_str(), "%d,%d,%d,%d", &top, &left, &height, &width) != 4) {
        return usage("--resized-crop takes TOP,LEFT,HEIGHT,WIDTH");
      }
      resized_crop = true;
      crop_box = cv::Rect(left, top, width, height);
    } else if (flag == "--adjust") {
      const size_t equals = value.find('=');
      if (equals == std::string::npos) return usage("--adjust takes NAME=FACTOR");
      adjustments.push_back({value.substr(0, equals), std::atof(value.c_str() + equals + 1)});
    } else {
      return usage(("unknown flag " + flag).c_str());
    }
  }

  try {
    const cv::Mat rgb = decode_like_pil(image_path);
    cv::Mat image;
    if (resized_crop) {
      if ((crop_box & cv::Rect(0, 0, rgb.cols, rgb.rows)) != crop_box || crop_box.empty()) {
        return usage("--resized-crop box is not inside the image");
      }
      image = kennel::data::resize_bilinear_antialiased(rgb(crop_box), spec.crop, spec.crop);
    } else {
      const kennel::data::ImagePipeline pipeline(spec);
      Rng rng(0);  // the eval path draws nothing
      image = pipeline.transform_image(rgb, rng);
    }
    if (flip) image = kennel::data::horizontal_flip(image);
    for (const Adjustment& adjustment : adjustments) image = adjust(image, adjustment);

    std::vector<float> out(image.total() * 3);
    kennel::data::normalize_into(image, spec.mean, spec.std, kennel::data::PixelLayout::kChw,
                                 out.data());
    std::ofstream file(out_path, std::ios::binary);
    file.write(reinterpret_cast<const char*>(out.data()),
               static_cast<std::streamsize>(out.size() * sizeof(float)));
    if (!file)
      throw kennel::Error(kennel::ErrorCode::kPermissionDenied, "cannot write " + out_path);
    std::printf("%d %d\n", image.rows, image.cols);
  } catch (const kennel::Error& error) {
    std::fprintf(stderr, "error: %s\n", error.status().to_string().c_str());
    return 1;
  } catch (const std::exception& error) {  // cv::Exception
    std::fprintf(stderr, "error: %s\n", error.what());
    return 1;
  }
  return 0;
}

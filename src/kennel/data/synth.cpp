#include "kennel/data/synth.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>

// jpeglib.h needs FILE and size_t declared first.
#include <jpeglib.h>
#include <zlib.h>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "kennel/util/fs.h"
#include "kennel/util/hash.h"
#include "kennel/util/parallel.h"
#include "kennel/util/progress.h"

namespace kennel::data {

namespace fs = std::filesystem;

namespace {

constexpr std::array<const char*, 3> kSplitNames = {"train", "valid", "test"};
constexpr int kPlantedStream = 3;  // seed stream of planted files, after the three splits

// ---- randomness -------------------------------------------------------------

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Every image gets its own seed from (seed, split, class, index), so its
// pixels never depend on which thread drew it or what was drawn before it.
uint64_t image_seed(uint64_t seed, int stream, int64_t label, int64_t index) {
  uint64_t state = splitmix64(seed);
  state = splitmix64(state ^ static_cast<uint64_t>(stream));
  state = splitmix64(state ^ static_cast<uint64_t>(label));
  return splitmix64(state ^ static_cast<uint64_t>(index));
}

class SynthRng {
 public:
  explicit SynthRng(uint64_t seed) : engine_(seed) {}
  // Mapped from raw bits by hand: std::uniform_*_distribution differ between
  // standard libraries, and a seed should give the same dataset everywhere.
  double uniform(double low, double high) {
    return low + (high - low) * (static_cast<double>(engine_() >> 11) * 0x1.0p-53);
  }
  int integer(int low, int high) {  // inclusive
    return low + static_cast<int>(engine_() % static_cast<uint64_t>(high - low + 1));
  }
  uint64_t bits() { return engine_(); }

 private:
  std::mt19937_64 engine_;
};

// ---- class styles -------------------------------------------------------------

enum Shape { kCircle, kSquare, kTriangle, kCross, kStripes, kRing, kStar, kDiamond, kHexagon, kCrescent };
constexpr std::array<const char*, 10> kShapeNames = {"circle", "square",  "triangle", "cross",   "stripes",
                                                     "ring",   "star",    "diamond",  "hexagon", "crescent"};
struct NamedHue {
  const char* name;
  double hue;  // OpenCV's 0..180 scale
};
// Ordered so that neighbouring classes sit far apart on the colour wheel.
constexpr std::array<NamedHue, 12> kHues = {{{"red", 0},     {"green", 60},   {"blue", 120},
                                             {"yellow", 30}, {"cyan", 90},    {"magenta", 150},
                                             {"orange", 15}, {"teal", 75},    {"violet", 135},
                                             {"lime", 45},   {"azure", 105},  {"pink", 165}}};
enum Texture { kSolid, kDotted, kHatched, kChecked };
constexpr std::array<const char*, 4> kTextureNames = {"solid", "dotted", "hatched", "checked"};

struct ClassStyle {
  std::string name;
  int shape = 0;
  double hue = 0;
  int texture = 0;
};

// Shape cycles every 10 classes and hue every 12, so (shape, hue) repeats only
// after 60 classes; the texture then shifts by one, which keeps the first 240
// combinations distinct. Beyond that classes differ by a small hue offset only
// (still valid, less learnable: use fewer classes for learning experiments).
std::vector<ClassStyle> class_styles(int classes) {
  const int digits = std::max(3, static_cast<int>(std::to_string(classes - 1).size()));
  std::vector<ClassStyle> styles;
  styles.reserve(static_cast<size_t>(classes));
  for (int c = 0; c < classes; ++c) {
    ClassStyle style;
    style.shape = c % static_cast<int>(kShapeNames.size());
    const NamedHue& hue = kHues[static_cast<size_t>(c) % kHues.size()];
    style.texture = (c + c / 60) % static_cast<int>(kTextureNames.size());
    const int variant = c / 240;
    style.hue = std::fmod(hue.hue + variant * 4.0, 180.0);
    style.name = fmt::format("{:0{}}.{}_{}", c, digits, kShapeNames[static_cast<size_t>(style.shape)],
                             hue.name);
    if (style.texture != kSolid) style.name += std::string("_") + kTextureNames[static_cast<size_t>(style.texture)];
    if (variant > 0) style.name += fmt::format("_v{}", variant + 1);
    styles.push_back(std::move(style));
  }
  return styles;
}

// ---- drawing ----------------------------------------------------------------

cv::Scalar hsv_to_bgr(double hue, double saturation, double value) {
  cv::Mat hsv(1, 1, CV_8UC3,
              cv::Scalar(std::fmod(hue + 180.0, 180.0), std::clamp(saturation, 0.0, 255.0),
                         std::clamp(value, 0.0, 255.0)));
  cv::Mat bgr;
  cv::cvtColor(hsv, bgr, cv::COLOR_HSV2BGR);
  const auto pixel = bgr.at<cv::Vec3b>(0, 0);
  return {static_cast<double>(pixel[0]), static_cast<double>(pixel[1]), static_cast<double>(pixel[2])};
}

using Polygon = std::vector<cv::Point2d>;

Polygon regular_polygon(int corners, double radius, double start_degrees) {
  Polygon points;
  for (int i = 0; i < corners; ++i) {
    const double angle = (start_degrees + 360.0 * i / corners) * CV_PI / 180.0;
    points.emplace_back(radius * std::cos(angle), radius * std::sin(angle));
  }
  return points;
}

// A shape is a list of polygons in unit coordinates, each filled (true) or cut
// out again (false), drawn in order.
std::vector<std::pair<Polygon, bool>> shape_parts(int shape) {
  constexpr int kRound = 48;  // corners of a "circle"
  switch (shape) {
    case kCircle: return {{regular_polygon(kRound, 1.0, 0), true}};
    case kSquare: return {{regular_polygon(4, 1.1, 45), true}};
    case kTriangle: return {{regular_polygon(3, 1.1, -90), true}};
    case kCross: {
      const double w = 0.3;
      return {{{{-w, -1}, {w, -1}, {w, -w}, {1, -w}, {1, w}, {w, w}, {w, 1}, {-w, 1}, {-w, w}, {-1, w}, {-1, -w}, {-w, -w}},
               true}};
    }
    case kStripes: {
      std::vector<std::pair<Polygon, bool>> bars;
      for (int i = -1; i <= 1; ++i) {
        const double x = i * 0.66;
        bars.push_back({{{x - 0.2, -0.95}, {x + 0.2, -0.95}, {x + 0.2, 0.95}, {x - 0.2, 0.95}}, true});
      }
      return bars;
    }
    case kRing: return {{regular_polygon(kRound, 1.0, 0), true}, {regular_polygon(kRound, 0.55, 0), false}};
    case kStar: {
      Polygon points;
      for (int i = 0; i < 10; ++i) {
        const double radius = i % 2 == 0 ? 1.1 : 0.45;
        const double angle = (-90.0 + 36.0 * i) * CV_PI / 180.0;
        points.emplace_back(radius * std::cos(angle), radius * std::sin(angle));
      }
      return {{points, true}};
    }
    case kDiamond: return {{{{0, -1.1}, {0.65, 0}, {0, 1.1}, {-0.65, 0}}, true}};
    case kHexagon: return {{regular_polygon(6, 1.0, 0), true}};
    case kCrescent: {
      Polygon cut = regular_polygon(kRound, 0.85, 0);
      for (auto& point : cut) point += cv::Point2d(0.45, -0.15);
      return {{regular_polygon(kRound, 1.0, 0), true}, {cut, false}};
    }
    default: return {{regular_polygon(kRound, 1.0, 0), true}};
  }
}

// Anti-aliased coverage mask of the class's shape at a random pose.
cv::Mat draw_shape_mask(int shape, cv::Size size, SynthRng& rng, double& radius) {
  const int short_side = std::min(size.width, size.height);
  radius = short_side * rng.uniform(0.22, 0.38);
  const double margin = radius * 0.85;
  const cv::Point2d center(rng.uniform(margin, std::max(margin, size.width - margin)),
                           rng.uniform(margin, std::max(margin, size.height - margin)));
  const double angle = rng.uniform(0, 2 * CV_PI);
  const double stretch = rng.uniform(0.85, 1.15);  // mild anisotropic scale: intra-class variation
  const double cos_a = std::cos(angle), sin_a = std::sin(angle);
  constexpr int kShift = 4;  // sub-pixel precision for fillPoly
  cv::Mat mask = cv::Mat::zeros(size, CV_8UC1);
  for (const auto& [polygon, fill] : shape_parts(shape)) {
    std::vector<cv::Point> points;
    for (const auto& p : polygon) {
      const double x = p.x * radius * stretch, y = p.y * radius / stretch;
      points.emplace_back(static_cast<int>(std::lround((center.x + x * cos_a - y * sin_a) * (1 << kShift))),
                          static_cast<int>(std::lround((center.y + x * sin_a + y * cos_a) * (1 << kShift))));
    }
    cv::fillPoly(mask, std::vector<std::vector<cv::Point>>{points}, cv::Scalar(fill ? 255 : 0),
                 cv::LINE_AA, kShift);
  }
  return mask;
}

// The foreground: the class colour with its texture drawn in a darker shade.
cv::Mat draw_foreground(const ClassStyle& style, cv::Size size, double radius, SynthRng& rng) {
  const cv::Scalar colour = hsv_to_bgr(style.hue + rng.uniform(-5, 5), rng.uniform(170, 255),
                                       rng.uniform(160, 255));
  const cv::Scalar dark = colour * 0.4;
  cv::Mat foreground(size, CV_8UC3, colour);
  const int spacing = std::max(3, static_cast<int>(radius * 0.35));
  const int phase = rng.integer(0, spacing - 1);
  switch (style.texture) {
    case kDotted: {
      const int dot = std::max(1, spacing / 4);
      for (int y = phase; y < size.height; y += spacing) {
        for (int x = phase; x < size.width; x += spacing) cv::circle(foreground, {x, y}, dot, dark, cv::FILLED);
      }
      break;
    }
    case kHatched: {
      const int thickness = std::max(1, spacing / 3);
      for (int x = phase - size.height; x < size.width; x += spacing) {
        cv::line(foreground, {x, 0}, {x + size.height, size.height}, dark, thickness);
      }
      break;
    }
    case kChecked:
      for (int y = phase - spacing; y < size.height; y += spacing) {
        for (int x = phase - spacing; x < size.width; x += spacing) {
          if (((x - phase) / spacing + (y - phase) / spacing) % 2 == 0) {
            cv::rectangle(foreground, cv::Rect(x, y, spacing, spacing), dark, cv::FILLED);
          }
        }
      }
      break;
    default: break;
  }
  return foreground;
}

// A smooth low-saturation colour field with a few thin distractor lines.
cv::Mat draw_background(cv::Size size, SynthRng& rng) {
  cv::Mat corners(3, 3, CV_8UC3);
  for (int y = 0; y < 3; ++y) {
    for (int x = 0; x < 3; ++x) {
      const cv::Scalar colour = hsv_to_bgr(rng.uniform(0, 180), rng.uniform(0, 90), rng.uniform(60, 210));
      corners.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<uint8_t>(colour[0]), static_cast<uint8_t>(colour[1]),
                                              static_cast<uint8_t>(colour[2]));
    }
  }
  cv::Mat background;
  cv::resize(corners, background, size, 0, 0, cv::INTER_LINEAR);
  const int lines = rng.integer(1, 3);
  for (int i = 0; i < lines; ++i) {
    const cv::Point from(rng.integer(0, size.width - 1), rng.integer(0, size.height - 1));
    const cv::Point to(rng.integer(0, size.width - 1), rng.integer(0, size.height - 1));
    cv::line(background, from, to, hsv_to_bgr(rng.uniform(0, 180), rng.uniform(0, 255), rng.uniform(40, 255)),
             rng.integer(1, 2), cv::LINE_AA);
  }
  return background;
}

// One image of the class at `size` (BGR, 8-bit).
cv::Mat render_image(const ClassStyle& style, cv::Size size, SynthRng& rng) {
  cv::Mat background = draw_background(size, rng);
  double radius = 0;
  const cv::Mat mask = draw_shape_mask(style.shape, size, rng, radius);
  const cv::Mat foreground = draw_foreground(style, size, radius, rng);
  cv::Mat alpha, inverse;
  mask.convertTo(alpha, CV_32F, 1.0 / 255.0);
  cv::subtract(cv::Scalar(1.0), alpha, inverse);
  cv::Mat image;
  cv::blendLinear(foreground, background, alpha, inverse, image);
  // Sensor-like noise so that no two images share bytes and the task is not trivial.
  cv::Mat noise(size, CV_16SC3);
  cv::RNG noise_rng(rng.bits() | 1);
  noise_rng.fill(noise, cv::RNG::NORMAL, 0, rng.uniform(4, 14));
  cv::Mat noisy;
  cv::add(image, noise, noisy, cv::noArray(), CV_8U);
  return noisy;
}

cv::Size jittered_size(const SynthOptions& options, SynthRng& rng) {
  auto jitter = [&](int nominal) {
    return std::max(8, static_cast<int>(std::lround(nominal * rng.uniform(0.8, 1.2))));
  };
  const int width = jitter(options.width);
  return {width, jitter(options.height)};
}

std::string encode_or_throw(const std::string& extension, const cv::Mat& image,
                            const std::vector<int>& params = {}) {
  std::vector<uint8_t> bytes;
  if (!cv::imencode(extension, image, bytes, params)) {
    throw Error(internal_error("OpenCV could not encode a {}x{} image as {}", image.cols, image.rows, extension));
  }
  return {bytes.begin(), bytes.end()};
}

// ---- files --------------------------------------------------------------------

// With --overwrite a previous run's symlink may sit where we write: replace the
// link itself, never write through it to whatever it points at.
void remove_old_symlink(const fs::path& path) {
  std::error_code error;
  if (fs::is_symlink(fs::symlink_status(path, error))) fs::remove(path, error);
}

void write_file_or_throw(const fs::path& path, std::string_view bytes) {
  remove_old_symlink(path);
  std::FILE* file = std::fopen(path.c_str(), "wb");
  bool ok = file != nullptr;
  int error_number = errno;
  if (ok && !bytes.empty()) {
    ok = std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size();
    error_number = errno;
  }
  if (file != nullptr && std::fclose(file) != 0 && ok) {
    ok = false;
    error_number = errno;
  }
  if (ok) return;
  ErrorCode code = ErrorCode::kDataLoss;
  if (error_number == EACCES || error_number == EPERM || error_number == EROFS) code = ErrorCode::kPermissionDenied;
  if (error_number == ENOSPC || error_number == EDQUOT) code = ErrorCode::kResourceExhausted;
  throw Error(code, fmt::format("cannot write '{}': {}", path_text(path), std::strerror(error_number)));
}

void create_directories_or_throw(const fs::path& dir) {
  const Status status = kennel::create_directories(dir);
  if (!status.ok()) throw Error(status);
}

// `out` must be missing or an empty directory unless overwriting; nothing in it
// is ever deleted (only files with our own names are replaced).
Status prepare_output_dir(const fs::path& out, bool overwrite) {
  std::error_code error;
  const auto status = fs::status(out, error);
  if (fs::exists(status)) {
    if (!fs::is_directory(status)) {
      return {ErrorCode::kAlreadyExists,
              fmt::format("output '{}' exists and is not a directory: choose another folder", path_text(out))};
    }
    const bool empty = fs::is_empty(out, error);
    if (error) {
      return {ErrorCode::kPermissionDenied,
              fmt::format("cannot list output folder '{}': {}", path_text(out), error.message())};
    }
    if (!empty && !overwrite) {
      return {ErrorCode::kAlreadyExists,
              fmt::format("output folder '{}' is not empty: pass --overwrite to write into it "
                          "(files with the same names are replaced, nothing is deleted) or choose "
                          "another folder",
                          path_text(out))};
    }
  }
  return kennel::create_directories(out);
}

// ---- planted bad files --------------------------------------------------------

void append_u32be(std::string& out, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((value >> shift) & 0xFF));
}

void append_png_chunk(std::string& out, const char* type, const std::string& data) {
  append_u32be(out, static_cast<uint32_t>(data.size()));
  const std::string typed = std::string(type, 4) + data;
  out += typed;
  append_u32be(out, kennel::crc32(typed.data(), typed.size()));
}

// A decompression bomb's header: a valid PNG that claims 50000x50000 RGB but
// carries almost no data. Check must refuse it from the header alone.
std::string oversized_png() {
  std::string png("\x89PNG\r\n\x1a\n", 8);
  std::string header;
  append_u32be(header, 50000);
  append_u32be(header, 50000);
  header += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit RGB, deflate, no filter/interlace options
  append_png_chunk(png, "IHDR", header);
  const uint8_t row[4] = {0, 0, 0, 0};  // one filter byte + a pixel: far too little, never decoded
  uLongf compressed_size = compressBound(sizeof(row));
  std::string compressed(compressed_size, '\0');
  compress(reinterpret_cast<Bytef*>(compressed.data()), &compressed_size, row, sizeof(row));
  compressed.resize(compressed_size);
  append_png_chunk(png, "IDAT", compressed);
  append_png_chunk(png, "IEND", "");
  return png;
}

struct JpegErrorManager {
  jpeg_error_mgr base;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void on_jpeg_error(j_common_ptr info) {
  auto* manager = reinterpret_cast<JpegErrorManager*>(info->err);
  (*info->err->format_message)(info, manager->message);
  std::longjmp(manager->jump, 1);
}

// libjpeg reports errors through longjmp, so this function holds no C++
// objects with destructors. Returns false with `message` set on failure;
// `*out` is malloc'ed by libjpeg in both cases (the caller frees it).
bool write_cmyk_jpeg(const uint8_t* cmyk, int width, int height, int quality, unsigned char** out,
                     unsigned long* out_size, char* message) {
  jpeg_compress_struct info;
  JpegErrorManager errors;
  info.err = jpeg_std_error(&errors.base);
  errors.base.error_exit = on_jpeg_error;
  if (setjmp(errors.jump)) {
    std::strcpy(message, errors.message);
    jpeg_destroy_compress(&info);
    return false;
  }
  jpeg_create_compress(&info);
  jpeg_mem_dest(&info, out, out_size);
  info.image_width = static_cast<JDIMENSION>(width);
  info.image_height = static_cast<JDIMENSION>(height);
  info.input_components = 4;
  info.in_color_space = JCS_CMYK;
  jpeg_set_defaults(&info);  // picks JCS_CMYK for the file and writes the Adobe marker
  jpeg_set_quality(&info, quality, TRUE);
  jpeg_start_compress(&info, TRUE);
  while (info.next_scanline < info.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(cmyk + size_t{info.next_scanline} * static_cast<size_t>(width) * 4);
    jpeg_write_scanlines(&info, &row, 1);
  }
  jpeg_finish_compress(&info);
  jpeg_destroy_compress(&info);
  return true;
}

// A 4-component CMYK JPEG of `bgr`, stored inverted as Adobe Photoshop writes
// it (the convention decoders, OpenCV's included, assume for CMYK JPEGs with an
// Adobe marker): with k' = max(R,G,B), each stored channel c' satisfies R = c'k'/255.
std::string cmyk_jpeg(const cv::Mat& bgr, int quality) {
  std::vector<uint8_t> cmyk(static_cast<size_t>(bgr.rows) * static_cast<size_t>(bgr.cols) * 4);
  size_t pos = 0;
  for (int y = 0; y < bgr.rows; ++y) {
    for (int x = 0; x < bgr.cols; ++x) {
      const auto& pixel = bgr.at<cv::Vec3b>(y, x);
      const int blue = pixel[0], green = pixel[1], red = pixel[2];
      const int k = std::max({red, green, blue});
      auto scaled = [k](int channel) { return static_cast<uint8_t>(k == 0 ? 0 : (channel * 255 + k / 2) / k); };
      cmyk[pos++] = scaled(red);
      cmyk[pos++] = scaled(green);
      cmyk[pos++] = scaled(blue);
      cmyk[pos++] = static_cast<uint8_t>(k);
    }
  }
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  char message[JMSG_LENGTH_MAX] = {};
  const bool ok = write_cmyk_jpeg(cmyk.data(), bgr.cols, bgr.rows, quality, &buffer, &size, message);
  std::string bytes = ok ? std::string(reinterpret_cast<const char*>(buffer), size) : std::string();
  std::free(buffer);
  if (!ok) throw Error(internal_error("libjpeg could not write a CMYK JPEG: {}", message));
  return bytes;
}

std::string garbage_bytes(SynthRng& rng) {
  // A text prefix so the bytes can never start with an image signature by chance.
  std::string bytes = "this is not an image: ";
  const int length = rng.integer(64, 512);
  for (int i = 0; i < length; ++i) bytes.push_back(static_cast<char>(rng.bits() & 0xFF));
  return bytes;
}

std::string planted_file_name(const std::string& kind, int occurrence) {
  if (kind == "symlink_loop") return fmt::format("bad_{}_{}", kind, occurrence);
  const char* extension = kind == "too_large" || kind == "has_alpha" ? ".png" : ".jpg";
  return fmt::format("bad_{}_{}{}", kind, occurrence, extension);
}

// The content of a planted regular file (every kind but the symlinks).
std::string planted_bytes(const std::string& kind, const ClassStyle& style, const std::string& duplicate_of,
                          const SynthOptions& options, SynthRng& rng) {
  const std::vector<int> jpeg_params = {cv::IMWRITE_JPEG_QUALITY, options.jpeg_quality};
  if (kind == "zero_byte") return {};
  if (kind == "not_an_image") return garbage_bytes(rng);
  if (kind == "too_large") return oversized_png();
  if (kind == "duplicate") return duplicate_of;
  if (kind == "too_small") return encode_or_throw(".jpg", render_image(style, {8, 8}, rng), jpeg_params);
  // Never smaller than check's too_small limit, whatever --size says.
  cv::Size size = jittered_size(options, rng);
  size.width = std::max(size.width, 24);
  size.height = std::max(size.height, 24);
  const cv::Mat image = render_image(style, size, rng);
  if (kind == "truncated") {
    // 60 %: well inside the entropy-coded data, so the end marker FFD9 is gone.
    std::string bytes = encode_or_throw(".jpg", image, jpeg_params);
    bytes.resize(bytes.size() * 6 / 10);
    return bytes;
  }
  if (kind == "grayscale") {
    cv::Mat gray;
    cv::cvtColor(image, gray, cv::COLOR_BGR2GRAY);
    return encode_or_throw(".jpg", gray, jpeg_params);
  }
  if (kind == "cmyk") return cmyk_jpeg(image, options.jpeg_quality);
  if (kind == "has_alpha") {
    cv::Mat bgra;
    cv::cvtColor(image, bgra, cv::COLOR_BGR2BGRA);
    for (int y = 0; y < bgra.rows; ++y) {  // a vertical fade to transparent
      for (int x = 0; x < bgra.cols; ++x) bgra.at<cv::Vec4b>(y, x)[3] = static_cast<uint8_t>(255 - 200 * y / bgra.rows);
    }
    return encode_or_throw(".png", bgra);
  }
  throw Error(internal_error("synth has no recipe for planted kind '{}'", kind));
}

std::vector<PlantedFile> plant_bad_files(const fs::path& out, const std::vector<ClassStyle>& styles,
                                         const std::string& duplicate_of, const SynthOptions& options) {
  const auto& kinds = planted_kinds();
  std::vector<PlantedFile> planted;
  for (int i = 0; i < options.corrupt; ++i) {
    const std::string& kind = kinds[static_cast<size_t>(i) % kinds.size()];
    const int occurrence = i / static_cast<int>(kinds.size());
    const ClassStyle& style = styles[static_cast<size_t>(i % options.classes)];
    const std::string name = planted_file_name(kind, occurrence);
    const std::string relative = "train/" + style.name + "/" + name;
    const fs::path path = out / "train" / style.name / name;
    std::error_code error;
    if (kind == "unreadable") {
      // A dangling symlink: no permission bits to chmod, so unreadable even for root.
      remove_old_symlink(path);
      fs::create_symlink("no-such-file-" + name, path, error);
    } else if (kind == "symlink_loop") {
      remove_old_symlink(path);
      fs::create_directory_symlink(".", path, error);  // the class folder inside itself
    } else {
      SynthRng rng(image_seed(options.seed, kPlantedStream, i, 0));
      write_file_or_throw(path, planted_bytes(kind, style, duplicate_of, options, rng));
    }
    if (error) throw Error(ErrorCode::kDataLoss, fmt::format("cannot create symlink '{}': {}", path_text(path), error.message()));
    planted.push_back({relative, kind});
  }
  return planted;
}

// ---- the good images ------------------------------------------------------------

struct ImageJob {
  int split = 0;
  int label = 0;
  int index = 0;
  fs::path path;
};

int count_for_split(const SynthOptions& options, int split) {
  if (split == 0) return options.per_class;
  const double fraction = split == 1 ? options.valid_fraction : options.test_fraction;
  return static_cast<int>(std::lround(options.per_class * fraction));
}

// One file of class 0 has a non-ASCII name, so every consumer is exercised on
// one. It keeps the class-name prefix so that it sorts before the planted
// "bad_*" files: check calls the later of two equal files the duplicate.
std::string image_file_name(const ClassStyle& style, int split, int label, int index, int count) {
  const int digits = std::max(4, static_cast<int>(std::to_string(count - 1).size()));
  const bool non_ascii = split == 0 && label == 0 && index == std::min(1, count - 1);
  return fmt::format("{}_{}{:0{}}.jpg", style.name, non_ascii ? "café_犬_" : "", index, digits);
}

SynthSummary generate(const fs::path& out, const SynthOptions& options) {
  SynthSummary summary;
  const std::vector<ClassStyle> styles = class_styles(options.classes);
  for (const auto& style : styles) summary.classes.push_back(style.name);

  std::vector<ImageJob> jobs;
  for (int split = 0; split < static_cast<int>(kSplitNames.size()); ++split) {
    const int count = count_for_split(options, split);
    if (count == 0) continue;
    for (int label = 0; label < options.classes; ++label) {
      const ClassStyle& style = styles[static_cast<size_t>(label)];
      const fs::path dir = out / kSplitNames[static_cast<size_t>(split)] / style.name;
      create_directories_or_throw(dir);
      for (int index = 0; index < count; ++index) {
        jobs.push_back({split, label, index, dir / image_file_name(style, split, label, index, count)});
      }
    }
  }

  const std::vector<int> jpeg_params = {cv::IMWRITE_JPEG_QUALITY, options.jpeg_quality};
  {
    Progress progress("generating images", jobs.size(), options.quiet);
    parallel_for(jobs.size(), options.threads, [&](size_t i) {
      const ImageJob& job = jobs[i];
      SynthRng rng(image_seed(options.seed, job.split, job.label, job.index));
      const cv::Size size = jittered_size(options, rng);
      const cv::Mat image = render_image(styles[static_cast<size_t>(job.label)], size, rng);
      write_file_or_throw(job.path, encode_or_throw(".jpg", image, jpeg_params));
      progress.advance();
    });
  }
  summary.images = static_cast<int64_t>(jobs.size());

  if (options.corrupt > 0) {
    // The first training image: it precedes every planted copy in check's order.
    auto original = read_file_bytes(jobs.front().path);
    if (!original.ok()) throw Error(original.status());
    summary.planted = plant_bad_files(out, styles, std::string(original->begin(), original->end()), options);
  }

  nlohmann::json planted = nlohmann::json::array();
  for (const auto& file : summary.planted) planted.push_back({{"path", file.path}, {"kind", file.kind}});
  const nlohmann::json document = {
      {"version", 1}, {"planted", planted}, {"classes", summary.classes}, {"images", summary.images}};
  const Status written = write_file_atomic(out / "planted.json", document.dump(2) + "\n");
  if (!written.ok()) throw Error(written);
  return summary;
}

}  // namespace

Status SynthOptions::validate() const {
  if (classes < 1 || classes > 10000) return invalid_argument("--classes must be between 1 and 10000, got {}", classes);
  if (per_class < 1 || per_class > 1'000'000) {
    return invalid_argument("--per-class must be between 1 and 1000000, got {}", per_class);
  }
  if (width < 8 || width > 4096) return invalid_argument("--size width must be between 8 and 4096, got {}", width);
  if (height < 8 || height > 4096) return invalid_argument("--size height must be between 8 and 4096, got {}", height);
  if (!(valid_fraction >= 0.0 && valid_fraction < 1.0)) {
    return invalid_argument("--valid-ratio must be in [0, 1), got {}", valid_fraction);
  }
  if (!(test_fraction >= 0.0 && test_fraction < 1.0)) {
    return invalid_argument("--test-ratio must be in [0, 1), got {}", test_fraction);
  }
  if (corrupt < 0 || corrupt > 1'000'000) return invalid_argument("--corrupt must be between 0 and 1000000, got {}", corrupt);
  if (jpeg_quality < 1 || jpeg_quality > 100) {
    return invalid_argument("--quality must be between 1 and 100, got {}", jpeg_quality);
  }
  if (threads < 0) return invalid_argument("--threads must be >= 0 (0 = all cores), got {}", threads);
  return {};
}

Result<SynthSummary> generate_synthetic_dataset(const fs::path& out, const SynthOptions& options) {
  KENNEL_RETURN_IF_ERROR(options.validate());
  KENNEL_RETURN_IF_ERROR(prepare_output_dir(out, options.overwrite));
  const std::string context = fmt::format("generating a synthetic dataset in '{}'", path_text(out));
  try {
    return generate(out, options);
  } catch (const Error& error) {
    return error.status().with_context(context);
  } catch (const cv::Exception& error) {
    return internal_error("{}: OpenCV failed: {}", context, error.what());
  } catch (const std::exception& error) {
    return internal_error("{}: {}", context, error.what());
  }
}

}  // namespace kennel::data

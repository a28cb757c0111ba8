// Helpers shared by unit tests: a temporary directory that cleans itself up,
// and small image files made on the spot.
#pragma once

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

namespace kennel::testing {

class TempDir {
 public:
  TempDir() {
    std::random_device device;
    path_ = std::filesystem::temp_directory_path() /
            ("kennel-test-" + std::to_string(device()) + std::to_string(device()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code error;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::add, error);
    std::filesystem::remove_all(path_, error);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// A BGR image with a smooth gradient plus noise (so JPEG has something to encode).
inline cv::Mat make_bgr_image(int width, int height, uint32_t seed = 1) {
  cv::Mat image(height, width, CV_8UC3);
  std::mt19937 rng(seed);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      image.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<uint8_t>(x * 255 / std::max(1, width - 1)),
                                            static_cast<uint8_t>(y * 255 / std::max(1, height - 1)),
                                            static_cast<uint8_t>(rng() % 64 + 96));
    }
  }
  return image;
}

inline std::vector<uint8_t> encode(const cv::Mat& image, const std::string& extension,
                                   const std::vector<int>& params = {}) {
  std::vector<uint8_t> bytes;
  cv::imencode(extension, image, bytes, params);
  return bytes;
}

inline void write_bytes(const std::filesystem::path& path, const std::vector<uint8_t>& bytes) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

inline void write_image(const std::filesystem::path& path, int width, int height, uint32_t seed = 1) {
  write_bytes(path, encode(make_bgr_image(width, height, seed), path.extension().string()));
}

}  // namespace kennel::testing

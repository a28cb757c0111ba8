#include "kennel/data/fashion_mnist.h"

#include <zlib.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <map>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include "unit/test_util.h"

namespace kennel::data {
namespace {

namespace fs = std::filesystem;
using kennel::testing::TempDir;

void append_u32be(std::vector<uint8_t>& out, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(value >> shift));
}

// IDX files of `count` images whose pixels all equal their index, labels i % 10.
std::vector<uint8_t> idx_images(uint32_t count, uint32_t magic = 2051) {
  std::vector<uint8_t> bytes;
  append_u32be(bytes, magic);
  append_u32be(bytes, count);
  append_u32be(bytes, 28);
  append_u32be(bytes, 28);
  for (uint32_t i = 0; i < count; ++i) bytes.insert(bytes.end(), 28 * 28, static_cast<uint8_t>(i));
  return bytes;
}
std::vector<uint8_t> idx_labels(uint32_t count) {
  std::vector<uint8_t> bytes;
  append_u32be(bytes, 2049);
  append_u32be(bytes, count);
  for (uint32_t i = 0; i < count; ++i) bytes.push_back(static_cast<uint8_t>(i % 10));
  return bytes;
}

void write_gzip(const fs::path& path, const std::vector<uint8_t>& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr) << path;
  ASSERT_EQ(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(file), Z_OK);
}

std::vector<uint8_t> read_gzip(const fs::path& path) {
  std::vector<uint8_t> bytes;
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) return bytes;
  uint8_t buffer[65536];
  int n = 0;
  while ((n = gzread(file, buffer, sizeof(buffer))) > 0) bytes.insert(bytes.end(), buffer, buffer + n);
  gzclose(file);
  return bytes;
}

// A miniature Fashion-MNIST, uncompressed: 3 train and 2 test images per class.
void write_fake_source(const fs::path& dir) {
  testing::write_bytes(dir / "train-images-idx3-ubyte", idx_images(30));
  testing::write_bytes(dir / "train-labels-idx1-ubyte", idx_labels(30));
  testing::write_bytes(dir / "t10k-images-idx3-ubyte", idx_images(20));
  testing::write_bytes(dir / "t10k-labels-idx1-ubyte", idx_labels(20));
}

FashionMnistImportOptions quiet_options(const fs::path& source) {
  FashionMnistImportOptions options;
  options.source = source;
  options.threads = 2;
  options.quiet = true;
  return options;
}

std::vector<std::string> expected_folders() {
  return {"0.T-shirt_top", "1.Trouser", "2.Pullover", "3.Dress",   "4.Coat",
          "5.Sandal",      "6.Shirt",   "7.Sneaker",  "8.Bag",     "9.Ankle_boot"};
}

std::vector<std::string> sorted_folder_names(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// Relative path of every file under `root`, sorted.
std::vector<std::string> list_files(const fs::path& root) {
  std::vector<std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.is_regular_file()) files.push_back(fs::relative(entry.path(), root).string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(FashionMnistTest, ImportsASmallSubsetOfTheDebianFiles) {
  const fs::path source = kFashionMnistDefaultSource;
  if (!fs::exists(source / "train-labels-idx1-ubyte.gz")) {
    GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  }
  TempDir dir;
  FashionMnistImportOptions options = quiet_options(source);
  options.per_class = 5;
  options.valid_fraction = 0.2;  // 1 of 5 per class
  const auto summary = import_fashion_mnist(dir.path(), options);
  ASSERT_TRUE(summary.ok()) << summary.status().to_string();
  EXPECT_EQ(summary->classes, expected_folders());
  EXPECT_EQ(summary->train, 40);
  EXPECT_EQ(summary->valid, 10);
  EXPECT_EQ(summary->test, 50);  // test_per_class -1: same as per_class

  const auto train_labels = read_gzip(source / "train-labels-idx1-ubyte.gz");
  const auto test_labels = read_gzip(source / "t10k-labels-idx1-ubyte.gz");
  ASSERT_EQ(train_labels.size(), 8u + 60000);
  const std::map<std::string, size_t> per_class = {{"train", 4}, {"valid", 1}, {"test", 5}};
  for (const auto& [split, count] : per_class) {
    ASSERT_EQ(sorted_folder_names(dir / split), expected_folders()) << split;
    for (size_t label = 0; label < 10; ++label) {
      const fs::path class_dir = dir / split / expected_folders()[label];
      size_t files = 0;
      for (const auto& entry : fs::directory_iterator(class_dir)) {
        ++files;
        const cv::Mat image = cv::imread(entry.path().string(), cv::IMREAD_UNCHANGED);
        ASSERT_FALSE(image.empty()) << entry.path();
        EXPECT_EQ(image.type(), CV_8UC1) << entry.path();
        EXPECT_EQ(image.cols, 28);
        EXPECT_EQ(image.rows, 28);
        // The file name is the index in the IDX file: its label must be this class.
        const size_t index = std::stoul(entry.path().stem().string());
        const auto& labels = split == "test" ? test_labels : train_labels;
        ASSERT_LT(8 + index, labels.size());
        EXPECT_EQ(labels[8 + index], label) << entry.path();
      }
      EXPECT_EQ(files, count) << class_dir;
    }
  }
}

TEST(FashionMnistTest, ReadsUncompressedFilesAndKeepsPixelsExact) {
  TempDir dir;
  write_fake_source(dir / "source");
  FashionMnistImportOptions options = quiet_options(dir / "source");
  options.valid_fraction = 0.34;  // per class: 3 -> 1 valid, 2 train
  const auto summary = import_fashion_mnist(dir / "out", options);
  ASSERT_TRUE(summary.ok()) << summary.status().to_string();
  EXPECT_EQ(summary->train, 20);
  EXPECT_EQ(summary->valid, 10);
  EXPECT_EQ(summary->test, 20);
  // Image i is filled with the value i and has label i % 10.
  for (const auto& relative : list_files(dir / "out")) {
    const fs::path path = dir / "out" / relative;
    const int index = std::stoi(path.stem().string());
    EXPECT_EQ(path.parent_path().filename().string(), expected_folders()[static_cast<size_t>(index % 10)]);
    const cv::Mat image = cv::imread(path.string(), cv::IMREAD_UNCHANGED);
    ASSERT_EQ(image.type(), CV_8UC1);
    double low = 0, high = 0;
    cv::minMaxLoc(image, &low, &high);
    EXPECT_EQ(low, index);
    EXPECT_EQ(high, index);
  }
}

TEST(FashionMnistTest, SameSeedSameSubset) {
  TempDir dir;
  write_fake_source(dir / "source");
  FashionMnistImportOptions options = quiet_options(dir / "source");
  options.per_class = 2;
  options.test_per_class = 1;
  options.valid_fraction = 0.5;
  ASSERT_TRUE(import_fashion_mnist(dir / "a", options).ok());
  options.threads = 1;
  ASSERT_TRUE(import_fashion_mnist(dir / "b", options).ok());
  EXPECT_EQ(list_files(dir / "a"), list_files(dir / "b"));
  EXPECT_EQ(list_files(dir / "a").size(), 30u);

  // Other seeds pick other images (with 3 per class, some seed among a few must differ).
  bool differs = false;
  for (uint64_t seed = 1; seed <= 4 && !differs; ++seed) {
    options.seed = seed;
    const fs::path out = dir / ("seed" + std::to_string(seed));
    ASSERT_TRUE(import_fashion_mnist(out, options).ok());
    differs = list_files(out) != list_files(dir / "a");
  }
  EXPECT_TRUE(differs);
}

TEST(FashionMnistTest, WrongMagicNumberIsAClearError) {
  TempDir dir;
  write_gzip(dir / "train-images-idx3-ubyte.gz", idx_images(10, /*magic=*/2049));
  write_gzip(dir / "train-labels-idx1-ubyte.gz", idx_labels(10));
  const auto result = import_fashion_mnist(dir / "out", quiet_options(dir.path()));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), ErrorCode::kDataLoss);
  const std::string& message = result.status().message();
  EXPECT_NE(message.find("train-images-idx3-ubyte.gz"), std::string::npos) << message;
  EXPECT_NE(message.find("magic number 2049, expected 2051"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(dir / "out")) << "nothing is written before the input is known good";
}

TEST(FashionMnistTest, TruncatedOrMismatchedFilesAreClearErrors) {
  TempDir dir;
  auto images = idx_images(10);
  images.resize(images.size() - 100);
  testing::write_bytes(dir / "short" / "train-images-idx3-ubyte", images);
  testing::write_bytes(dir / "short" / "train-labels-idx1-ubyte", idx_labels(10));
  auto result = import_fashion_mnist(dir / "out", quiet_options(dir / "short"));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), ErrorCode::kDataLoss);
  EXPECT_NE(result.status().message().find("truncated"), std::string::npos) << result.status().message();

  testing::write_bytes(dir / "mismatch" / "train-images-idx3-ubyte", idx_images(10));
  testing::write_bytes(dir / "mismatch" / "train-labels-idx1-ubyte", idx_labels(9));
  result = import_fashion_mnist(dir / "out", quiet_options(dir / "mismatch"));
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("has 9 labels"), std::string::npos) << result.status().message();

  // A gzip stream cut short.
  fs::create_directories(dir / "cut");
  write_gzip(dir / "cut" / "train-images-idx3-ubyte.gz", idx_images(50));
  std::ifstream in(dir / "cut" / "train-images-idx3-ubyte.gz", std::ios::binary);
  std::vector<uint8_t> gz{std::istreambuf_iterator<char>(in), {}};
  in.close();
  gz.resize(gz.size() / 2);
  testing::write_bytes(dir / "cut" / "train-images-idx3-ubyte.gz", gz);
  write_gzip(dir / "cut" / "train-labels-idx1-ubyte.gz", idx_labels(50));
  result = import_fashion_mnist(dir / "out", quiet_options(dir / "cut"));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), ErrorCode::kDataLoss);
  EXPECT_NE(result.status().message().find("train-images-idx3-ubyte.gz"), std::string::npos)
      << result.status().message();
}

TEST(FashionMnistTest, MissingFilesSuggestInstallingTheDebianPackage) {
  TempDir dir;
  auto result = import_fashion_mnist(dir / "out", quiet_options(dir / "no-such-folder"));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), ErrorCode::kNotFound);
  EXPECT_NE(result.status().message().find("apt-get install dataset-fashion-mnist"), std::string::npos);

  fs::create_directories(dir / "empty");
  result = import_fashion_mnist(dir / "out", quiet_options(dir / "empty"));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), ErrorCode::kNotFound);
  EXPECT_NE(result.status().message().find("train-images-idx3-ubyte.gz"), std::string::npos);
  EXPECT_NE(result.status().message().find("apt-get install dataset-fashion-mnist"), std::string::npos);
}

TEST(FashionMnistTest, AskingForMoreThanAClassHoldsIsAnError) {
  TempDir dir;
  write_fake_source(dir / "source");
  FashionMnistImportOptions options = quiet_options(dir / "source");
  options.per_class = 4;  // the fake train file has 3 per class
  auto result = import_fashion_mnist(dir / "out", options);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(result.status().message().find("--per-class 4"), std::string::npos) << result.status().message();
}

TEST(FashionMnistTest, RefusesANonEmptyFolderUnlessOverwriting) {
  TempDir dir;
  write_fake_source(dir / "source");
  testing::write_bytes(dir / "out" / "notes.txt", {'m', 'i', 'n', 'e'});
  FashionMnistImportOptions options = quiet_options(dir / "source");
  auto refused = import_fashion_mnist(dir / "out", options);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), ErrorCode::kAlreadyExists);
  EXPECT_NE(refused.status().message().find("--overwrite"), std::string::npos);
  options.overwrite = true;
  ASSERT_TRUE(import_fashion_mnist(dir / "out", options).ok());
  EXPECT_TRUE(fs::exists(dir / "out" / "notes.txt"));
  EXPECT_TRUE(fs::exists(dir / "out" / "train" / "0.T-shirt_top"));
}

TEST(FashionMnistTest, ValidateNamesTheBadField) {
  EXPECT_TRUE(FashionMnistImportOptions().validate().ok());
  FashionMnistImportOptions options;
  options.per_class = -1;
  EXPECT_NE(options.validate().message().find("--per-class must be >= 0"), std::string::npos);
  options = {};
  options.test_per_class = -2;
  EXPECT_NE(options.validate().message().find("--test-per-class must be >= -1"), std::string::npos);
  options = {};
  options.valid_fraction = 1.0;
  EXPECT_NE(options.validate().message().find("--valid-ratio must be in [0, 1), got 1"), std::string::npos);
  options.valid_fraction = -0.5;
  EXPECT_EQ(options.validate().code(), ErrorCode::kInvalidArgument);
  options = {};
  options.threads = -1;
  EXPECT_NE(options.validate().message().find("--threads"), std::string::npos);
  EXPECT_EQ(fashion_mnist_class_names().size(), 10u);
  EXPECT_EQ(fashion_mnist_class_names().front(), "T-shirt_top");
}

}  // namespace
}  // namespace kennel::data

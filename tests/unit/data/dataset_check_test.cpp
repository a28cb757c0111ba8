#include "kennel/data/dataset_check.h"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "kennel/util/hash.h"
#include "unit/test_util.h"

namespace kennel::data {
namespace {

using testing::encode;
using testing::make_bgr_image;
using kennel::testing::TempDir;
using testing::write_bytes;
using testing::write_image;

std::vector<std::string> issue_names(const FileReport& file) {
  std::vector<std::string> names;
  for (const auto& issue : file.issues) names.emplace_back(issue_kind_name(issue.kind));
  return names;
}

const FileReport* find_file(const DatasetReport& report, const std::string& suffix) {
  for (const auto& file : report.files) {
    if (file.path.size() >= suffix.size() &&
        file.path.compare(file.path.size() - suffix.size(), suffix.size(), suffix) == 0) {
      return &file;
    }
  }
  return nullptr;
}

class DatasetCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 4; ++i) {
      write_image(dir_ / ("train/a/good" + std::to_string(i) + ".jpg"), 40, 30, i);
      write_image(dir_ / ("train/b/good" + std::to_string(i) + ".png"), 30, 40, 10 + i);
    }
    write_image(dir_ / "valid/a/v.jpg", 32, 32, 100);
    write_image(dir_ / "valid/b/v.jpg", 32, 32, 101);
  }
  DatasetReport check(CheckOptions options = {}) {
    options.quiet = true;
    auto report = check_dataset(dir_.path(), options);
    EXPECT_TRUE(report.ok()) << report.status().to_string();
    return std::move(report).value();
  }
  TempDir dir_;
};

TEST_F(DatasetCheckTest, CleanDatasetIsUsable) {
  const auto report = check();
  EXPECT_TRUE(report.usable);
  ASSERT_EQ(report.splits.size(), 2u);
  EXPECT_EQ(report.splits[0].usable, 8);
  EXPECT_EQ(report.splits[0].errors, 0);
  EXPECT_DOUBLE_EQ(report.splits[0].imbalance, 1.0);
  for (const auto& file : report.files) EXPECT_TRUE(file.issues.empty()) << file.path;
}

TEST_F(DatasetCheckTest, EveryKindOfBadFileIsReportedWithItsReason) {
  write_bytes(dir_ / "train/a/zero.jpg", {});
  write_bytes(dir_ / "train/a/garbage.jpg", {'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm', 'g'});
  auto truncated = encode(make_bgr_image(100, 80), ".jpg");
  truncated.resize(truncated.size() * 6 / 10);
  write_bytes(dir_ / "train/a/truncated.jpg", truncated);
  write_image(dir_ / "train/a/tiny.jpg", 8, 8);
  cv::Mat gray(30, 30, CV_8UC1, cv::Scalar(50));
  write_bytes(dir_ / "train/b/gray.jpg", encode(gray, ".jpg"));
  cv::Mat rgba(30, 30, CV_8UC4, cv::Scalar(1, 2, 3, 100));
  write_bytes(dir_ / "train/b/alpha.png", encode(rgba, ".png"));
  std::filesystem::copy_file(dir_ / "train/a/good0.jpg", dir_ / "valid/b/copy.jpg");
  std::filesystem::create_symlink(dir_ / "nowhere.jpg", dir_ / "train/b/dangling.jpg");
  ::mkfifo((dir_ / "train/b/fifo.jpg").c_str(), 0644);

  const auto report = check();
  EXPECT_TRUE(report.usable);
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"zero.jpg", "zero_byte"},       {"garbage.jpg", "not_an_image"},
      {"truncated.jpg", "truncated"},  {"tiny.jpg", "too_small"},
      {"gray.jpg", "grayscale"},       {"alpha.png", "has_alpha"},
      {"copy.jpg", "duplicate"},       {"dangling.jpg", "unreadable"},
      {"fifo.jpg", "unreadable"}};
  for (const auto& [name, issue] : expected) {
    const FileReport* file = find_file(report, name);
    ASSERT_NE(file, nullptr) << name;
    EXPECT_EQ(issue_names(*file), std::vector<std::string>{issue}) << name;
  }
  // The duplicate crosses splits, which leaks training data into evaluation.
  EXPECT_NE(find_file(report, "copy.jpg")->issues[0].detail.find("leaks"), std::string::npos);
  EXPECT_EQ(report.splits[0].usable, 8 + 2);  // gray and alpha are usable
  EXPECT_EQ(report.splits[0].errors, 6);

  const auto json = to_json(report);
  EXPECT_EQ(json["issue_counts"]["truncated"], 1);
  EXPECT_EQ(json["summary"]["skipped"], 6);
  const auto text = format_report_text(report);
  EXPECT_NE(text.find("truncated (1)"), std::string::npos);
  EXPECT_NE(text.find("verdict: usable"), std::string::npos);
}

TEST_F(DatasetCheckTest, DecompressionBombIsRefusedByThePixelLimit) {
  // A JPEG header claiming 50000x50000: SOF0 patched into a small real JPEG.
  auto jpeg = encode(make_bgr_image(16, 16), ".jpg");
  for (size_t i = 2; i + 9 < jpeg.size(); ++i) {
    if (jpeg[i] == 0xFF && jpeg[i + 1] == 0xC0) {
      jpeg[i + 5] = 0xC3; jpeg[i + 6] = 0x50;  // height 50000
      jpeg[i + 7] = 0xC3; jpeg[i + 8] = 0x50;  // width 50000
      break;
    }
  }
  write_bytes(dir_ / "train/a/bomb.jpg", jpeg);
  auto report = check();
  const FileReport* bomb = find_file(report, "bomb.jpg");
  ASSERT_NE(bomb, nullptr);
  EXPECT_EQ(issue_names(*bomb), std::vector<std::string>{"too_large"});
  EXPECT_NE(bomb->issues[0].detail.find("50000x50000"), std::string::npos);

  CheckOptions tight;
  tight.max_pixels = 1000;  // 40x30 = 1200 pixels: now too large
  report = check(tight);
  EXPECT_EQ(issue_names(*find_file(report, "good0.jpg")), std::vector<std::string>{"too_large"});
}

// Regression (issue 16): width x height of a 4Gx4G PNG header overflowed int64_t in
// check_image_file, so the claim slipped past --max-pixels and read as "truncated".
TEST_F(DatasetCheckTest, HugeClaimedSizeIsTooLargeNotTruncated) {
  const std::string png("\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\xff\xff\xff\xff\xff\xff\xff\xff", 24);
  write_bytes(dir_ / "train/a/huge.png", std::vector<uint8_t>(png.begin(), png.end()));
  const auto report = check();
  const FileReport* huge = find_file(report, "huge.png");
  ASSERT_NE(huge, nullptr);
  EXPECT_EQ(issue_names(*huge), std::vector<std::string>{"too_large"});
  EXPECT_NE(huge->issues[0].detail.find("4294967295x4294967295"), std::string::npos) << huge->issues[0].detail;
}

TEST_F(DatasetCheckTest, UnreadableFile) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads files whatever their mode";
  write_image(dir_ / "train/a/secret.jpg", 20, 20);
  std::filesystem::permissions(dir_ / "train/a/secret.jpg", std::filesystem::perms::none);
  const auto report = check();
  EXPECT_EQ(issue_names(*find_file(report, "secret.jpg")), std::vector<std::string>{"unreadable"});
}

TEST_F(DatasetCheckTest, CorruptPixelData) {
  auto png = encode(make_bgr_image(64, 64), ".png");
  for (size_t i = 60; i < png.size() - 20; i += 7) png[i] ^= 0x5A;
  write_bytes(dir_ / "train/a/corrupt.png", png);
  const auto report = check();
  EXPECT_EQ(issue_names(*find_file(report, "corrupt.png")), std::vector<std::string>{"corrupt"});
}

TEST_F(DatasetCheckTest, ImbalanceIsLargestOverSmallest) {
  for (int i = 4; i < 12; ++i) write_image(dir_ / ("train/a/more" + std::to_string(i) + ".jpg"), 20, 20, i);
  const auto report = check();
  EXPECT_DOUBLE_EQ(report.splits[0].imbalance, 12.0 / 4.0);
}

TEST(DatasetCheckUsabilityTest, NoReadableImagesIsUnusable) {
  TempDir dir;
  write_bytes(dir / "train/a/x.jpg", {});
  write_bytes(dir / "train/b/y.jpg", {'z'});
  CheckOptions options;
  options.quiet = true;
  options.scan.valid_fraction = 0;
  auto report = check_dataset(dir.path(), options);
  ASSERT_TRUE(report.ok());
  EXPECT_FALSE(report->usable);
  EXPECT_NE(format_report_text(*report).find("NOT usable"), std::string::npos);
}

TEST(DatasetCheckUsabilityTest, OneClassIsUnusable) {
  TempDir dir;
  write_image(dir / "train/only/x.jpg", 20, 20);
  CheckOptions options;
  options.quiet = true;
  auto report = check_dataset(dir.path(), options);
  ASSERT_TRUE(report.ok());
  EXPECT_FALSE(report->usable);
  ASSERT_FALSE(report->problems.empty());
  EXPECT_NE(report->problems[0].find("at least two"), std::string::npos);
}

TEST(DatasetCheckUsabilityTest, MissingRootIsAnError) {
  CheckOptions options;
  options.quiet = true;
  auto report = check_dataset("/definitely/not/here", options);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), ErrorCode::kNotFound);
}

TEST(DatasetCheckUsabilityTest, OptionsAreValidated) {
  CheckOptions options;
  options.min_side = 0;
  EXPECT_NE(options.validate().message().find("--min-size"), std::string::npos);
  options = {};
  options.threads = -2;
  EXPECT_FALSE(options.validate().ok());
}

}  // namespace
}  // namespace kennel::data

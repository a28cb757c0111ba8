#include "kennel/data/image_folder.h"

#include <gtest/gtest.h>

#include "unit/test_util.h"

namespace kennel::data {
namespace {

using kennel::testing::TempDir;
using testing::write_image;

void make_split(const TempDir& dir, const std::string& split,
                const std::vector<std::pair<std::string, int>>& classes) {
  for (const auto& [name, count] : classes) {
    for (int i = 0; i < count; ++i) {
      write_image(dir / (split + "/" + name + "/img" + std::to_string(i) + ".jpg"), 8, 8);
    }
  }
}

TEST(ImageFolderTest, ClassesAreSortedFolderNamesSharedBySplits) {
  TempDir dir;
  make_split(dir, "train", {{"002.Beagle", 3}, {"001.Affenpinscher", 2}});
  make_split(dir, "valid", {{"001.Affenpinscher", 1}, {"002.Beagle", 1}});
  make_split(dir, "test", {{"002.Beagle", 2}});
  auto index = scan_image_folder(dir.path());
  ASSERT_TRUE(index.ok()) << index.status().to_string();
  EXPECT_EQ(index->classes, (std::vector<std::string>{"001.Affenpinscher", "002.Beagle"}));
  ASSERT_EQ(index->splits.size(), 3u);
  EXPECT_EQ(index->splits[0].name, "train");
  EXPECT_EQ(index->splits[0].class_counts, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(index->splits[2].class_counts, (std::vector<int64_t>{0, 2}));
  EXPECT_FALSE(index->valid_split_from_train);
  // A class missing from a split is a warning, not an error.
  bool warned = false;
  for (const auto& warning : index->warnings) {
    warned |= warning.find("001.Affenpinscher") != std::string::npos &&
              warning.find("test") != std::string::npos;
  }
  EXPECT_TRUE(warned);
}

TEST(ImageFolderTest, ExtraClassInAnotherSplitIsAnError) {
  TempDir dir;
  make_split(dir, "train", {{"a", 2}, {"b", 2}});
  make_split(dir, "valid", {{"a", 1}, {"zebra", 1}});
  auto index = scan_image_folder(dir.path());
  ASSERT_FALSE(index.ok());
  EXPECT_NE(index.status().message().find("zebra"), std::string::npos);
}

TEST(ImageFolderTest, AModelsClassesStandInForAMissingTrainSplit) {
  TempDir dir;
  make_split(dir, "test", {{"b", 2}, {"a", 1}});
  EXPECT_FALSE(scan_image_folder(dir.path()).ok());  // to train on, train/ is needed

  ScanOptions options;
  options.valid_fraction = 0;
  options.known_classes = {"c", "a", "b"};  // the model's classes: "c" has no test images
  auto index = scan_image_folder(dir.path(), options);
  ASSERT_TRUE(index.ok()) << index.status().to_string();
  EXPECT_EQ(index->classes, (std::vector<std::string>{"a", "b", "c"}));
  ASSERT_EQ(index->splits.size(), 1u);
  EXPECT_EQ(index->splits[0].name, "test");
  EXPECT_EQ(index->splits[0].class_counts, (std::vector<int64_t>{1, 2, 0}));

  options.known_classes = {"a"};  // a test class the model does not know
  auto unknown = scan_image_folder(dir.path(), options);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("the model does not know: b"), std::string::npos)
      << unknown.status().to_string();
}

TEST(ImageFolderTest, MissingValidIsSplitFromTrainWithASeed) {
  TempDir dir;
  make_split(dir, "train", {{"a", 10}, {"b", 10}});
  ScanOptions options;
  options.valid_fraction = 0.2;
  options.seed = 7;
  auto first = scan_image_folder(dir.path(), options);
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(first->valid_split_from_train);
  const Split* valid = first->find_split("valid");
  ASSERT_NE(valid, nullptr);
  EXPECT_EQ(valid->class_counts, (std::vector<int64_t>{2, 2}));  // stratified
  EXPECT_EQ(first->find_split("train")->samples.size(), 16u);

  auto again = scan_image_folder(dir.path(), options);
  ASSERT_TRUE(again.ok());
  for (size_t i = 0; i < valid->samples.size(); ++i) {
    EXPECT_EQ(valid->samples[i].path, again->find_split("valid")->samples[i].path);
  }
  options.seed = 8;
  auto other = scan_image_folder(dir.path(), options);
  bool differs = false;
  for (size_t i = 0; i < valid->samples.size(); ++i) {
    differs |= valid->samples[i].path != other->find_split("valid")->samples[i].path;
  }
  EXPECT_TRUE(differs);
}

TEST(ImageFolderTest, RootWithClassFoldersIsATrainSplit) {
  TempDir dir;
  make_split(dir, ".", {{"cat", 2}, {"dog", 2}});
  ScanOptions options;
  options.valid_fraction = 0;
  auto index = scan_image_folder(dir.path(), options);
  ASSERT_TRUE(index.ok());
  ASSERT_EQ(index->splits.size(), 1u);
  EXPECT_EQ(index->splits[0].samples.size(), 4u);
}

TEST(ImageFolderTest, ExtensionsNestedFoldersAndIgnoredFiles) {
  TempDir dir;
  write_image(dir / "train/a/x.JPG", 8, 8);
  write_image(dir / "train/a/nested/deeper/y.png", 8, 8);
  testing::write_bytes(dir / "train/a/readme.txt", {'h', 'i'});
  testing::write_bytes(dir / "train/a/.hidden.jpg", {'h', 'i'});
  write_image(dir / "train/b/z.jpeg", 8, 8);
  auto index = scan_image_folder(dir.path(), ScanOptions{.valid_fraction = 0});
  ASSERT_TRUE(index.ok());
  EXPECT_EQ(index->splits[0].class_counts, (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(index->ignored_files, 1);
}

TEST(ImageFolderTest, SymlinkLoopIsCutAndReported) {
  TempDir dir;
  write_image(dir / "train/a/x.jpg", 8, 8);
  write_image(dir / "train/b/y.jpg", 8, 8);
  std::filesystem::create_directory_symlink(dir / "train/a", dir / "train/a/loop");
  auto index = scan_image_folder(dir.path(), ScanOptions{.valid_fraction = 0});
  ASSERT_TRUE(index.ok());
  EXPECT_EQ(index->splits[0].class_counts[0], 1);
  bool reported = false;
  for (const auto& warning : index->warnings) reported |= warning.find("symlink loop") != std::string::npos;
  EXPECT_TRUE(reported);
}

TEST(ImageFolderTest, EmptyClassFolderIsAWarning) {
  TempDir dir;
  write_image(dir / "train/a/x.jpg", 8, 8);
  std::filesystem::create_directories(dir / "train/empty");
  auto index = scan_image_folder(dir.path(), ScanOptions{.valid_fraction = 0});
  ASSERT_TRUE(index.ok());
  EXPECT_EQ(index->classes.size(), 2u);
  bool warned = false;
  for (const auto& warning : index->warnings) warned |= warning.find("'empty' has no images") != std::string::npos;
  EXPECT_TRUE(warned);
}

TEST(ImageFolderTest, NonAsciiNamesAreKept) {
  TempDir dir;
  write_image(dir / "train/caf\xC3\xA9/\xE7\x8A\xAC.jpg", 8, 8);
  write_image(dir / "train/b/y.jpg", 8, 8);
  auto index = scan_image_folder(dir.path(), ScanOptions{.valid_fraction = 0});
  ASSERT_TRUE(index.ok());
  EXPECT_EQ(index->classes[1], "caf\xC3\xA9");
  EXPECT_NE(index->splits[0].samples[1].path.find("\xE7\x8A\xAC.jpg"), std::string::npos);
}

TEST(ImageFolderTest, ClearErrorsForBadRoots) {
  TempDir dir;
  auto missing = scan_image_folder(dir / "nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), ErrorCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nope"), std::string::npos);

  testing::write_bytes(dir / "file.txt", {'x'});
  auto not_dir = scan_image_folder(dir / "file.txt");
  ASSERT_FALSE(not_dir.ok());
  EXPECT_NE(not_dir.status().message().find("not a folder"), std::string::npos);

  std::filesystem::create_directories(dir / "empty");
  auto empty = scan_image_folder(dir / "empty");
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("no classes"), std::string::npos);

  auto bad_ratio = scan_image_folder(dir.path(), ScanOptions{.valid_fraction = 1.5});
  ASSERT_FALSE(bad_ratio.ok());
  EXPECT_EQ(bad_ratio.status().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace kennel::data

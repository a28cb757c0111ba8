#include "kennel/data/synth.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <regex>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "kennel/data/dataset_check.h"
#include "kennel/util/fs.h"
#include "unit/test_util.h"

namespace kennel::data {
namespace {

namespace fs = std::filesystem;
using kennel::testing::TempDir;

SynthOptions small_options() {
  SynthOptions options;
  options.classes = 3;
  options.per_class = 5;
  options.valid_fraction = 0.2;  // 1 per class
  options.test_fraction = 0.4;   // 2 per class
  options.width = 32;
  options.height = 32;
  options.threads = 2;
  options.quiet = true;
  return options;
}

std::vector<std::string> sorted_folder_names(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

size_t count_entries(const fs::path& dir) {
  return static_cast<size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

// Everything under `root` by relative path: a file's bytes, or "-> target" for a symlink.
std::map<std::string, std::string> snapshot(const fs::path& root) {
  std::map<std::string, std::string> tree;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    const std::string relative = it->path().lexically_relative(root).string();  // not fs::relative: it follows the planted symlink
    if (it->is_symlink()) {
      tree[relative] = "-> " + fs::read_symlink(it->path()).string();
    } else if (it->is_regular_file()) {
      tree[relative] = read_file_text(it->path()).value();
    }
  }
  return tree;
}

nlohmann::json read_planted_json(const fs::path& root) {
  return nlohmann::json::parse(read_file_text(root / "planted.json").value());
}

TEST(SynthTest, WritesSplitsClassesAndCounts) {
  TempDir dir;
  const auto summary = generate_synthetic_dataset(dir.path(), small_options());
  ASSERT_TRUE(summary.ok()) << summary.status().to_string();
  ASSERT_EQ(summary->classes.size(), 3u);
  EXPECT_EQ(summary->images, 3 * (5 + 1 + 2));
  EXPECT_TRUE(summary->planted.empty());

  const std::map<std::string, size_t> per_split = {{"train", 5}, {"valid", 1}, {"test", 2}};
  for (const auto& [split, count] : per_split) {
    // Folder names sort in label order, so every split agrees with summary.classes.
    EXPECT_EQ(sorted_folder_names(dir / split), summary->classes) << split;
    for (const auto& name : summary->classes) {
      EXPECT_EQ(count_entries(dir / split / name), count) << split << "/" << name;
      for (const auto& entry : fs::directory_iterator(dir / split / name)) {
        const cv::Mat image = cv::imread(entry.path().string(), cv::IMREAD_UNCHANGED);
        ASSERT_FALSE(image.empty()) << entry.path();
        EXPECT_EQ(image.channels(), 3);
        // +-20 % around 32, rounded.
        EXPECT_GE(image.cols, 25);
        EXPECT_LE(image.cols, 39);
        EXPECT_GE(image.rows, 25);
        EXPECT_LE(image.rows, 39);
      }
    }
  }
  // One good training file has a non-ASCII name, so consumers get tested on one.
  bool non_ascii = false;
  for (const auto& entry : fs::directory_iterator(dir / "train" / summary->classes[0])) {
    const std::string name = entry.path().filename().string();
    non_ascii |= std::any_of(name.begin(), name.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
  }
  EXPECT_TRUE(non_ascii);

  const auto planted = read_planted_json(dir.path());
  EXPECT_TRUE(planted["planted"].empty());
  EXPECT_EQ(planted["images"], 24);
  EXPECT_EQ(planted["classes"].get<std::vector<std::string>>(), summary->classes);
}

TEST(SynthTest, ClassNamesLookLikeTheDogBreedFolders) {
  TempDir dir;
  SynthOptions options = small_options();
  options.classes = 12;
  options.per_class = 1;
  options.valid_fraction = 0;
  options.test_fraction = 0;
  options.width = options.height = 16;
  const auto summary = generate_synthetic_dataset(dir.path(), options);
  ASSERT_TRUE(summary.ok()) << summary.status().to_string();
  EXPECT_EQ(summary->classes[0], "000.circle_red");
  const std::regex pattern(R"(\d{3}\.[a-z]+_[a-z]+(_[a-z]+)?)");
  for (size_t i = 0; i < summary->classes.size(); ++i) {
    EXPECT_TRUE(std::regex_match(summary->classes[i], pattern)) << summary->classes[i];
    EXPECT_EQ(summary->classes[i].substr(0, 3), fmt::format("{:03}", i));
  }
  EXPECT_TRUE(std::is_sorted(summary->classes.begin(), summary->classes.end()));
  EXPECT_FALSE(fs::exists(dir / "valid"));  // fraction 0: no split at all
  EXPECT_FALSE(fs::exists(dir / "test"));
}

TEST(SynthTest, SameSeedGivesTheSameBytesWhateverTheThreadCount) {
  TempDir one, two, other_seed;
  SynthOptions options = small_options();
  options.corrupt = 11;
  options.threads = 1;
  ASSERT_TRUE(generate_synthetic_dataset(one.path(), options).ok());
  options.threads = 2;
  ASSERT_TRUE(generate_synthetic_dataset(two.path(), options).ok());
  options.seed = 1;
  ASSERT_TRUE(generate_synthetic_dataset(other_seed.path(), options).ok());

  const auto first = snapshot(one.path());
  EXPECT_EQ(first.size(), 3u * 8 + 11 + 1);  // images, planted entries (the loop is a link), planted.json
  EXPECT_EQ(first, snapshot(two.path()));
  const auto different = snapshot(other_seed.path());
  ASSERT_EQ(different.size(), first.size());
  for (const auto& [path, bytes] : first) {
    if (path.find("bad_") == std::string::npos && path != "planted.json" && different.at(path) == bytes) {
      ADD_FAILURE() << path << " did not change with the seed";
    }
  }
}

TEST(SynthTest, PlantsEveryKindThatDataCheckDetects) {
  TempDir dir;
  SynthOptions options = small_options();
  options.corrupt = 13;  // every kind, then the cycle starts again
  const auto summary = generate_synthetic_dataset(dir.path(), options);
  ASSERT_TRUE(summary.ok()) << summary.status().to_string();
  ASSERT_EQ(summary->planted.size(), 13u);
  const auto& kinds = planted_kinds();
  for (size_t i = 0; i < summary->planted.size(); ++i) {
    EXPECT_EQ(summary->planted[i].kind, kinds[i % kinds.size()]);
    EXPECT_NE(summary->planted[i].path.find("bad_" + kinds[i % kinds.size()]), std::string::npos);
    EXPECT_EQ(summary->planted[i].path.rfind("train/", 0), 0u) << summary->planted[i].path;
  }
  const auto json = read_planted_json(dir.path());
  ASSERT_EQ(json["planted"].size(), 13u);
  for (size_t i = 0; i < 13; ++i) {
    EXPECT_EQ(json["planted"][i]["path"], summary->planted[i].path);
    EXPECT_EQ(json["planted"][i]["kind"], summary->planted[i].kind);
  }

  CheckOptions check_options;
  check_options.quiet = true;
  check_options.threads = 2;
  const auto report = check_dataset(dir.path(), check_options);
  ASSERT_TRUE(report.ok()) << report.status().to_string();
  std::map<std::string, std::vector<std::string>> issues_by_path;
  for (const auto& file : report->files) {
    auto& names = issues_by_path[fs::relative(file.path, dir.path()).string()];
    for (const auto& issue : file.issues) names.emplace_back(issue_kind_name(issue.kind));
  }
  for (const auto& planted : summary->planted) {
    if (planted.kind == "symlink_loop") {
      // Not a file: the scan cuts the loop and says so.
      const bool reported = std::any_of(report->index.warnings.begin(), report->index.warnings.end(),
                                        [&](const std::string& warning) {
                                          return warning.find("symlink loop") != std::string::npos &&
                                                 warning.find(planted.path) != std::string::npos;
                                        });
      EXPECT_TRUE(reported) << planted.path;
      continue;
    }
    ASSERT_TRUE(issues_by_path.count(planted.path)) << planted.path << " was not scanned";
    const auto& names = issues_by_path[planted.path];
    EXPECT_NE(std::find(names.begin(), names.end(), planted.kind), names.end())
        << planted.path << " is not reported as " << planted.kind;
  }
  // Everything else is clean: no accidental duplicates, nothing too small.
  int64_t clean = 0;
  for (const auto& [path, names] : issues_by_path) {
    const bool is_planted = path.find("bad_") != std::string::npos;
    if (!is_planted) {
      EXPECT_TRUE(names.empty()) << path << ": " << names.front();
    }
    clean += names.empty();
  }
  EXPECT_EQ(clean, summary->images);
}

TEST(SynthTest, CmykJpegIsFourComponentAndDecodesToItsColours) {
  TempDir dir;
  SynthOptions options = small_options();
  options.classes = 1;
  options.corrupt = 7;  // up to and including cmyk
  const auto summary = generate_synthetic_dataset(dir.path(), options);
  ASSERT_TRUE(summary.ok()) << summary.status().to_string();
  const fs::path path = dir / summary->planted.back().path;
  const auto bytes = read_file_bytes(path).value();
  // Walk the JPEG markers to the frame header (SOF0..SOF2): length, precision,
  // height, width, then the number of components.
  int components = 0;
  for (size_t pos = 2; pos + 9 < bytes.size() && bytes[pos] == 0xFF;) {
    const uint8_t marker = bytes[pos + 1];
    if (marker >= 0xC0 && marker <= 0xC2) {
      components = bytes[pos + 9];
      break;
    }
    pos += 2 + (size_t{bytes[pos + 2]} << 8 | bytes[pos + 3]);
  }
  EXPECT_EQ(components, 4);
  const cv::Mat decoded = cv::imread(path.string(), cv::IMREAD_COLOR);
  ASSERT_FALSE(decoded.empty());
  // Not inverted or black: a class-0 image is a saturated red shape on a mid-tone background.
  const cv::Scalar mean = cv::mean(decoded);
  EXPECT_GT(mean[0] + mean[1] + mean[2], 3 * 40.0);
  EXPECT_LT(mean[0] + mean[1] + mean[2], 3 * 230.0);
}

TEST(SynthTest, RefusesANonEmptyFolderUnlessOverwriting) {
  TempDir dir;
  testing::write_bytes(dir / "notes.txt", {'m', 'i', 'n', 'e'});
  SynthOptions options = small_options();
  options.corrupt = 11;
  auto refused = generate_synthetic_dataset(dir.path(), options);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), ErrorCode::kAlreadyExists);
  EXPECT_NE(refused.status().message().find("--overwrite"), std::string::npos) << refused.status().message();
  EXPECT_FALSE(fs::exists(dir / "train"));

  options.overwrite = true;
  auto first = generate_synthetic_dataset(dir.path(), options);
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  // Again over our own output, symlinks included: links are replaced, not followed.
  auto second = generate_synthetic_dataset(dir.path(), options);
  ASSERT_TRUE(second.ok()) << second.status().to_string();
  EXPECT_EQ(read_file_text(dir / "notes.txt").value(), "mine");
  EXPECT_EQ(first->planted.size(), second->planted.size());
}

TEST(SynthTest, AcceptsAnEmptyExistingFolderOrAMissingOne) {
  TempDir dir;
  EXPECT_TRUE(generate_synthetic_dataset(dir.path(), small_options()).ok());
  EXPECT_TRUE(generate_synthetic_dataset(dir / "new" / "nested", small_options()).ok());
  EXPECT_TRUE(fs::exists(dir / "new" / "nested" / "planted.json"));
}

TEST(SynthTest, ValidateNamesTheBadField) {
  EXPECT_TRUE(SynthOptions().validate().ok());
  struct Case {
    std::function<void(SynthOptions&)> change;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {[](SynthOptions& o) { o.classes = 0; }, "--classes must be between 1 and 10000, got 0"},
      {[](SynthOptions& o) { o.classes = 10001; }, "--classes"},
      {[](SynthOptions& o) { o.per_class = 0; }, "--per-class"},
      {[](SynthOptions& o) { o.width = 7; }, "width must be between 8 and 4096, got 7"},
      {[](SynthOptions& o) { o.height = 4097; }, "height must be between 8 and 4096"},
      {[](SynthOptions& o) { o.valid_fraction = 1.0; }, "--valid-ratio must be in [0, 1)"},
      {[](SynthOptions& o) { o.test_fraction = -0.1; }, "--test-ratio"},
      {[](SynthOptions& o) { o.test_fraction = std::nan(""); }, "--test-ratio"},
      {[](SynthOptions& o) { o.corrupt = -1; }, "--corrupt"},
      {[](SynthOptions& o) { o.jpeg_quality = 0; }, "--quality must be between 1 and 100, got 0"},
      {[](SynthOptions& o) { o.jpeg_quality = 101; }, "--quality"},
      {[](SynthOptions& o) { o.threads = -1; }, "--threads"},
  };
  for (const auto& test_case : cases) {
    SynthOptions options;
    test_case.change(options);
    const Status status = options.validate();
    EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument) << test_case.expected;
    EXPECT_NE(status.message().find(test_case.expected), std::string::npos) << status.message();
  }
  // generate_synthetic_dataset validates too, before touching the disk.
  TempDir dir;
  SynthOptions options;
  options.classes = 0;
  EXPECT_FALSE(generate_synthetic_dataset(dir / "out", options).ok());
  EXPECT_FALSE(fs::exists(dir / "out"));
}

}  // namespace
}  // namespace kennel::data

#include "kennel/train/feature_cache.h"

#include <filesystem>
#include <functional>
#include <set>

#include <ATen/ops/ones.h>
#include <ATen/ops/zeros.h>
#include <gtest/gtest.h>

#include "kennel/data/image_folder.h"
#include "unit/test_util.h"

namespace kennel::train {
namespace {

namespace fs = std::filesystem;
using kennel::testing::TempDir;
using testing::write_image;

FeatureCacheIdentity base_identity() {
  FeatureCacheIdentity identity;
  identity.arch = "resnet18";
  identity.weights_id = "abc123";
  identity.dataset_id = "dataset";
  identity.transform_id = "resize=256 crop=224 mean/std=imagenet layout=rgb";
  identity.device = "cpu";
  identity.precision = "fp32";
  identity.layout = "channels_last";
  return identity;
}

TEST(FeatureCacheKeyTest, EveryPartOfTheIdentityChangesTheKey) {
  const std::string base = feature_cache_key(base_identity());
  EXPECT_EQ(base, feature_cache_key(base_identity()));  // deterministic
  const std::vector<std::pair<std::string, std::function<void(FeatureCacheIdentity&)>>> changes = {
      {"arch", [](auto& id) { id.arch = "resnet34"; }},
      {"weights", [](auto& id) { id.weights_id = "abc124"; }},
      {"dataset", [](auto& id) { id.dataset_id = "dataset2"; }},
      {"transform", [](auto& id) { id.transform_id = "resize=255 crop=224 mean/std=imagenet layout=rgb"; }},
      {"device", [](auto& id) { id.device = "cuda:0"; }},
      {"precision", [](auto& id) { id.precision = "bf16"; }},
      {"layout", [](auto& id) { id.layout = "contiguous"; }},
      {"decoder version", [](auto& id) { ++id.decode_version; }},
      {"transform version", [](auto& id) { ++id.transform_version; }},
      {"backbone version", [](auto& id) { ++id.backbone_version; }},
  };
  std::set<std::string> keys = {base};
  for (const auto& [what, change] : changes) {
    FeatureCacheIdentity identity = base_identity();
    change(identity);
    const std::string key = feature_cache_key(identity);
    EXPECT_TRUE(keys.insert(key).second) << "changing the " << what << " did not give a new key";
  }
}

TEST(FeatureCacheKeyTest, FieldsCannotBleedIntoEachOther) {
  // "a" + "bc" and "ab" + "c" print the same when concatenated without separators.
  FeatureCacheIdentity one = base_identity(), two = base_identity();
  one.arch = "a";
  one.weights_id = "bc";
  two.arch = "ab";
  two.weights_id = "c";
  EXPECT_NE(feature_cache_key(one), feature_cache_key(two));
}

TEST(FeatureCacheKeyTest, TheCurrentCodeVersionsAreTheDefault) {
  FeatureCacheIdentity identity;
  EXPECT_TRUE(identity.current_code());
  ++identity.decode_version;
  EXPECT_FALSE(identity.current_code());
}

class DatasetContentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 3; ++i) {
      write_image(dir_ / ("train/a/" + std::to_string(i) + ".png"), 20, 20, i);
      write_image(dir_ / ("train/b/" + std::to_string(i) + ".png"), 20, 20, 10 + i);
    }
  }
  // The key of the train split as a job computes it after scanning the folder.
  std::string key() {
    data::ScanOptions options;
    options.valid_fraction = 0;
    auto index = data::scan_image_folder(dir_.path(), options);
    EXPECT_TRUE(index.ok()) << index.status().to_string();
    FeatureCacheIdentity identity = base_identity();
    identity.dataset_id = dataset_content_hash(index->find_split("train")->samples, dir_.path());
    return feature_cache_key(identity);
  }
  TempDir dir_;
};

TEST_F(DatasetContentTest, EditingAddingOrRemovingOneImageGivesANewKey) {
  const std::string original = key();
  EXPECT_EQ(original, key());

  write_image(dir_ / "train/a/1.png", 20, 20, 99);  // same name, other pixels
  const std::string edited = key();
  EXPECT_NE(edited, original);

  write_image(dir_ / "train/b/3.png", 20, 20, 42);
  const std::string added = key();
  EXPECT_NE(added, edited);
  EXPECT_NE(added, original);

  fs::remove(dir_ / "train/b/3.png");
  EXPECT_EQ(key(), edited);  // back to the same content, back to the same key
  fs::remove(dir_ / "train/a/0.png");
  const std::string removed = key();
  EXPECT_NE(removed, edited);
  EXPECT_NE(removed, original);

  // Moving an image to another class changes its label: a new key too.
  fs::rename(dir_ / "train/a/2.png", dir_ / "train/b/2a.png");
  EXPECT_NE(key(), removed);
}

FeatureSet tiny_features() {
  FeatureSet set;
  set.features = at::ones({2, 3});
  set.labels = at::zeros({2}, at::kLong);
  return set;
}

TEST(FeatureCacheTest, StoredEntriesAreListedWithTheirIdentityAndCanBeRemoved) {
  TempDir dir;
  const FeatureCache cache(dir.path() / "features");
  auto empty = cache.list();
  ASSERT_TRUE(empty.ok()) << empty.status().to_string();
  EXPECT_TRUE(empty->empty());

  FeatureCacheIdentity current = base_identity();
  FeatureCacheIdentity old = base_identity();
  old.backbone_version = current.backbone_version - 1;
  ASSERT_TRUE(cache.store(current, "train", tiny_features()).ok());
  ASSERT_TRUE(cache.store(current, "valid", tiny_features()).ok());
  ASSERT_TRUE(cache.store(old, "train", tiny_features()).ok());
  fs::create_directories(dir.path() / "features" / "0123456789abcdef0123456789abcdef");  // an entry from before
  { std::ofstream lock(dir.path() / "features" / (feature_cache_key(old) + "-train.lock")); }

  auto loaded = cache.load(feature_cache_key(current), "valid");
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->features.size(0), 2);

  auto entries = cache.list();
  ASSERT_TRUE(entries.ok()) << entries.status().to_string();
  ASSERT_EQ(entries->size(), 3u);
  int outdated = 0;
  for (const auto& entry : *entries) {
    if (entry.key == feature_cache_key(current)) {
      EXPECT_FALSE(entry.outdated());
      EXPECT_EQ(entry.splits, (std::vector<std::string>{"train", "valid"}));
      ASSERT_TRUE(entry.identity.has_value());
      EXPECT_EQ(entry.identity->device, "cpu");
      EXPECT_GT(entry.bytes, 0);
    } else {
      EXPECT_TRUE(entry.outdated()) << entry.key;
      ++outdated;
    }
  }
  EXPECT_EQ(outdated, 2);

  for (const auto& entry : *entries) {
    if (entry.key == feature_cache_key(old)) ASSERT_TRUE(cache.remove(entry).ok());
  }
  EXPECT_FALSE(fs::exists(dir.path() / "features" / feature_cache_key(old)));
  EXPECT_FALSE(fs::exists(dir.path() / "features" / (feature_cache_key(old) + "-train.lock")));
  EXPECT_EQ(cache.list()->size(), 2u);
}

}  // namespace
}  // namespace kennel::train

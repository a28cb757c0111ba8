#include "kennel/data/loader.h"

#include <gtest/gtest.h>
#include <torch/types.h>

#include <set>

#include "unit/test_util.h"

namespace kennel::data {
namespace {

using kennel::testing::TempDir;
using testing::write_bytes;
using testing::write_image;

class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 10; ++i) {
      const auto path = dir_ / ("img" + std::to_string(i) + ".jpg");
      write_image(path, 40 + i, 30 + i, i);
      samples_.push_back({path.string(), i % 3});
    }
  }
  static TransformSpec small_spec(bool augment = false) {
    TransformSpec spec;
    spec.resize = 20;
    spec.crop = 16;
    spec.augment = augment;
    if (augment) spec.jitter.brightness = 0.3f;
    return spec;
  }
  std::vector<Batch> run_epoch(ImageLoader& loader, int64_t epoch) {
    loader.start_epoch(epoch);
    std::vector<Batch> batches;
    while (auto batch = loader.next()) batches.push_back(std::move(*batch));
    return batches;
  }
  TempDir dir_;
  std::vector<ImageSample> samples_;
};

TEST_F(LoaderTest, DeliversEverySampleOnceInOrder) {
  LoaderOptions options;
  options.batch_size = 4;
  options.threads = 2;
  ImageLoader loader(samples_, ImagePipeline(small_spec()), options);
  EXPECT_EQ(loader.batches_per_epoch(), 3);
  const auto batches = run_epoch(loader, 0);
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(batches[0].images.sizes(), (std::vector<int64_t>{4, 3, 16, 16}));
  EXPECT_EQ(batches[2].images.size(0), 2);  // 10 = 4 + 4 + 2
  int64_t expected = 0;
  for (const auto& batch : batches) {
    for (size_t i = 0; i < batch.sample_indices.size(); ++i) {
      EXPECT_EQ(batch.sample_indices[i], expected);
      EXPECT_EQ(batch.labels[static_cast<int64_t>(i)].item<int64_t>(), expected % 3);
      EXPECT_EQ(batch.paths[i], samples_[static_cast<size_t>(expected)].path);
      ++expected;
    }
  }
  EXPECT_EQ(loader.stats().images, 10);
}

TEST_F(LoaderTest, DropLast) {
  LoaderOptions options;
  options.batch_size = 4;
  options.drop_last = true;
  ImageLoader loader(samples_, ImagePipeline(small_spec()), options);
  EXPECT_EQ(run_epoch(loader, 0).size(), 2u);
}

TEST_F(LoaderTest, ShuffleIsDeterministicPerSeedAndEpoch) {
  LoaderOptions options;
  options.shuffle = true;
  options.seed = 42;
  ImageLoader a(samples_, ImagePipeline(small_spec()), options);
  ImageLoader b(samples_, ImagePipeline(small_spec()), options);
  EXPECT_EQ(a.epoch_order(0), b.epoch_order(0));
  EXPECT_NE(a.epoch_order(0), a.epoch_order(1));
  auto order = a.epoch_order(3);
  std::sort(order.begin(), order.end());
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(order[static_cast<size_t>(i)], i);
  options.seed = 43;
  ImageLoader c(samples_, ImagePipeline(small_spec()), options);
  EXPECT_NE(a.epoch_order(0), c.epoch_order(0));
}

TEST_F(LoaderTest, ResultsDoNotDependOnThreadCount) {
  LoaderOptions options;
  options.batch_size = 3;
  options.shuffle = true;
  options.seed = 5;
  options.threads = 1;
  ImageLoader one(samples_, ImagePipeline(small_spec(true)), options);
  options.threads = 3;
  ImageLoader three(samples_, ImagePipeline(small_spec(true)), options);
  const auto a = run_epoch(one, 2);
  const auto b = run_epoch(three, 2);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i].images, b[i].images)) << "batch " << i;
    EXPECT_TRUE(torch::equal(a[i].labels, b[i].labels));
  }
  // Augmentation differs between epochs.
  const auto c = run_epoch(one, 3);
  EXPECT_FALSE(torch::equal(a[0].images, c[0].images));
}

TEST_F(LoaderTest, ChannelsLastBatchesHoldTheSameValues) {
  LoaderOptions options;
  options.batch_size = 5;
  ImageLoader planar(samples_, ImagePipeline(small_spec()), options);
  options.layout = PixelLayout::kHwc;
  ImageLoader interleaved(samples_, ImagePipeline(small_spec()), options);
  const auto a = run_epoch(planar, 0);
  const auto b = run_epoch(interleaved, 0);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_TRUE(a[0].images.is_contiguous());
  EXPECT_TRUE(b[0].images.is_contiguous(at::MemoryFormat::ChannelsLast));
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::allclose(a[i].images, b[i].images));
}

TEST_F(LoaderTest, BadFilesAreSkippedAndCounted) {
  write_bytes(dir_ / "bad.jpg", {'x', 'y', 'z'});
  samples_.insert(samples_.begin() + 1, {(dir_ / "bad.jpg").string(), 1});
  samples_.push_back({(dir_ / "missing.jpg").string(), 2});
  LoaderOptions options;
  options.batch_size = 4;
  ImageLoader loader(samples_, ImagePipeline(small_spec()), options);
  const auto batches = run_epoch(loader, 0);
  int64_t delivered = 0;
  for (const auto& batch : batches) {
    delivered += batch.images.size(0);
    EXPECT_EQ(batch.images.size(0), batch.labels.size(0));
    EXPECT_EQ(static_cast<int64_t>(batch.paths.size()), batch.labels.size(0));
  }
  EXPECT_EQ(delivered, 10);
  EXPECT_EQ(batches[0].images.size(0), 3);
  EXPECT_EQ(loader.stats().skipped, 2);
  const auto skipped = loader.skipped_files();
  ASSERT_EQ(skipped.size(), 2u);
  std::set<std::string> reasons;
  for (const auto& file : skipped) reasons.insert(file.reason);
  EXPECT_TRUE(std::any_of(reasons.begin(), reasons.end(),
                          [](const std::string& r) { return r.find("not an image") != std::string::npos; }));
}

TEST_F(LoaderTest, StopsCleanlyMidEpochAndRestarts) {
  LoaderOptions options;
  options.batch_size = 2;
  options.threads = 3;
  options.prefetch_batches = 1;
  {
    ImageLoader loader(samples_, ImagePipeline(small_spec()), options);
    loader.start_epoch(0);
    ASSERT_TRUE(loader.next());
    // Restarting abandons the rest of epoch 0.
    const auto batches = run_epoch(loader, 1);
    EXPECT_EQ(batches.size(), 5u);
    loader.start_epoch(2);
    ASSERT_TRUE(loader.next());
  }  // destroyed mid-epoch: joins without hanging
  ImageLoader loader(samples_, ImagePipeline(small_spec()), options);
  loader.start_epoch(0);
  loader.stop();
  EXPECT_FALSE(loader.next());
}

TEST_F(LoaderTest, RejectsBadOptions) {
  LoaderOptions options;
  options.batch_size = 0;
  EXPECT_THROW(ImageLoader(samples_, ImagePipeline(small_spec()), options), Error);
  EXPECT_THROW(ImageLoader({}, ImagePipeline(small_spec()), LoaderOptions{}), Error);
}

}  // namespace
}  // namespace kennel::data

namespace kennel::data {
namespace {

TEST_F(LoaderTest, StartingAtABatchSkipsTheBatchesBefore) {
  LoaderOptions options;
  options.batch_size = 3;
  options.shuffle = true;
  options.seed = 9;
  ImageLoader loader(samples_, ImagePipeline(small_spec(true)), options);
  const auto full = run_epoch(loader, 4);
  loader.start_epoch(4, 2);
  std::vector<Batch> rest;
  while (auto batch = loader.next()) rest.push_back(std::move(*batch));
  ASSERT_EQ(rest.size(), full.size() - 2);
  for (size_t i = 0; i < rest.size(); ++i) {
    EXPECT_EQ(rest[i].index, full[i + 2].index);
    EXPECT_TRUE(torch::equal(rest[i].images, full[i + 2].images));
  }
}

}  // namespace
}  // namespace kennel::data

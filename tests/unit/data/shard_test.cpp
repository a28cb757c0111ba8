#include "kennel/data/shard.h"

#include <algorithm>
#include <numeric>

#include <gtest/gtest.h>

namespace kennel::data {
namespace {

std::vector<int64_t> iota(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 100);
  return v;
}

TEST(ShardTest, AWholeEpochIsTheOrderItself) {
  EXPECT_EQ(Shard{}.take(iota(5)), iota(5));
  EXPECT_EQ(Shard{}.size(5), 5);
}

TEST(ShardTest, RanksTakeStridedPositionsSoEachStepMatchesOneProcessWithTheBiggerBatch) {
  const auto order = iota(8);
  const Shard rank0{0, 2, true}, rank1{1, 2, true};
  EXPECT_EQ(rank0.take(order), (std::vector<int64_t>{100, 102, 104, 106}));
  EXPECT_EQ(rank1.take(order), (std::vector<int64_t>{101, 103, 105, 107}));
  // Step k with batch 2 on each rank = positions [4k, 4k+4) of the whole order: one process, batch 4.
  for (int step = 0; step < 2; ++step) {
    std::vector<int64_t> both = {rank0.take(order)[2 * step], rank0.take(order)[2 * step + 1],
                                 rank1.take(order)[2 * step], rank1.take(order)[2 * step + 1]};
    std::sort(both.begin(), both.end());
    EXPECT_EQ(both, std::vector<int64_t>(order.begin() + 4 * step, order.begin() + 4 * step + 4));
  }
}

TEST(ShardTest, TrainingShardsArePaddedToEqualLengthsByWrappingAround) {
  const auto order = iota(5);
  const Shard rank0{0, 3, true}, rank1{1, 3, true}, rank2{2, 3, true};
  EXPECT_EQ(rank0.size(5), 2);
  EXPECT_EQ(rank2.size(5), 2);
  EXPECT_EQ(rank0.take(order), (std::vector<int64_t>{100, 103}));
  EXPECT_EQ(rank1.take(order), (std::vector<int64_t>{101, 104}));
  EXPECT_EQ(rank2.take(order), (std::vector<int64_t>{102, 100}));  // wrapped: sample 100 twice in the epoch
}

TEST(ShardTest, EvaluationShardsCountEverySampleOnce) {
  const auto order = iota(5);
  std::vector<int64_t> all;
  for (int64_t rank = 0; rank < 3; ++rank) {
    const Shard shard{rank, 3, false};
    const auto taken = shard.take(order);
    EXPECT_EQ(static_cast<int64_t>(taken.size()), shard.size(5));
    all.insert(all.end(), taken.begin(), taken.end());
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, order);
  EXPECT_EQ((Shard{3, 4, false}.size(2)), 0);  // more ranks than samples: an empty shard, not a crash
}

}  // namespace
}  // namespace kennel::data

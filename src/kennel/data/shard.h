// One rank's share of an epoch in a data-parallel job, as PyTorch's
// DistributedSampler takes it: every rank computes the same seeded order of
// all samples, and rank r takes positions r, r + W, r + 2W, ... of it. For
// training the order is first padded (wrapping around to its start) to a
// multiple of W so that every rank takes the same number of steps; for
// evaluation it is not, so that each sample is counted exactly once.
// Striding (not slicing) is what makes "W ranks with batch B" see, at each
// step, exactly the samples "one process with batch W*B" sees at that step.
// Pure functions; no LibTorch.
#pragma once

#include <cstdint>
#include <vector>

namespace kennel::data {

struct Shard {
  int64_t index = 0;  // this rank
  int64_t count = 1;  // world size
  bool pad = true;    // equal lengths (training) or each sample once (evaluation)

  bool whole() const { return count <= 1; }
  // Samples this shard takes from an epoch of `total`.
  int64_t size(int64_t total) const;
  // This shard's positions (or values) of an epoch's order.
  std::vector<int64_t> take(const std::vector<int64_t>& order) const;
};

}  // namespace kennel::data

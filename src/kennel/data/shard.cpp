#include "kennel/data/shard.h"

#include <cstddef>

namespace kennel::data {

int64_t Shard::size(int64_t total) const {
  if (whole() || total <= 0) return total;
  if (pad) return (total + count - 1) / count;
  return index < total ? (total - index + count - 1) / count : 0;
}

std::vector<int64_t> Shard::take(const std::vector<int64_t>& order) const {
  if (whole()) return order;
  const auto total = static_cast<int64_t>(order.size());
  const int64_t length = size(total);
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(length));
  for (int64_t i = 0; i < length; ++i) {
    const int64_t position = index + i * count;  // < padded total by construction
    out.push_back(order[static_cast<size_t>(position % total)]);
  }
  return out;
}

}  // namespace kennel::data

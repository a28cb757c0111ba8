// util/allocator.h: the allocator is named as the process runs it, and under tcmalloc freed memory is
// kept after keep_freed_memory(). (The unit tests link the system's malloc; the integration test of
// `kennel system` checks the tcmalloc side in the release binary.)
#include "kennel/util/allocator.h"

#include <gtest/gtest.h>

namespace kennel {
namespace {

TEST(Allocator, KeepsFreedMemoryUnderTcmallocAndSaysWhichAllocatorRuns) {
  const AllocatorState before = allocator_state();
  const AllocatorState after = keep_freed_memory();
  EXPECT_EQ(after.name, before.name);
  if (after.name == "tcmalloc") {
    EXPECT_TRUE(after.keeps_freed_memory);
  } else {
    EXPECT_EQ(after.name, "system malloc");
    EXPECT_FALSE(after.keeps_freed_memory) << "only tcmalloc's setting is changed";
  }
  EXPECT_EQ(allocator_state().keeps_freed_memory, after.keeps_freed_memory);
}

}  // namespace
}  // namespace kennel

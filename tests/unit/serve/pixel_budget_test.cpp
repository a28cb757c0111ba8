#include "kennel/serve/pixel_budget.h"

#include <gtest/gtest.h>

namespace kennel::serve {
namespace {

TEST(PixelBudget, LeasesUpToTheCapacityAndGivesBack) {
  PixelBudget budget(100);
  auto a = budget.acquire(60);
  ASSERT_TRUE(a.ok());
  auto b = budget.acquire(40);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(budget.in_use(), 100);
  auto refused = budget.acquire(1);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), ErrorCode::kUnavailable);
  EXPECT_NE(refused.status().message().find("--decode-pixel-budget"), std::string::npos);
  { auto moved = std::move(a).value(); }  // destroyed: its 60 come back
  EXPECT_EQ(budget.in_use(), 40);
  EXPECT_TRUE(budget.acquire(60).ok());  // a temporary lease, released at once
  EXPECT_EQ(budget.in_use(), 40);
  b->release();
  b->release();  // twice is harmless
  EXPECT_EQ(budget.in_use(), 0);
}

}  // namespace
}  // namespace kennel::serve

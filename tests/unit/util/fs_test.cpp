#include "kennel/util/fs.h"

#include <gtest/gtest.h>

#include "unit/test_util.h"

namespace kennel {
namespace {

using kennel::testing::TempDir;

void write(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  testing::write_bytes(path, std::vector<uint8_t>(text.begin(), text.end()));
}

std::string text(const std::vector<uint8_t>& bytes) { return {bytes.begin(), bytes.end()}; }

// Regression: files whose size reads as 0 (procfs, sysfs) came back empty.
TEST(FsTest, FilesThatReportNoSizeAreReadToTheirEnd) {
  auto status = read_file_text("/proc/self/status");
  ASSERT_TRUE(status.ok()) << status.status().to_string();
  EXPECT_NE(status->find("Pid:"), std::string::npos);

  auto capped = read_file_bytes("/proc/self/status", 16);
  ASSERT_FALSE(capped.ok());
  EXPECT_EQ(capped.status().code(), ErrorCode::kResourceExhausted);
}

TEST(FsTest, ReadsPlainPathsBelowARoot) {
  TempDir dir;
  write(dir / "root/cats/tabby.jpg", "meow");
  auto bytes = read_file_beneath(dir / "root", "cats/tabby.jpg");
  ASSERT_TRUE(bytes.ok()) << bytes.status().to_string();
  EXPECT_EQ(text(*bytes), "meow");

  auto capped = read_file_beneath(dir / "root", "cats/tabby.jpg", 3);
  ASSERT_FALSE(capped.ok());
  EXPECT_EQ(capped.status().code(), ErrorCode::kResourceExhausted);
}

// What closes the file:// check-then-open race: whatever a component has become since
// it was checked, a symbolic link is never followed, wherever it leads.
TEST(FsTest, NeverFollowsASymbolicLinkBelowTheRoot) {
  TempDir dir;
  write(dir / "outside/secret.jpg", "secret");
  write(dir / "root/cats/tabby.jpg", "meow");
  std::filesystem::create_symlink(dir / "outside", dir / "root/swapped");
  std::filesystem::create_symlink(dir / "outside/secret.jpg", dir / "root/cats/link.jpg");
  std::filesystem::create_symlink(dir / "root/cats", dir / "root/inside");
  for (const char* relative : {"swapped/secret.jpg", "cats/link.jpg", "inside/tabby.jpg"}) {
    auto bytes = read_file_beneath(dir / "root", relative);
    ASSERT_FALSE(bytes.ok()) << relative;
    EXPECT_EQ(bytes.status().code(), ErrorCode::kPermissionDenied) << bytes.status().to_string();
    EXPECT_NE(bytes.status().message().find("symbolic link"), std::string::npos);
  }
}

TEST(FsTest, RefusesPathsThatAreNotPlain) {
  TempDir dir;
  write(dir / "root/a.jpg", "a");
  write(dir / "b.jpg", "b");
  for (const char* relative : {"../b.jpg", "/etc/passwd", "", "."}) {
    auto bytes = read_file_beneath(dir / "root", relative);
    ASSERT_FALSE(bytes.ok()) << relative;
    EXPECT_EQ(bytes.status().code(), ErrorCode::kInvalidArgument) << bytes.status().to_string();
  }
  auto missing = read_file_beneath(dir / "root", "none/a.jpg");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), ErrorCode::kNotFound);
  auto directory = read_file_beneath(dir / "root", ".");
  EXPECT_FALSE(directory.ok());
}

}  // namespace
}  // namespace kennel

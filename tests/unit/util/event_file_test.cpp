#include "kennel/util/event_file.h"

#include <gtest/gtest.h>

#include <fstream>

#include "kennel/util/hash.h"
#include "unit/test_util.h"

namespace kennel {
namespace {

TEST(Crc32cTest, StandardCheckValues) {
  // RFC 3720 appendix B.4 and the CRC catalogue's check value.
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  const std::string zeros(32, '\0');
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  const std::string ones(32, '\xFF');
  EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  EXPECT_EQ(crc32("123456789", 9), 0xCBF43926u);
}

TEST(EventFileTest, GoldenScalarRecord) {
  // Event{wall_time: 1.5, step: 3, summary{value{tag:"loss", simple_value: 0.25}}}
  const std::string payload = encode_scalar_event(1.5, 3, "loss", 0.25f);
  const std::string expected_payload =
      std::string("\x09\x00\x00\x00\x00\x00\x00\xf8\x3f", 9) +  // field 1 fixed64 1.5
      std::string("\x10\x03", 2) +                               // field 2 varint 3
      std::string("\x2a\x0d", 2) +                               // field 5, 13 bytes
      std::string("\x0a\x0b", 2) +                               // Summary.value, 11 bytes
      std::string("\x0a\x04loss", 6) +                           // tag
      std::string("\x15\x00\x00\x80\x3e", 5);                    // simple_value 0.25f
  EXPECT_EQ(payload, expected_payload);
  const std::string record = frame_tfrecord(payload);
  ASSERT_EQ(record.size(), 8 + 4 + payload.size() + 4);
  // Length 26, then masked CRC-32C of the 8 length bytes, payload, masked CRC of the payload.
  EXPECT_EQ(record.substr(0, 8), std::string("\x1a\x00\x00\x00\x00\x00\x00\x00", 8));
  uint32_t length_crc;
  std::memcpy(&length_crc, record.data() + 8, 4);
  const uint64_t length = 26;
  EXPECT_EQ(length_crc, masked_crc32c(&length, 8));
  uint32_t data_crc;
  std::memcpy(&data_crc, record.data() + 12 + payload.size(), 4);
  EXPECT_EQ(data_crc, masked_crc32c(payload.data(), payload.size()));
}

TEST(EventFileTest, WriteThenReadBack) {
  testing::TempDir dir;
  std::filesystem::path path;
  {
    auto writer = EventFileWriter::open(dir / "events");
    ASSERT_TRUE(writer.ok()) << writer.status().to_string();
    (*writer)->add_scalar("train/loss", 1, 0.5f);
    (*writer)->add_scalar("train/loss", 2, 0.25f);
    Histogram h{.min = -1, .max = 1, .num = 4, .sum = 0, .sum_squares = 2,
                .bucket_limits = {-0.5, 0.5, 1.0}, .bucket_counts = {1, 2, 1}};
    (*writer)->add_histogram("weights", 2, h);
    path = (*writer)->path();
  }
  EXPECT_NE(path.filename().string().find("events.out.tfevents."), std::string::npos);
  auto records = read_event_file(path);
  ASSERT_TRUE(records.ok()) << records.status().to_string();
  ASSERT_EQ(records->size(), 4u);
  EXPECT_EQ((*records)[0].file_version, "brain.Event:2");
  EXPECT_EQ((*records)[1].tag, "train/loss");
  EXPECT_EQ((*records)[2].step, 2);
  EXPECT_FLOAT_EQ(*(*records)[2].scalar, 0.25f);
  ASSERT_TRUE((*records)[3].histogram);
  EXPECT_EQ((*records)[3].histogram->bucket_counts, (std::vector<double>{1, 2, 1}));
}

TEST(EventFileTest, CorruptionIsDetectedAndATornTailIsTolerated) {
  testing::TempDir dir;
  std::filesystem::path path;
  {
    auto writer = EventFileWriter::open(dir.path());
    ASSERT_TRUE(writer.ok());
    (*writer)->add_scalar("a", 1, 1.0f);
    path = (*writer)->path();
  }
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  // Torn tail: drop the last 3 bytes.
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << bytes.substr(0, bytes.size() - 3);
  }
  auto torn = read_event_file(path);
  ASSERT_TRUE(torn.ok());
  EXPECT_EQ(torn->size(), 1u);
  // Flipped payload byte: a CRC error naming the offset.
  bytes[bytes.size() - 6] ^= 0x01;
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  auto corrupt = read_event_file(path);
  ASSERT_FALSE(corrupt.ok());
  EXPECT_NE(corrupt.status().message().find("CRC"), std::string::npos);
}

}  // namespace
}  // namespace kennel

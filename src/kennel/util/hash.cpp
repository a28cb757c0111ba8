#include "kennel/util/hash.h"

#include <openssl/evp.h>

#include <array>

#include <fmt/format.h>

namespace kennel {

std::string sha256_hex(const void* data, size_t size) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  EVP_Digest(data, size, digest.data(), &length, EVP_sha256(), nullptr);
  std::string hex;
  hex.reserve(length * 2);
  for (unsigned int i = 0; i < length; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

namespace {
template <uint32_t kPolynomial>
constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (kPolynomial ^ (c >> 1)) : (c >> 1);
    table[i] = c;
  }
  return table;
}
constexpr auto kCrc32Table = make_crc_table<0xEDB88320u>();
constexpr auto kCrc32cTable = make_crc_table<0x82F63B78u>();

uint32_t crc_update(const std::array<uint32_t, 256>& table, const void* data, size_t size,
                    uint32_t crc) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ bytes[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}
}  // namespace

uint32_t crc32(const void* data, size_t size, uint32_t crc) {
  return crc_update(kCrc32Table, data, size, crc);
}
uint32_t crc32c(const void* data, size_t size, uint32_t crc) {
  return crc_update(kCrc32cTable, data, size, crc);
}

}  // namespace kennel

// Content hashes: SHA-256 (duplicate detection, cache keys; hardware
// accelerated through OpenSSL), CRC-32 (PNG chunks) and masked CRC-32C
// (TFRecord framing). Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kennel {

// Lower-case hex SHA-256 of `size` bytes.
std::string sha256_hex(const void* data, size_t size);
inline std::string sha256_hex(std::string_view text) { return sha256_hex(text.data(), text.size()); }

// CRC-32 (IEEE 802.3, as PNG and zlib use). `crc` continues a previous value.
uint32_t crc32(const void* data, size_t size, uint32_t crc = 0);

// CRC-32C (Castagnoli) and TFRecord's masked form of it.
uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);
inline uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

}  // namespace kennel

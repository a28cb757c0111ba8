#include "kennel/data/image_header.h"

#include <algorithm>
#include <array>
#include <bitset>
#include <cctype>
#include <cstring>
#include <string_view>

namespace kennel::data {

const char* image_format_name(ImageFormat format) {
  switch (format) {
    case ImageFormat::kJpeg: return "jpeg";
    case ImageFormat::kPng: return "png";
    case ImageFormat::kBmp: return "bmp";
    case ImageFormat::kWebp: return "webp";
    case ImageFormat::kTiff: return "tiff";
  }
  return "unknown";
}

const char* color_model_name(ColorModel model) {
  switch (model) {
    case ColorModel::kUnknown: return "unknown";
    case ColorModel::kGray: return "gray";
    case ColorModel::kGrayAlpha: return "gray+alpha";
    case ColorModel::kRgb: return "rgb";
    case ColorModel::kRgba: return "rgba";
    case ColorModel::kPalette: return "palette";
    case ColorModel::kPaletteAlpha: return "palette+alpha";
    case ColorModel::kCmyk: return "cmyk";
  }
  return "unknown";
}

namespace {

// Bounds-checked reads: every probe reads attacker-controlled bytes.
class ByteReader {
 public:
  explicit ByteReader(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  size_t size() const { return bytes_.size(); }
  bool has(size_t offset, size_t count) const {
    return offset <= bytes_.size() && count <= bytes_.size() - offset;
  }
  uint8_t u8(size_t offset) const { return has(offset, 1) ? bytes_[offset] : 0; }
  uint16_t u16be(size_t offset) const {
    return has(offset, 2) ? static_cast<uint16_t>(bytes_[offset] << 8 | bytes_[offset + 1]) : 0;
  }
  uint16_t u16le(size_t offset) const {
    return has(offset, 2) ? static_cast<uint16_t>(bytes_[offset + 1] << 8 | bytes_[offset]) : 0;
  }
  uint32_t u32be(size_t offset) const {
    return has(offset, 4) ? (uint32_t{u16be(offset)} << 16 | u16be(offset + 2)) : 0;
  }
  uint32_t u32le(size_t offset) const {
    return has(offset, 4) ? (uint32_t{u16le(offset + 2)} << 16 | u16le(offset)) : 0;
  }
  uint16_t u16(size_t offset, bool big_endian) const {
    return big_endian ? u16be(offset) : u16le(offset);
  }
  uint32_t u32(size_t offset, bool big_endian) const {
    return big_endian ? u32be(offset) : u32le(offset);
  }
  bool matches(size_t offset, std::string_view text) const {
    return has(offset, text.size()) && std::memcmp(bytes_.data() + offset, text.data(), text.size()) == 0;
  }
  const uint8_t* data() const { return bytes_.data(); }

 private:
  std::span<const uint8_t> bytes_;
};

// TIFF structure shared by TIFF files and JPEG EXIF blocks: walks IFD0 and
// calls `visit(tag, value, count)` for integer scalar entries. A tag repeated in
// the directory is visited once, for its first entry: libtiff ignores the later
// ones, so a probe that kept the last could pass a small size to the pixel limit
// while the decoder allocates for a huge one.
template <typename Visit>
bool walk_tiff_ifd0(const ByteReader& reader, size_t base, Visit&& visit) {
  bool big_endian;
  if (reader.matches(base, std::string_view("II*\0", 4))) {
    big_endian = false;
  } else if (reader.matches(base, std::string_view("MM\0*", 4))) {
    big_endian = true;
  } else {
    return false;
  }
  const size_t ifd = base + reader.u32(base + 4, big_endian);
  if (!reader.has(ifd, 2)) return true;
  const uint16_t entries = reader.u16(ifd, big_endian);
  std::bitset<65536> seen;
  for (uint16_t i = 0; i < entries; ++i) {
    const size_t entry = ifd + 2 + size_t{i} * 12;
    if (!reader.has(entry, 12)) break;
    const uint16_t tag = reader.u16(entry, big_endian);
    if (seen.test(tag)) continue;
    seen.set(tag);
    const uint16_t type = reader.u16(entry + 2, big_endian);
    const uint32_t count = reader.u32(entry + 4, big_endian);
    // The first value sits in the entry itself for these sizes (libtiff reads
    // BYTE/SHORT/LONG and their signed twins for the size tags).
    uint32_t value = 0;
    if (type == 1 || type == 6) {  // BYTE, SBYTE
      value = reader.u8(entry + 8);
    } else if (type == 3 || type == 8) {  // SHORT, SSHORT
      value = reader.u16(entry + 8, big_endian);
    } else if (type == 4 || type == 9) {  // LONG, SLONG (a negative size reads as huge: refused)
      value = reader.u32(entry + 8, big_endian);
    } else {
      continue;
    }
    if (count == 0) continue;
    visit(tag, value, count);
  }
  return true;
}

bool is_jpeg_sof(uint8_t marker) {
  return marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
}

std::optional<ImageHeader> probe_jpeg(const ByteReader& reader) {
  ImageHeader header;
  header.format = ImageFormat::kJpeg;
  size_t pos = 2;
  size_t scan_start = 0;
  bool saw_frame = false;
  while (reader.has(pos, 2)) {
    if (reader.u8(pos) != 0xFF) break;  // lost sync: treat the rest as unknown
    uint8_t marker = reader.u8(pos + 1);
    if (marker == 0xFF) {  // fill byte
      ++pos;
      continue;
    }
    pos += 2;
    if (marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) continue;
    if (marker == 0xD9) break;
    const uint16_t length = reader.u16be(pos);
    if (length < 2) break;
    if (is_jpeg_sof(marker) && reader.has(pos, 8)) {
      header.height = reader.u16be(pos + 3);
      header.width = reader.u16be(pos + 5);
      const int components = reader.u8(pos + 7);
      header.color_model = components == 1   ? ColorModel::kGray
                           : components == 3 ? ColorModel::kRgb
                           : components == 4 ? ColorModel::kCmyk
                                             : ColorModel::kUnknown;
      header.progressive = marker == 0xC2 || marker == 0xC6 || marker == 0xCA || marker == 0xCE;
      saw_frame = true;
    } else if (marker == 0xE1 && reader.matches(pos + 2, std::string_view("Exif\0\0", 6))) {
      walk_tiff_ifd0(reader, pos + 8, [&](uint16_t tag, uint32_t value, uint32_t) {
        if (tag == 0x0112 && value >= 1 && value <= 8) header.exif_orientation = static_cast<int>(value);
      });
    } else if (marker == 0xDA) {
      scan_start = pos + length;
      break;
    }
    pos += length;
  }
  if (!saw_frame || scan_start == 0 || scan_start > reader.size()) {
    header.truncated = true;
    return header;
  }
  // Entropy-coded data never contains FF D9 (0xFF is stuffed as FF 00), so the
  // end-of-image marker after the first scan is reliable. Fast path: it ends the file.
  const size_t size = reader.size();
  if (size >= 2 && reader.u8(size - 2) == 0xFF && reader.u8(size - 1) == 0xD9) return header;
  const uint8_t kEoi[2] = {0xFF, 0xD9};
  const uint8_t* begin = reader.data() + scan_start;
  const uint8_t* end = reader.data() + size;
  header.truncated = std::search(begin, end, kEoi, kEoi + 2) == end;
  return header;
}

std::optional<ImageHeader> probe_png(const ByteReader& reader) {
  ImageHeader header;
  header.format = ImageFormat::kPng;
  if (!reader.matches(12, "IHDR")) {
    header.truncated = true;
    return header;
  }
  header.width = reader.u32be(16);
  header.height = reader.u32be(20);
  const uint8_t color_type = reader.u8(25);
  switch (color_type) {
    case 0: header.color_model = ColorModel::kGray; break;
    case 2: header.color_model = ColorModel::kRgb; break;
    case 3: header.color_model = ColorModel::kPalette; break;
    case 4: header.color_model = ColorModel::kGrayAlpha; break;
    case 6: header.color_model = ColorModel::kRgba; break;
    default: header.color_model = ColorModel::kUnknown;
  }
  // Walk the chunks: a tRNS chunk adds transparency; a missing IEND means truncation.
  size_t pos = 8;
  bool saw_end = false;
  while (reader.has(pos, 8)) {
    const uint32_t length = reader.u32be(pos);
    if (reader.matches(pos + 4, "IEND")) {
      saw_end = true;
      break;
    }
    if (reader.matches(pos + 4, "tRNS")) {
      if (header.color_model == ColorModel::kPalette) header.color_model = ColorModel::kPaletteAlpha;
      if (header.color_model == ColorModel::kGray) header.color_model = ColorModel::kGrayAlpha;
      if (header.color_model == ColorModel::kRgb) header.color_model = ColorModel::kRgba;
    }
    const uint64_t next = uint64_t{pos} + 12 + length;
    if (next > reader.size()) break;
    pos = static_cast<size_t>(next);
  }
  header.truncated = !saw_end;
  return header;
}

std::optional<ImageHeader> probe_bmp(const ByteReader& reader) {
  ImageHeader header;
  header.format = ImageFormat::kBmp;
  if (!reader.has(0, 26)) {
    header.truncated = true;
    return header;
  }
  const uint32_t data_offset = reader.u32le(10);
  const uint32_t info_size = reader.u32le(14);
  uint16_t bits = 0;
  uint32_t compression = 0;
  if (info_size == 12) {  // OS/2 1.x BITMAPCOREHEADER: 16-bit sizes, never compressed
    header.width = reader.u16le(18);
    header.height = reader.u16le(20);
    bits = reader.u16le(24);
  } else {
    const auto width = static_cast<int32_t>(reader.u32le(18));
    const auto height = static_cast<int32_t>(reader.u32le(22));
    header.width = std::abs(int64_t{width});
    header.height = std::abs(int64_t{height});
    bits = reader.u16le(28);
    compression = reader.has(30, 4) ? reader.u32le(30) : 0;
  }
  if (bits <= 8) {
    header.color_model = ColorModel::kPalette;
  } else if (bits == 32 && info_size >= 56 && reader.u32le(54) != 0) {
    header.color_model = ColorModel::kRgba;  // BITMAPV3+ header with an alpha mask
  } else {
    header.color_model = ColorModel::kRgb;
  }
  if (compression == 0 && bits > 0) {  // uncompressed: the pixel array size is known
    const uint64_t stride = (uint64_t{bits} * header.width + 31) / 32 * 4;
    header.truncated = uint64_t{data_offset} + stride * header.height > reader.size();
  }
  return header;
}

std::optional<ImageHeader> probe_webp(const ByteReader& reader) {
  ImageHeader header;
  header.format = ImageFormat::kWebp;
  header.color_model = ColorModel::kRgb;
  header.truncated = uint64_t{reader.u32le(4)} + 8 > reader.size();
  if (reader.matches(12, "VP8 ")) {
    if (reader.u8(23) == 0x9D && reader.u8(24) == 0x01 && reader.u8(25) == 0x2A) {
      header.width = reader.u16le(26) & 0x3FFF;
      header.height = reader.u16le(28) & 0x3FFF;
    } else {
      header.truncated = true;
    }
  } else if (reader.matches(12, "VP8L")) {
    const uint32_t bits = reader.u32le(21);
    header.width = (bits & 0x3FFF) + 1;
    header.height = ((bits >> 14) & 0x3FFF) + 1;
    if ((bits >> 28) & 1) header.color_model = ColorModel::kRgba;
  } else if (reader.matches(12, "VP8X")) {
    const uint8_t flags = reader.u8(20);
    if (flags & 0x10) header.color_model = ColorModel::kRgba;
    header.width = (reader.u32le(24) & 0xFFFFFF) + 1;
    header.height = (reader.u32le(27) & 0xFFFFFF) + 1;
  } else {
    header.truncated = true;
  }
  return header;
}

std::optional<ImageHeader> probe_tiff(const ByteReader& reader) {
  ImageHeader header;
  header.format = ImageFormat::kTiff;
  int photometric = -1;
  int samples = 1;
  bool extra_samples = false;
  walk_tiff_ifd0(reader, 0, [&](uint16_t tag, uint32_t value, uint32_t) {
    if (tag == 256) header.width = value;
    if (tag == 257) header.height = value;
    if (tag == 262) photometric = static_cast<int>(value);
    if (tag == 277) samples = static_cast<int>(value);
    if (tag == 338) extra_samples = true;
  });
  if (photometric == 0 || photometric == 1) {
    header.color_model = (samples > 1 || extra_samples) ? ColorModel::kGrayAlpha : ColorModel::kGray;
  } else if (photometric == 2 || photometric == 6) {
    header.color_model = (samples > 3 || extra_samples) ? ColorModel::kRgba : ColorModel::kRgb;
  } else if (photometric == 3) {
    header.color_model = ColorModel::kPalette;
  } else if (photometric == 5) {
    header.color_model = ColorModel::kCmyk;
  }
  return header;
}

}  // namespace

std::optional<ImageHeader> probe_image_header(std::span<const uint8_t> bytes) {
  const ByteReader reader(bytes);
  if (reader.size() >= 3 && reader.u8(0) == 0xFF && reader.u8(1) == 0xD8 && reader.u8(2) == 0xFF) {
    return probe_jpeg(reader);
  }
  if (reader.matches(0, "\x89PNG\r\n\x1a\n")) return probe_png(reader);
  if (reader.matches(0, "BM") && reader.size() >= 18) return probe_bmp(reader);
  if (reader.matches(0, "RIFF") && reader.matches(8, "WEBP")) return probe_webp(reader);
  if (reader.matches(0, std::string_view("II*\0", 4)) || reader.matches(0, std::string_view("MM\0*", 4))) {
    return probe_tiff(reader);
  }
  return std::nullopt;
}

bool has_image_extension(const std::string& filename) {
  const auto dot = filename.rfind('.');
  if (dot == std::string::npos) return false;
  std::string extension = filename.substr(dot + 1);
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  static constexpr std::array<std::string_view, 7> kExtensions = {"jpg",  "jpeg", "png", "bmp",
                                                                  "webp", "tif",  "tiff"};
  return std::find(kExtensions.begin(), kExtensions.end(), extension) != kExtensions.end();
}

}  // namespace kennel::data

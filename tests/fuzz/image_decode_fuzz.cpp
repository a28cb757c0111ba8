// libFuzzer target: bytes straight into the image header probe and decoder.
// The decode options vary with the input's size (not its bytes, so a file's
// signature stays at offset 0): reduced JPEG decode on or off, EXIF
// orientation on or off. Errors are fine; crashes, leaks, sanitizer reports
// and broken invariants (fuzz_checks.h) are not.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "fuzz_checks.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kennel::fuzz::silence_opencv();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);

  if (const auto header = kennel::data::probe_image_header(bytes)) {
    if (header->width < 0 || header->height < 0) kennel::fuzz::fail("negative size in a header");
    if (header->exif_orientation < 1 || header->exif_orientation > 8) kennel::fuzz::fail("bad orientation");
    (void)header->is_grayscale();
    (void)header->has_alpha();
  }
  (void)kennel::data::has_image_extension(std::string(reinterpret_cast<const char*>(data), size));

  kennel::data::DecodeOptions options;
  options.max_pixels = kennel::fuzz::kMaxPixels;
  static constexpr int kShortSides[] = {0, 8, 32, 224};  // 8 lets small JPEGs decode reduced
  options.min_short_side = kShortSides[size % 4];
  options.apply_exif_orientation = (size / 4) % 2 == 0;
  kennel::fuzz::check_decode(bytes, options);
  return 0;
}

// Importer: Fashion-MNIST IDX files (Debian's dataset-fashion-mnist, gzipped
// or not) to an ImageFolder of 28x28 grayscale PNGs with train/valid/test
// splits and readable class folder names ("0.T-shirt_top", "1.Trouser", ...;
// the numeric prefix keeps the sorted order equal to the label order).
// Deterministic for a seed. Thread-safety: independent calls are safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "kennel/util/status.h"

namespace kennel::data {

inline constexpr const char* kFashionMnistDefaultSource = "/usr/share/datasets/fashion-mnist";

struct FashionMnistImportOptions {
  std::filesystem::path source = kFashionMnistDefaultSource;
  int per_class = 0;            // 0 = all; else train+valid images per class taken from the train file
  int test_per_class = -1;      // -1 = same as per_class (0 = all); test images per class
  double valid_fraction = 0.1;  // share of the train-file images that go to valid/
  uint64_t seed = 0;
  bool overwrite = false;       // refuse a non-empty `out` unless set
  int threads = 0;
  bool quiet = false;           // no progress output (tests, scripts)

  Status validate() const;
};

struct FashionMnistImportSummary {
  std::vector<std::string> classes;
  int64_t train = 0, valid = 0, test = 0;
};

// Errors name the missing/corrupt IDX file and suggest `apt-get install dataset-fashion-mnist`.
Result<FashionMnistImportSummary> import_fashion_mnist(const std::filesystem::path& out,
                                                       const FashionMnistImportOptions& options);

// Readable class names in label order.
const std::vector<std::string>& fashion_mnist_class_names();

}  // namespace kennel::data

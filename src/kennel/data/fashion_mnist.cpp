#include "kennel/data/fashion_mnist.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

#include <zlib.h>

#include <opencv2/imgcodecs.hpp>

#include "kennel/util/fs.h"
#include "kennel/util/parallel.h"
#include "kennel/util/progress.h"

namespace kennel::data {

namespace fs = std::filesystem;

namespace {

constexpr uint32_t kImagesMagic = 2051;  // IDX: unsigned bytes, 3 dimensions
constexpr uint32_t kLabelsMagic = 2049;  // IDX: unsigned bytes, 1 dimension
constexpr size_t kImagesHeaderBytes = 16;
constexpr size_t kLabelsHeaderBytes = 8;
constexpr int kSide = 28;
constexpr size_t kPixels = kSide * kSide;
constexpr const char* kInstallHint =
    "install it with `apt-get install dataset-fashion-mnist` or pass --source";
constexpr const char* kReinstallHint =
    "the file is corrupt or not Fashion-MNIST; reinstall with `apt-get install --reinstall "
    "dataset-fashion-mnist`";

uint32_t read_u32be(const std::vector<uint8_t>& bytes, size_t pos) {
  return (uint32_t{bytes[pos]} << 24) | (uint32_t{bytes[pos + 1]} << 16) |
         (uint32_t{bytes[pos + 2]} << 8) | uint32_t{bytes[pos + 3]};
}

// `<source>/<name>.gz`, else the uncompressed `<source>/<name>`.
Result<fs::path> find_idx_file(const fs::path& source, const std::string& name) {
  std::error_code error;
  for (const fs::path& candidate : {source / (name + ".gz"), source / name}) {
    if (fs::is_regular_file(candidate, error)) return candidate;
  }
  return not_found("Fashion-MNIST file '{}' is missing (nor is it there uncompressed): {}",
                   path_text(source / (name + ".gz")), kInstallHint);
}

// zlib reads gzip and, transparently, uncompressed files.
Result<std::vector<uint8_t>> read_maybe_gzipped(const fs::path& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) {
    const int error_number = errno;
    const ErrorCode code = error_number == EACCES ? ErrorCode::kPermissionDenied : ErrorCode::kNotFound;
    return Status(code, fmt::format("cannot open '{}': {}", path_text(path), std::strerror(error_number)));
  }
  gzbuffer(file, 1 << 17);
  std::vector<uint8_t> bytes;
  constexpr size_t kChunk = 1 << 20;
  for (;;) {
    const size_t size = bytes.size();
    bytes.resize(size + kChunk);
    const int n = gzread(file, bytes.data() + size, static_cast<unsigned>(kChunk));
    bytes.resize(size + static_cast<size_t>(std::max(n, 0)));
    if (n <= 0) break;
  }
  int error_number = Z_OK;
  const std::string message = gzerror(file, &error_number);
  gzclose(file);
  if (error_number != Z_OK) {
    return Status(ErrorCode::kDataLoss,
                  fmt::format("cannot decompress '{}': {} ({})", path_text(path), message, kReinstallHint));
  }
  return bytes;
}

// An IDX image file and its label file, checked against each other.
struct IdxSet {
  std::vector<uint8_t> images;  // header included: image i starts at 16 + i * 784
  std::vector<uint8_t> labels;  // header included: label i is at 8 + i
  int64_t count = 0;
  fs::path images_path;

  const uint8_t* image(int64_t i) const { return images.data() + kImagesHeaderBytes + static_cast<size_t>(i) * kPixels; }
  int label(int64_t i) const { return labels[kLabelsHeaderBytes + static_cast<size_t>(i)]; }
};

Result<IdxSet> read_idx_set(const fs::path& source, const std::string& prefix) {
  auto images_path = find_idx_file(source, prefix + "-images-idx3-ubyte");
  if (!images_path.ok()) return images_path.status();
  auto labels_path = find_idx_file(source, prefix + "-labels-idx1-ubyte");
  if (!labels_path.ok()) return labels_path.status();
  auto images = read_maybe_gzipped(*images_path);
  if (!images.ok()) return images.status();
  auto labels = read_maybe_gzipped(*labels_path);
  if (!labels.ok()) return labels.status();

  const std::string images_name = path_text(*images_path), labels_name = path_text(*labels_path);
  auto corrupt = [&](const std::string& name, const std::string& what) {
    return Status(ErrorCode::kDataLoss, fmt::format("'{}' {} ({})", name, what, kReinstallHint));
  };
  if (images->size() < kImagesHeaderBytes) return corrupt(images_name, fmt::format("is only {} bytes long, shorter than an IDX header", images->size()));
  if (labels->size() < kLabelsHeaderBytes) return corrupt(labels_name, fmt::format("is only {} bytes long, shorter than an IDX header", labels->size()));
  if (const uint32_t magic = read_u32be(*images, 0); magic != kImagesMagic) {
    return corrupt(images_name, fmt::format("is not an IDX image file: magic number {}, expected {}", magic, kImagesMagic));
  }
  if (const uint32_t magic = read_u32be(*labels, 0); magic != kLabelsMagic) {
    return corrupt(labels_name, fmt::format("is not an IDX label file: magic number {}, expected {}", magic, kLabelsMagic));
  }
  const uint32_t count = read_u32be(*images, 4);
  const uint32_t rows = read_u32be(*images, 8), cols = read_u32be(*images, 12);
  if (rows != kSide || cols != kSide) {
    return corrupt(images_name, fmt::format("holds {}x{} images, expected {}x{}", cols, rows, kSide, kSide));
  }
  if (const uint64_t expected = kImagesHeaderBytes + uint64_t{count} * kPixels; images->size() != expected) {
    return corrupt(images_name, fmt::format("is {} bytes, but its header promises {} images = {} bytes (truncated?)",
                                            images->size(), count, expected));
  }
  const uint32_t label_count = read_u32be(*labels, 4);
  if (label_count != count) {
    return corrupt(labels_name, fmt::format("has {} labels but '{}' has {} images", label_count, images_name, count));
  }
  if (const uint64_t expected = kLabelsHeaderBytes + uint64_t{count}; labels->size() != expected) {
    return corrupt(labels_name, fmt::format("is {} bytes, but its header promises {} labels = {} bytes (truncated?)",
                                            labels->size(), count, expected));
  }
  const auto num_classes = static_cast<int>(fashion_mnist_class_names().size());
  for (size_t i = kLabelsHeaderBytes; i < labels->size(); ++i) {
    if ((*labels)[i] >= num_classes) {
      return corrupt(labels_name, fmt::format("has label {} at index {}; labels must be 0..{}", (*labels)[i],
                                              i - kLabelsHeaderBytes, num_classes - 1));
    }
  }
  IdxSet set;
  set.images = std::move(images).value();
  set.labels = std::move(labels).value();
  set.count = count;
  set.images_path = *images_path;
  return set;
}

// Indices of each class's images, a seeded random `wanted` of them (0 = all),
// in a seeded random order.
Result<std::vector<std::vector<int64_t>>> pick_per_class(const IdxSet& set, int wanted, std::mt19937_64& rng,
                                                         const char* flag) {
  std::vector<std::vector<int64_t>> by_class(fashion_mnist_class_names().size());
  for (int64_t i = 0; i < set.count; ++i) by_class[static_cast<size_t>(set.label(i))].push_back(i);
  for (size_t label = 0; label < by_class.size(); ++label) {
    auto& indices = by_class[label];
    if (wanted > static_cast<int64_t>(indices.size())) {
      return invalid_argument("{} {} is more than the {} images of class '{}' in '{}'", flag, wanted, indices.size(),
                              fashion_mnist_class_names()[label], path_text(set.images_path));
    }
    std::shuffle(indices.begin(), indices.end(), rng);
    if (wanted > 0) indices.resize(static_cast<size_t>(wanted));
  }
  return by_class;
}

struct PngJob {
  const IdxSet* set;
  int64_t index;
  fs::path path;
};

void write_file_or_throw(const fs::path& path, const std::vector<uint8_t>& bytes) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  bool ok = file != nullptr && std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size();
  int error_number = errno;
  if (file != nullptr && std::fclose(file) != 0 && ok) {
    ok = false;
    error_number = errno;
  }
  if (ok) return;
  ErrorCode code = ErrorCode::kDataLoss;
  if (error_number == EACCES || error_number == EPERM || error_number == EROFS) code = ErrorCode::kPermissionDenied;
  if (error_number == ENOSPC || error_number == EDQUOT) code = ErrorCode::kResourceExhausted;
  throw Error(code, fmt::format("cannot write '{}': {}", path_text(path), std::strerror(error_number)));
}

// `out` must be missing or an empty directory unless overwriting; nothing in it
// is ever deleted (only files with our own names are replaced).
Status check_output_dir(const fs::path& out, bool overwrite) {
  std::error_code error;
  const auto status = fs::status(out, error);
  if (!fs::exists(status)) return {};
  if (!fs::is_directory(status)) {
    return {ErrorCode::kAlreadyExists,
            fmt::format("output '{}' exists and is not a directory: choose another folder", path_text(out))};
  }
  const bool empty = fs::is_empty(out, error);
  if (error) {
    return {ErrorCode::kPermissionDenied,
            fmt::format("cannot list output folder '{}': {}", path_text(out), error.message())};
  }
  if (!empty && !overwrite) {
    return {ErrorCode::kAlreadyExists,
            fmt::format("output folder '{}' is not empty: pass --overwrite to write into it (files "
                        "with the same names are replaced, nothing is deleted) or choose another folder",
                        path_text(out))};
  }
  return {};
}

Result<FashionMnistImportSummary> import(const fs::path& out, const FashionMnistImportOptions& options) {
  // Before the slow reads: a refusal should come at once.
  KENNEL_RETURN_IF_ERROR(check_output_dir(out, options.overwrite));
  std::error_code error;
  if (!fs::is_directory(options.source, error)) {
    return not_found("Fashion-MNIST folder '{}' does not exist: {}", path_text(options.source), kInstallHint);
  }
  auto train_set = read_idx_set(options.source, "train");
  if (!train_set.ok()) return train_set.status();
  auto test_set = read_idx_set(options.source, "t10k");
  if (!test_set.ok()) return test_set.status();

  // Separate streams, so the test subset does not change with --per-class.
  std::mt19937_64 train_rng(options.seed);
  std::mt19937_64 test_rng(options.seed ^ 0x9e3779b97f4a7c15ull);
  auto train_picks = pick_per_class(*train_set, options.per_class, train_rng, "--per-class");
  if (!train_picks.ok()) return train_picks.status();
  const int test_wanted = options.test_per_class < 0 ? options.per_class : options.test_per_class;
  auto test_picks = pick_per_class(*test_set, test_wanted, test_rng, "--test-per-class");
  if (!test_picks.ok()) return test_picks.status();

  FashionMnistImportSummary summary;
  const auto& names = fashion_mnist_class_names();
  for (size_t label = 0; label < names.size(); ++label) summary.classes.push_back(fmt::format("{}.{}", label, names[label]));

  std::vector<PngJob> jobs;
  auto add_jobs = [&](const IdxSet& set, const std::string& split, size_t label, std::vector<int64_t> indices) {
    std::sort(indices.begin(), indices.end());  // files listed in source order
    for (int64_t index : indices) {
      jobs.push_back({&set, index, out / split / summary.classes[label] / fmt::format("{}.png", index)});
    }
    return static_cast<int64_t>(indices.size());
  };
  for (size_t label = 0; label < names.size(); ++label) {
    const auto& picked = (*train_picks)[label];
    const auto count = static_cast<int64_t>(picked.size());
    // Stratified: the same share of every class, rounded, keeping one image for training.
    const int64_t held = std::clamp<int64_t>(std::llround(static_cast<double>(count) * options.valid_fraction), 0,
                                             std::max<int64_t>(count - 1, 0));
    summary.valid += add_jobs(*train_set, "valid", label, {picked.begin(), picked.begin() + held});
    summary.train += add_jobs(*train_set, "train", label, {picked.begin() + held, picked.end()});
    summary.test += add_jobs(*test_set, "test", label, (*test_picks)[label]);
  }

  std::vector<fs::path> dirs;  // jobs come grouped by folder
  for (const auto& job : jobs) {
    if (dirs.empty() || dirs.back() != job.path.parent_path()) dirs.push_back(job.path.parent_path());
  }
  for (const auto& dir : dirs) KENNEL_RETURN_IF_ERROR(kennel::create_directories(dir));

  Progress progress("writing Fashion-MNIST PNGs", jobs.size(), options.quiet);
  parallel_for(jobs.size(), options.threads, [&](size_t i) {
    const PngJob& job = jobs[i];
    const cv::Mat image(kSide, kSide, CV_8UC1, const_cast<uint8_t*>(job.set->image(job.index)));
    std::vector<uint8_t> png;
    if (!cv::imencode(".png", image, png)) {
      throw Error(internal_error("OpenCV could not encode image {} of '{}' as PNG", job.index,
                                 path_text(job.set->images_path)));
    }
    write_file_or_throw(job.path, png);
    progress.advance();
  });
  return summary;
}

}  // namespace

const std::vector<std::string>& fashion_mnist_class_names() {
  static const std::vector<std::string> names = {"T-shirt_top", "Trouser", "Pullover", "Dress", "Coat",
                                                 "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle_boot"};
  return names;
}

Status FashionMnistImportOptions::validate() const {
  if (per_class < 0) return invalid_argument("--per-class must be >= 0 (0 = all), got {}", per_class);
  if (test_per_class < -1) {
    return invalid_argument("--test-per-class must be >= -1 (-1 = same as --per-class, 0 = all), got {}",
                            test_per_class);
  }
  if (!(valid_fraction >= 0.0 && valid_fraction < 1.0)) {
    return invalid_argument("--valid-ratio must be in [0, 1), got {}", valid_fraction);
  }
  if (threads < 0) return invalid_argument("--threads must be >= 0 (0 = all cores), got {}", threads);
  return {};
}

Result<FashionMnistImportSummary> import_fashion_mnist(const fs::path& out,
                                                       const FashionMnistImportOptions& options) {
  KENNEL_RETURN_IF_ERROR(options.validate());
  try {
    return import(out, options);
  } catch (const Error& error) {
    return error.status().with_context(fmt::format("importing Fashion-MNIST into '{}'", path_text(out)));
  } catch (const std::exception& error) {
    return internal_error("importing Fashion-MNIST into '{}': {}", path_text(out), error.what());
  }
}

}  // namespace kennel::data

#include "kennel/data/image_folder.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <utility>

#include "kennel/data/image_header.h"
#include "kennel/util/fs.h"

namespace kennel::data {

namespace fs = std::filesystem;

namespace {

struct SplitAliases {
  const char* name;
  std::vector<std::string> folder_names;
};
const std::vector<SplitAliases>& split_aliases() {
  static const std::vector<SplitAliases> aliases = {
      {"train", {"train", "training"}},
      {"valid", {"valid", "val", "validation"}},
      {"test", {"test", "testing"}},
  };
  return aliases;
}

bool is_hidden(const fs::path& path) {
  const std::string name = path.filename().string();
  return !name.empty() && name[0] == '.';
}

bool is_directory_following_links(const fs::path& path) {
  std::error_code error;
  return fs::is_directory(path, error);  // fs::is_directory follows symlinks
}

std::vector<fs::path> sorted_entries(const fs::path& dir, std::vector<std::string>& warnings) {
  std::vector<fs::path> entries;
  std::error_code error;
  fs::directory_iterator it(dir, error);
  if (error) {
    warnings.push_back(fmt::format("cannot list '{}': {}", path_text(dir), error.message()));
    return entries;
  }
  for (const auto& entry : it) entries.push_back(entry.path());
  std::sort(entries.begin(), entries.end());
  return entries;
}

using DirectoryId = std::pair<dev_t, ino_t>;

// Lists image files under a class folder, recursively, following symlinks but
// never entering the same directory twice (a symlink loop is cut and reported).
void collect_images(const fs::path& dir, std::set<DirectoryId>& visited,
                    std::vector<std::string>& files, DatasetIndex& index) {
  struct stat info {};
  if (::stat(dir.c_str(), &info) != 0) return;
  if (!visited.insert({info.st_dev, info.st_ino}).second) {
    index.warnings.push_back(
        fmt::format("symlink loop at '{}': not followed a second time", path_text(dir)));
    return;
  }
  for (const auto& entry : sorted_entries(dir, index.warnings)) {
    if (is_hidden(entry)) continue;
    std::error_code error;
    const auto link_status = fs::symlink_status(entry, error);
    if (is_directory_following_links(entry)) {
      collect_images(entry, visited, files, index);
    } else if (has_image_extension(entry.filename().string())) {
      // Dangling symlinks and unreadable files are kept: data check reports them.
      files.push_back(entry.string());
    } else if (!error && link_status.type() != fs::file_type::not_found) {
      ++index.ignored_files;
    }
  }
}

std::vector<std::string> class_folders(const fs::path& split_dir, std::vector<std::string>& warnings) {
  std::vector<std::string> classes;
  for (const auto& entry : sorted_entries(split_dir, warnings)) {
    if (!is_hidden(entry) && is_directory_following_links(entry)) {
      classes.push_back(entry.filename().string());
    }
  }
  return classes;
}

}  // namespace

Status ScanOptions::validate() const {
  if (!(valid_fraction >= 0.0 && valid_fraction < 1.0)) {
    return invalid_argument("valid ratio must be in [0, 1), got {}", valid_fraction);
  }
  return {};
}

const Split* DatasetIndex::find_split(const std::string& name) const {
  for (const auto& split : splits) {
    if (split.name == name) return &split;
  }
  return nullptr;
}

int64_t DatasetIndex::total_images() const {
  int64_t total = 0;
  for (const auto& split : splits) total += static_cast<int64_t>(split.samples.size());
  return total;
}

void stratified_split(const std::vector<ImageSample>& samples, int64_t num_classes,
                      double held_out_fraction, uint64_t seed, std::vector<ImageSample>& kept,
                      std::vector<ImageSample>& held_out) {
  std::vector<std::vector<size_t>> by_class(static_cast<size_t>(num_classes));
  for (size_t i = 0; i < samples.size(); ++i) {
    by_class[static_cast<size_t>(samples[i].label)].push_back(i);
  }
  std::mt19937_64 rng(seed);
  std::vector<bool> is_held(samples.size(), false);
  for (auto& indices : by_class) {
    std::shuffle(indices.begin(), indices.end(), rng);
    const auto count = static_cast<int64_t>(indices.size());
    // Round, but keep at least one training image in every non-empty class.
    const int64_t held = std::clamp<int64_t>(
        static_cast<int64_t>(std::llround(static_cast<double>(count) * held_out_fraction)), 0,
        std::max<int64_t>(count - 1, 0));
    for (int64_t i = 0; i < held; ++i) is_held[indices[static_cast<size_t>(i)]] = true;
  }
  kept.clear();
  held_out.clear();
  for (size_t i = 0; i < samples.size(); ++i) {
    (is_held[i] ? held_out : kept).push_back(samples[i]);
  }
}

Result<DatasetIndex> scan_image_folder(const fs::path& root, const ScanOptions& options) {
  KENNEL_RETURN_IF_ERROR(options.validate());
  std::error_code error;
  if (!fs::exists(root, error)) {
    return not_found("dataset folder '{}' does not exist", path_text(root));
  }
  if (!fs::is_directory(root, error)) {
    return invalid_argument("dataset path '{}' is not a folder: point it at the dataset root "
                            "(the folder holding train/, valid/, test/)",
                            path_text(root));
  }
  DatasetIndex index;
  index.root = root;

  // Which split folders exist? Without any, the root itself holds the classes.
  std::vector<std::pair<std::string, fs::path>> split_dirs;
  for (const auto& alias : split_aliases()) {
    for (const auto& folder : alias.folder_names) {
      if (is_directory_following_links(root / folder)) {
        split_dirs.emplace_back(alias.name, root / folder);
        break;
      }
    }
  }
  if (split_dirs.empty()) {
    if (class_folders(root, index.warnings).empty()) {
      return failed_precondition(
          "no classes in '{}': expected train/<class>/<image> (and optionally valid/ and test/), "
          "or <class>/<image> folders directly",
          path_text(root));
    }
    index.warnings.push_back(fmt::format(
        "'{}' has no train/valid/test folders: its class folders are read as the train split",
        path_text(root)));
    split_dirs.emplace_back("train", root);
  }
  const bool has_train = split_dirs.front().first == "train";
  if (!has_train && options.known_classes.empty()) {
    return failed_precondition("no train split in '{}': add a train/ folder with one sub-folder "
                               "per class",
                               path_text(root));
  }

  // Classes come from train (or, without it, from the model being evaluated); other splits may
  // lack some (warning) but not add any (error).
  index.classes = has_train ? class_folders(split_dirs.front().second, index.warnings) : options.known_classes;
  if (!has_train) std::sort(index.classes.begin(), index.classes.end());
  if (index.classes.empty()) {
    return failed_precondition("no class folders in '{}': put each class's images in a "
                               "sub-folder named after the class",
                               path_text(split_dirs.front().second));
  }
  for (const auto& [name, dir] : split_dirs) {
    const auto found = class_folders(dir, index.warnings);
    std::vector<std::string> extra, missing;
    std::set_difference(found.begin(), found.end(), index.classes.begin(), index.classes.end(),
                        std::back_inserter(extra));
    std::set_difference(index.classes.begin(), index.classes.end(), found.begin(), found.end(),
                        std::back_inserter(missing));
    if (!extra.empty()) {
      if (!has_train) {
        return failed_precondition("split '{}' has {} class folder(s) the model does not know: {}. Remove them "
                                   "from {}/ or evaluate a model trained with them",
                                   name, extra.size(), fmt::join(extra, ", "), name);
      }
      return failed_precondition(
          "split '{}' has {} class folder(s) that train lacks: {}. Every class must have "
          "training images; add them to train/ or remove them from {}/",
          name, extra.size(), fmt::join(extra, ", "), name);
    }
    for (const auto& class_name : missing) {
      index.warnings.push_back(
          fmt::format("class '{}' has no folder in split '{}'", class_name, name));
    }
    Split split;
    split.name = name;
    split.class_counts.assign(index.classes.size(), 0);
    for (size_t label = 0; label < index.classes.size(); ++label) {
      const fs::path class_dir = dir / index.classes[label];
      if (!is_directory_following_links(class_dir)) continue;
      std::set<DirectoryId> visited;
      std::vector<std::string> files;
      collect_images(class_dir, visited, files, index);
      if (files.empty()) {
        index.warnings.push_back(fmt::format("class '{}' has no images in split '{}' ({})",
                                             index.classes[label], name, path_text(class_dir)));
      }
      for (auto& file : files) {
        split.samples.push_back({std::move(file), static_cast<int64_t>(label)});
      }
      split.class_counts[label] = static_cast<int64_t>(files.size());
    }
    index.splits.push_back(std::move(split));
  }

  if (index.find_split("valid") == nullptr && options.valid_fraction > 0) {
    Split& train = index.splits.front();
    Split valid;
    valid.name = "valid";
    std::vector<ImageSample> kept;
    stratified_split(train.samples, static_cast<int64_t>(index.classes.size()),
                     options.valid_fraction, options.seed, kept, valid.samples);
    train.samples = std::move(kept);
    for (auto* split : {&train, &valid}) {
      split->class_counts.assign(index.classes.size(), 0);
      for (const auto& sample : split->samples) ++split->class_counts[static_cast<size_t>(sample.label)];
    }
    index.splits.insert(index.splits.begin() + 1, std::move(valid));
    index.valid_split_from_train = true;
  }
  if (index.ignored_files > 0) {
    index.warnings.push_back(fmt::format(
        "{} file(s) without an image extension (jpg, jpeg, png, bmp, webp, tif, tiff) were ignored",
        index.ignored_files));
  }
  return index;
}

}  // namespace kennel::data

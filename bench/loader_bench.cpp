// Loader benchmark: images/s to read + decode + resize(256) + center crop(224)
// + normalize ~500x375 JPEGs into 224x224 float batches, with 1 and 2 decode
// threads, next to the Python peer (torchvision ImageFolder + DataLoader with
// the same number of worker processes) on the same files. Prints one table.
//
//   loader_bench [--data DIR] [--images N] [--epochs E] [--no-peer]
// Without --data it generates a synthetic dataset (kept in bench/results/ for reuse).
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "kennel/data/image_folder.h"
#include "kennel/data/loader.h"
#include "kennel/data/synth.h"

namespace fs = std::filesystem;
using namespace kennel;
using namespace kennel::data;

namespace {

struct Measurement {
  std::string name;
  int threads;
  double images_per_second;
  double peer_images_per_second = 0;
};

double run_kennel(const std::vector<ImageSample>& samples, int threads, bool augment,
                  bool reduced_decode, PixelLayout layout, int epochs) {
  TransformSpec spec;
  spec.augment = augment;
  LoaderOptions options;
  options.batch_size = 32;
  options.threads = threads;
  options.shuffle = true;
  options.reduced_decode = reduced_decode;
  options.layout = layout;
  ImageLoader loader(samples, ImagePipeline(spec), options);
  // One warm-up epoch fills the page cache, like the peer's.
  loader.start_epoch(0);
  while (loader.next()) {
  }
  const auto start = std::chrono::steady_clock::now();
  int64_t images = 0;
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    loader.start_epoch(epoch);
    while (auto batch = loader.next()) images += batch->images.size(0);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return static_cast<double>(images) / seconds;
}

double run_peer(const fs::path& script, const fs::path& data, int workers, bool augment,
                int epochs) {
  const std::string command =
      fmt::format("/usr/bin/python3 '{}' '{}' --workers {} --epochs {} {}", script.string(),
                  data.string(), workers, epochs, augment ? "--augment" : "");
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return 0;
  char line[512];
  double rate = 0;
  while (std::fgets(line, sizeof(line), pipe) != nullptr) {
    std::sscanf(line, "images_per_second=%lf", &rate);
  }
  ::pclose(pipe);
  return rate;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Kennel loader benchmark"};
  std::string data_dir;
  int per_class = 25;
  int epochs = 2;
  bool no_peer = false;
  app.add_option("--data", data_dir, "ImageFolder dataset (default: generate 500x375 JPEGs)");
  app.add_option("--per-class", per_class, "Images per class when generating (10 classes)");
  app.add_option("--epochs", epochs, "Timed epochs per configuration");
  app.add_flag("--no-peer", no_peer, "Skip the Python peer");
  CLI11_PARSE(app, argc, argv);

  const fs::path source_dir = fs::path(__FILE__).parent_path();
  fs::path root = data_dir;
  if (data_dir.empty()) {
    root = source_dir / "results" / fmt::format("loader-data-{}", per_class);
    if (!fs::exists(root / "planted.json")) {
      SynthOptions synth;
      synth.classes = 10;
      synth.per_class = per_class;
      synth.width = 500;
      synth.height = 375;
      synth.valid_fraction = 0;
      synth.test_fraction = 0;
      synth.overwrite = true;
      std::cerr << "generating " << synth.classes * per_class << " 500x375 JPEGs in " << root << "\n";
      generate_synthetic_dataset(root, synth).value();
    }
  }
  ScanOptions scan;
  scan.valid_fraction = 0;
  const DatasetIndex index = scan_image_folder(root, scan).value();
  const auto& samples = index.splits.front().samples;
  std::cerr << samples.size() << " images, " << epochs << " timed epochs per row\n";

  const fs::path peer = source_dir / "peers" / "loader_peer.py";
  std::vector<Measurement> rows;
  for (bool augment : {false, true}) {
    for (int threads : {1, 2}) {
      Measurement row;
      row.name = augment ? "train: random-resized-crop 224 + flip" : "eval: resize 256 + crop 224";
      row.threads = threads;
      row.images_per_second =
          run_kennel(samples, threads, augment, true, PixelLayout::kChw, epochs);
      if (!no_peer) row.peer_images_per_second = run_peer(peer, root, threads, augment, epochs);
      rows.push_back(row);
      std::cerr << ".";
    }
  }
  const double channels_last = run_kennel(samples, 2, false, true, PixelLayout::kHwc, epochs);
  std::cerr << "\n";

  std::cout << fmt::format("{:<40} {:>7} {:>12} {:>14} {:>7}\n", "pipeline (500x375 JPEG -> 224)",
                           "threads", "kennel img/s", "python img/s", "ratio");
  for (const auto& row : rows) {
    std::cout << fmt::format(
        "{:<40} {:>7} {:>12.1f} {:>14} {:>7}\n", row.name, row.threads, row.images_per_second,
        row.peer_images_per_second > 0 ? fmt::format("{:.1f}", row.peer_images_per_second) : "-",
        row.peer_images_per_second > 0
            ? fmt::format("{:.2f}x", row.images_per_second / row.peer_images_per_second)
            : "-");
  }
  std::cout << fmt::format("{:<40} {:>7} {:>12.1f}\n", "eval, channels-last batches", 2, channels_last);
  return 0;
}

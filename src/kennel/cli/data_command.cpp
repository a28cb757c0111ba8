// `kennel data ...`: check, upload, import, synth.
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "kennel/cli/command.h"
#include "kennel/data/dataset_check.h"
#include "kennel/data/fashion_mnist.h"
#include "kennel/data/s3_sync.h"
#include "kennel/data/synth.h"
#include "kennel/s3/client.h"
#include "kennel/store/layout.h"
#include "kennel/util/fs.h"

namespace kennel::cli {

namespace {

template <typename T>
T value_or_throw(Result<T> result) {
  return std::move(result).value();
}

void throw_if_error(const Status& status) {
  if (!status.ok()) throw Error(status);
}

struct DataCheckFlags {
  std::string path;
  bool json = false;
  data::CheckOptions options;
  int max_listed = 50;
};

void register_check(CLI::App& data, CommandContext& context) {
  auto flags = std::make_shared<DataCheckFlags>();
  auto* check = data.add_subcommand(
      "check",
      "Validate an ImageFolder dataset: decode every image, report bad files and class balance.\n"
      "Exit 0 when usable (warnings listed), 1 when not.");
  check->add_option("path", flags->path,
                    "Dataset root (with train/ [valid/] [test/]), or s3://BUCKET/PREFIX (synced into the "
                    "home's S3 cache first)")
      ->required();
  check->add_flag("--json", flags->json, "Print the full report as JSON");
  check->add_option("--threads", flags->options.threads, "Decode threads (0 = all cores)")
      ->capture_default_str();
  check->add_option("--max-pixels", flags->options.max_pixels,
                    "Refuse images whose header claims more pixels (0 = no limit)")
      ->capture_default_str();
  check->add_option("--min-size", flags->options.min_side,
                    "Images whose shorter side is below this are too_small")
      ->capture_default_str();
  check->add_option("--valid-ratio", flags->options.scan.valid_fraction,
                    "Share of train held out as valid when valid/ is missing")
      ->capture_default_str();
  check->add_option("--seed", flags->options.scan.seed, "Seed of the train/valid split")
      ->capture_default_str();
  check->add_flag("--no-decode", [opts = &flags->options](int64_t) { opts->decode = false; },
                  "Read headers and hashes only (faster, misses corrupt pixel data)");
  check->add_option("--max-listed", flags->max_listed, "Bad files listed per issue in the table")
      ->capture_default_str();
  check->callback([flags, &context] {
    flags->options.quiet = flags->json;
    throw_if_error(flags->options.validate());
    std::string root = flags->path;
    if (s3::is_s3_uri(root)) {
      data::S3TransferOptions transfer;
      transfer.quiet = flags->json;
      const auto synced = value_or_throw(data::sync_s3_folder(
          root, store::HomeLayout(context.global.home_dir()).s3_cache(), data::SyncedKind::kDataset, transfer));
      if (!flags->json) {
        std::cout << fmt::format("{}: {} objects ({} downloaded, {} bytes fetched), checking the local copy {}\n",
                                 root, synced.identities.size(), synced.downloaded, synced.bytes_downloaded,
                                 path_text(synced.root));
      }
      root = synced.root.string();
    }
    const auto report = value_or_throw(data::check_dataset(root, flags->options));
    if (flags->json) {
      std::cout << data::to_json(report).dump(2) << "\n";
    } else {
      std::cout << data::format_report_text(report, flags->max_listed);
    }
    context.exit_code = report.usable ? 0 : 1;
  });
}

struct UploadFlags {
  std::string dir;
  std::string destination;
  data::S3TransferOptions options;
};

void register_upload(CLI::App& data, CommandContext& context) {
  auto flags = std::make_shared<UploadFlags>();
  auto* upload = data.add_subcommand(
      "upload",
      "Upload a dataset folder to S3 (s3://BUCKET/PREFIX), in parallel. Each object records its file's\n"
      "SHA-256 (x-amz-meta-sha256); objects that already match are skipped. Settings and credentials\n"
      "as the AWS CLI reads them (AWS_* variables, ~/.aws/credentials and config, AWS_PROFILE).");
  upload->add_option("dir", flags->dir, "Local folder (e.g. an ImageFolder dataset root)")->required();
  upload->add_option("destination", flags->destination, "s3://BUCKET/PREFIX")->required();
  upload->add_option("--concurrency", flags->options.concurrency, "Objects uploaded at once")
      ->capture_default_str();
  upload->add_flag("--quiet", flags->options.quiet, "No progress bar");
  upload->callback([flags, &context] {
    if (flags->options.concurrency < 1 || flags->options.concurrency > 256) {
      throw Error(invalid_argument("--concurrency must be 1 to 256, got {}", flags->options.concurrency));
    }
    const auto destination = value_or_throw(s3::parse_s3_uri(flags->destination));
    const auto client = value_or_throw(s3::make_s3_client(s3::command_line_options()));
    const auto summary =
        value_or_throw(data::upload_tree(*client, flags->dir, destination, flags->options));
    std::cout << fmt::format("{} files: {} uploaded ({} bytes), {} already there with the same SHA-256\n",
                             summary.files, summary.uploaded, summary.bytes_uploaded, summary.skipped);
  });
}

struct ImportFlags {
  std::string out;
  data::FashionMnistImportOptions options;
};

void register_import(CLI::App& data, CommandContext& context) {
  auto* import = data.add_subcommand("import", "Turn another dataset format into an ImageFolder");
  import->require_subcommand(1);
  auto flags = std::make_shared<ImportFlags>();
  auto* fashion = import->add_subcommand(
      "fashion-mnist", "Fashion-MNIST IDX files (Debian's dataset-fashion-mnist) to PNGs");
  fashion->add_option("--out", flags->out, "Output dataset root")->required();
  fashion->add_option("--source", flags->options.source, "Folder with the IDX(.gz) files")
      ->capture_default_str();
  fashion->add_option("--per-class", flags->options.per_class,
                      "Train+valid images per class taken from the train file (0 = all)")
      ->capture_default_str();
  fashion->add_option("--test-per-class", flags->options.test_per_class,
                      "Test images per class (-1 = same as --per-class, 0 = all)")
      ->capture_default_str();
  fashion->add_option("--valid-ratio", flags->options.valid_fraction,
                      "Share of the train-file images that go to valid/")
      ->capture_default_str();
  fashion->add_option("--seed", flags->options.seed, "Seed for the subset and split")
      ->capture_default_str();
  fashion->add_option("--threads", flags->options.threads, "Encode threads (0 = all cores)")
      ->capture_default_str();
  fashion->add_flag("--overwrite", flags->options.overwrite,
                    "Write into a non-empty output folder");
  fashion->callback([flags, &context] {
    throw_if_error(flags->options.validate());
    const auto summary = value_or_throw(data::import_fashion_mnist(flags->out, flags->options));
    std::cout << fmt::format(
        "imported Fashion-MNIST into {}: {} classes, train {}, valid {}, test {} images\n",
        flags->out, summary.classes.size(), summary.train, summary.valid, summary.test);
  });
}

struct SynthFlags {
  std::string out;
  std::string size = "64x64";
  data::SynthOptions options;
};

void register_synth(CLI::App& data, CommandContext& context) {
  auto flags = std::make_shared<SynthFlags>();
  auto* synth = data.add_subcommand(
      "synth", "Generate a learnable synthetic ImageFolder dataset (tests, benchmarks, demos)");
  synth->add_option("--out", flags->out, "Output dataset root")->required();
  synth->add_option("--classes", flags->options.classes, "Number of classes")
      ->capture_default_str();
  synth->add_option("--per-class", flags->options.per_class, "Training images per class")
      ->capture_default_str();
  synth->add_option("--size", flags->size, "Nominal image size WxH (each varies +-20 %)")
      ->capture_default_str();
  synth->add_option("--valid-ratio", flags->options.valid_fraction,
                    "valid/ images per class as a share of --per-class (0 = no valid/)")
      ->capture_default_str();
  synth->add_option("--test-ratio", flags->options.test_fraction,
                    "test/ images per class as a share of --per-class (0 = no test/)")
      ->capture_default_str();
  synth->add_option("--corrupt", flags->options.corrupt,
                    "Plant this many bad files, cycling through every kind data check detects")
      ->capture_default_str();
  synth->add_option("--seed", flags->options.seed, "Random seed")->capture_default_str();
  synth->add_option("--quality", flags->options.jpeg_quality, "JPEG quality")
      ->capture_default_str();
  synth->add_option("--threads", flags->options.threads, "Encode threads (0 = all cores)")
      ->capture_default_str();
  synth->add_flag("--overwrite", flags->options.overwrite, "Write into a non-empty output folder");
  synth->callback([flags, &context] {
    int width = 0, height = 0;
    char separator = 0;
    if (std::sscanf(flags->size.c_str(), "%d%c%d", &width, &separator, &height) != 3 ||
        (separator != 'x' && separator != 'X')) {
      throw Error(invalid_argument("--size '{}' is not WxH (for example 64x64)", flags->size));
    }
    flags->options.width = width;
    flags->options.height = height;
    throw_if_error(flags->options.validate());
    const auto summary =
        value_or_throw(data::generate_synthetic_dataset(flags->out, flags->options));
    std::cout << fmt::format("generated {} images in {} classes under {}", summary.images,
                             summary.classes.size(), flags->out);
    if (!summary.planted.empty()) {
      std::cout << fmt::format(", planted {} bad files (listed in {}/planted.json)",
                               summary.planted.size(), flags->out);
    }
    std::cout << "\n";
  });
}

}  // namespace

void register_data_commands(CLI::App& app, CommandContext& context) {
  auto* data = app.add_subcommand("data", "Dataset tools: check, upload, import, synth");
  data->require_subcommand(1);
  register_check(*data, context);
  register_upload(*data, context);
  register_import(*data, context);
  register_synth(*data, context);
}

}  // namespace kennel::cli

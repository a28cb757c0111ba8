// `kennel quantize MODEL --calibration DATA`: int8 post-training quantization
// of a saved model; prints what int8 costs on held-out images and where the
// int8 model directory was written.
#include <iostream>

#include <nlohmann/json.hpp>

#include "kennel/cli/command.h"
#include "kennel/job/quantize_job.h"

namespace kennel::cli {

void register_quantize_command(CLI::App& app, CommandContext& context) {
  struct Flags {
    std::string model;
    std::string calibration;
    std::string out;
    bool json = false;
    job::QuantizeOptions options;
  };
  auto flags = std::make_shared<Flags>();
  auto* quantize = app.add_subcommand(
      "quantize", "Quantize a saved model to int8 (calibrated on a dataset split) and write a model directory "
                  "that serves, transforms and evaluates with --precision int8");
  quantize->add_option("model", flags->model, "Model directory, or the name of a completed training job")->required();
  quantize->add_option("--calibration", flags->calibration, "ImageFolder dataset to calibrate on (the model's classes)")
      ->required();
  quantize->add_option("--calibration-split", flags->options.calibration_split, "Split the calibration images come from")
      ->capture_default_str();
  quantize->add_option("--calibration-images", flags->options.calibration_images,
                       "Images to calibrate on (a seeded random sample of the split)")
      ->capture_default_str();
  quantize->add_option("--check-split", flags->options.check_split,
                       "Split int8 is compared with fp32 on (default: valid, else test)");
  quantize->add_option("--check-images", flags->options.check_images, "Images of the check split (0 = all)")
      ->capture_default_str();
  quantize->add_option("--out", flags->out, "Folder for the int8 model directory (default: <model dir>-int8)");
  quantize->add_option("--batch-size", flags->options.batch_size, "Images per batch")->capture_default_str();
  quantize->add_option("--threads", flags->options.threads, "CPU threads (0 = all)")->capture_default_str();
  quantize->add_option("--seed", flags->options.seed, "Seed of the image samples and of the valid split")
      ->capture_default_str();
  quantize->add_flag("--json", flags->json, "Print the result as JSON");
  quantize->callback([flags, &context] {
    flags->options.calibration = flags->calibration;
    flags->options.out = flags->out;
    flags->options.quiet = flags->json;
    auto result = job::quantize_model(flags->model, context.global.home_dir(), flags->options);
    if (!result.ok()) throw Error(result.status());
    const models::QuantizationRecord& record = result->record;
    const models::QuantizationCheck& check = record.check;
    if (flags->json) {
      nlohmann::json out = {{"out", result->out.string()},
                            {"calibration_split", record.calibration_split},
                            {"calibration_images", record.calibration_images},
                            {"check_split", check.split},
                            {"check_images", check.images},
                            {"agreement", check.agreement},
                            {"accuracy_int8", check.accuracy_int8},
                            {"accuracy_fp32", check.accuracy_fp32},
                            {"max_logit_difference", check.max_logit_difference},
                            {"cpu", record.cpu}};
      std::cout << out.dump(2) << "\n";
      return;
    }
    std::cout << fmt::format("calibrated on {} {} images; on {} {} images int8 agrees with fp32 on {:.2f} % of "
                             "top-1 classes (accuracy int8 {:.4f}, fp32 {:.4f}; largest logit difference {:.3g})\n",
                             record.calibration_images, record.calibration_split, check.images, check.split,
                             100 * check.agreement, check.accuracy_int8, check.accuracy_fp32,
                             check.max_logit_difference);
    std::cout << fmt::format("int8 model: {} (kennel serve {} --precision int8)\n", result->out.string(),
                             result->out.string());
  });
}

}  // namespace kennel::cli

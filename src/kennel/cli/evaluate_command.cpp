// `kennel evaluate MODEL DATA`: accuracy, top-5, per-class precision/recall/F1
// and the confusion matrix (CSV + PNG) of a saved model on a dataset split.
#include <iostream>

#include <nlohmann/json.hpp>

#include "kennel/cli/command.h"
#include "kennel/job/evaluate_job.h"

namespace kennel::cli {

void register_evaluate_command(CLI::App& app, CommandContext& context) {
  struct Flags {
    std::string model;
    std::string data;
    std::string out;
    bool json = false;
    job::EvaluateOptions options;
  };
  auto flags = std::make_shared<Flags>();
  auto* evaluate = app.add_subcommand("evaluate", "Evaluate a saved model (a model/ folder or a job name) on a dataset split");
  evaluate->add_option("model", flags->model, "Model directory, or the name of a completed training job")->required();
  evaluate->add_option("data", flags->data, "ImageFolder dataset root")->required();
  evaluate->add_option("--split", flags->options.split, "Split to evaluate (default: test, else valid)");
  evaluate->add_option("--out", flags->out, "Report folder (default: the job's evaluation/)");
  evaluate->add_option("--batch-size", flags->options.batch_size, "Images per batch")->capture_default_str();
  evaluate->add_option("--threads", flags->options.threads, "CPU threads (0 = all)")->capture_default_str();
  add_inference_precision_flags(*evaluate, flags->options.precision, flags->options.int8_min_agreement);
  evaluate->add_flag("--json", flags->json, "Print the report as JSON");
  evaluate->callback([flags, &context] {
    flags->options.out = flags->out;
    flags->options.quiet = flags->json;
    auto result = job::evaluate_model(flags->model, flags->data, context.global.home_dir(), flags->options);
    if (!result.ok()) throw Error(result.status());
    const auto& report = result->report;
    if (flags->json) {
      auto out = train::to_json(report);
      out["split"] = result->split;
      out["precision"] = result->precision;
      out["skipped"] = result->skipped;
      out["report_dir"] = result->out.string();
      std::cout << out.dump(2) << "\n";
      return;
    }
    std::cout << fmt::format(
        "{} split: {} images at {}, accuracy {:.4f} (95 % CI {:.4f}-{:.4f}), top-5 {:.4f}, loss {:.4f}, macro F1 "
        "{:.4f}\n",
        result->split, report.samples, result->precision, report.accuracy, report.accuracy_ci95_low, report.accuracy_ci95_high,
        report.top5_accuracy, report.loss, report.macro_f1);
    std::cout << fmt::format("{:<32} {:>8} {:>9} {:>8} {:>8}\n", "class", "support", "precision", "recall", "f1");
    for (const auto& c : report.classes) {
      std::cout << fmt::format("{:<32} {:>8} {:>9.4f} {:>8.4f} {:>8.4f}\n", c.name, c.support, c.precision,
                               c.recall, c.f1);
    }
    if (result->skipped > 0) std::cout << fmt::format("{} unreadable image(s) skipped\n", result->skipped);
    std::cout << fmt::format("report: {}/{}_evaluation.json, confusion matrix: {}/{}_confusion_matrix.png\n",
                             result->out.string(), result->split, result->out.string(), result->split);
  });
}

}  // namespace kennel::cli

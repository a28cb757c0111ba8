// `kennel transform MODEL INPUT --out preds.jsonl`: batch inference over a
// folder or a manifest, resumable.
#include <iostream>

#include "kennel/cli/command.h"
#include "kennel/models/model_dir.h"
#include "kennel/serve/batch_transform.h"

namespace kennel::cli {

void register_transform_command(CLI::App& app, CommandContext& context) {
  struct Flags {
    std::string model;
    std::string input;
    std::string out;
    std::string file_root;
    std::string ca_bundle;
    std::vector<std::string> allow_networks;
    std::vector<std::string> deny_networks;
    serve::BatchTransformOptions options;
  };
  auto flags = std::make_shared<Flags>();
  auto* transform = app.add_subcommand(
      "transform", "Batch inference: one JSON line per image of a folder or manifest; re-run to resume");
  transform->add_option("model", flags->model, "Model directory or job name")->required();
  transform->add_option("input", flags->input, "Folder of images, or a manifest with one path or URL per line")
      ->required();
  transform->add_option("--out", flags->out, "Output JSON-lines file (appended to; inputs already predicted there are skipped; OUT.run.json records the model)")
      ->required();
  transform->add_option("--top-k", flags->options.top_k, "Classes per image")->capture_default_str();
  transform->add_option("--batch-size", flags->options.batch_size, "Images per model batch")->capture_default_str();
  transform->add_option("--max-attempts", flags->options.max_attempts,
                        "Tries per input: a re-run retries failed inputs until each had this many (URL fetches "
                        "also retry within a run)")
      ->capture_default_str();
  add_inference_precision_flags(*transform, flags->options.predictor.precision,
                                flags->options.predictor.int8_min_agreement);
  transform->add_option("--threads", flags->options.predictor.threads, "Model CPU threads (0 = all cores)")
      ->capture_default_str();
  transform->add_option("--allow-file-root", flags->file_root, "Allow file:// URLs in the manifest below this folder");
  transform->add_option("--allow-network", flags->allow_networks,
                        "CIDR that manifest URLs may reach although not public (repeatable), e.g. 10.0.0.0/8");
  transform->add_option("--deny-network", flags->deny_networks, "CIDR that manifest URLs may not reach (repeatable)");
  transform->add_option("--ca-bundle", flags->ca_bundle, "PEM CA certificates to trust for https:// URLs");
  transform->add_flag("--quiet", flags->options.quiet, "No progress bar");
  transform->callback([flags, &context] {
    auto model_dir = models::resolve_model_dir(flags->model, context.global.home_dir());
    if (!model_dir.ok()) throw Error(model_dir.status());
    flags->options.fetch.file_root = flags->file_root;
    flags->options.fetch.allowed_networks = flags->allow_networks;
    flags->options.fetch.denied_networks = flags->deny_networks;
    flags->options.fetch.ca_bundle = flags->ca_bundle;
    auto summary = serve::run_batch_transform(*model_dir, flags->input, flags->out, flags->options);
    if (!summary.ok()) throw Error(summary.status());
    std::cout << fmt::format("{} inputs: {} predicted, {} failed, {} already done earlier, {} retried -> {}\n",
                             summary->total, summary->ok, summary->failed, summary->already_done, summary->retried,
                             flags->out);
    if (summary->failed > 0) context.exit_code = 1;
  });
}

}  // namespace kennel::cli

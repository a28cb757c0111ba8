#include "kennel/job/evaluate_job.h"

#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>
#include <torch/utils.h>

#include "kennel/data/image_folder.h"
#include "kennel/data/loader.h"
#include "kennel/models/inference_model.h"
#include "kennel/models/model_dir.h"
#include "kennel/train/batch_sources.h"
#include "kennel/train/trainer.h"
#include "kennel/util/parallel.h"
#include "kennel/util/progress.h"

namespace kennel::job {

namespace fs = std::filesystem;

namespace {
// train::evaluate's view of a model that only infers.
class InferenceAsTrainable : public train::TrainableModel {
 public:
  explicit InferenceAsTrainable(models::InferenceModel& model) : model_(model), classifier_(model.classifier()) {}
  at::Tensor forward(const at::Tensor& inputs) override { return model_.forward(inputs); }
  void set_training(bool /*training*/) override {}
  std::vector<at::Tensor> trainable_parameters() override { return {}; }
  torch::nn::Module& module() override { return *classifier_; }

 private:
  models::InferenceModel& model_;
  models::Classifier classifier_;
};
}  // namespace


Result<EvaluateResult> evaluate_model(const std::string& model, const fs::path& data, const fs::path& home,
                                      const EvaluateOptions& options) {
  if (options.batch_size < 1) return invalid_argument("--batch-size must be >= 1, got {}", options.batch_size);
  KENNEL_RETURN_IF_ERROR(models::check_inference_precision(options.precision));
  auto model_dir = models::resolve_model_dir(model, home);
  if (!model_dir.ok()) return model_dir.status();
  auto loaded = models::load_model_dir(*model_dir);
  if (!loaded.ok()) return loaded.status();
  data::ScanOptions scan;
  scan.valid_fraction = 0;
  scan.known_classes = loaded->info.classes;
  auto index = data::scan_image_folder(data, scan);
  if (!index.ok()) return index.status();
  if (index->classes != loaded->info.classes) {
    return failed_precondition("the classes of '{}' ({}) differ from the model's ({}): evaluate on a dataset "
                               "with the same class folders",
                               data.string(), index->classes.size(), loaded->info.classes.size());
  }
  std::string split_name = options.split;
  if (split_name.empty()) split_name = index->find_split("test") ? "test" : "valid";
  const data::Split* split = index->find_split(split_name);
  if (split == nullptr || split->samples.empty()) {
    return not_found("dataset '{}' has no '{}' split with images", data.string(), split_name);
  }
  const int threads = options.threads > 0 ? options.threads : default_thread_count();
  at::set_num_threads(threads);
  data::LoaderOptions loader_options;
  loader_options.batch_size = options.batch_size;
  loader_options.threads = threads;
  loader_options.layout = data::PixelLayout::kHwc;
  data::ImageLoader loader(split->samples, data::ImagePipeline(models::eval_transform_of(loaded->info)), loader_options);
  train::ImageBatchSource source(loader);
  // What `kennel serve` runs at the same precision (BatchNorm folded, weights converted once,
  // channels-last; or the int8 graph), so an evaluation and the endpoint answer alike.
  auto inference = models::InferenceModel::prepare(*model_dir, *loaded,
                                               {.precision = options.precision,
                                                .int8_min_agreement = options.int8_min_agreement});
  if (!inference.ok()) return inference.status();
  if (!(*inference)->precision_warning().empty()) {
    spdlog::warn("model '{}': {}", model_dir->string(), (*inference)->precision_warning());
  }
  if (!options.quiet) spdlog::info("precision {}: {}", (*inference)->precision(), (*inference)->precision_reason());
  InferenceAsTrainable eval_model(**inference);
  train::TrainerOptions eval_options;
  eval_options.num_classes = static_cast<int64_t>(index->classes.size());
  eval_options.channels_last = false;  // the inference model lays its input out itself
  eval_options.precision = "fp32";     // no autocast: the model runs at its own precision
  const train::EvalMetrics metrics = train::evaluate(eval_model, source, eval_options);

  EvaluateResult result;
  result.split = split_name;
  result.precision = (*inference)->precision();
  result.report = train::make_classification_report(train::to_confusion_matrix(metrics.confusion), index->classes);
  result.report.loss = metrics.loss;
  result.report.top5_accuracy = metrics.top5_accuracy;
  result.skipped = loader.stats().skipped;
  result.out = options.out.empty() ? model_dir->parent_path() / "evaluation" : options.out;
  KENNEL_RETURN_IF_ERROR(train::write_classification_report(result.out, split_name + "_", result.report));
  return result;
}

}  // namespace kennel::job

#include "kennel/job/export.h"

#include "kennel/models/inference_graph.h"
#include "kennel/models/model_dir.h"
#include "kennel/train/evaluation_report.h"

namespace kennel::job {

std::optional<train::EvalMetrics> evaluate_test_split(train::Trainer& trainer, JobInputs& inputs,
                                                      const PreparedJob& prepared) {
  if (!inputs.test) return std::nullopt;
  if (inputs.on_cached_features || prepared.device.is_cuda()) return trainer.evaluate(*inputs.test);
  const at::ScalarType dtype = models::inference_dtype(prepared.spec.precision);
  auto graph = models::inference_copy(prepared.classifier, {.fold_batchnorm = true, .dtype = dtype,
                                                            .channels_last = trainer.options().channels_last});
  if (!graph.ok()) throw Error(graph.status());
  auto model = trainable_model(*graph, TrainedPart::kNone);
  train::TrainerOptions options = trainer.options();
  options.precision = "fp32";  // no autocast: the copy's weights already are in `dtype`
  options.input_dtype = dtype;
  return train::evaluate(*model, *inputs.test, options);
}

void write_test_evaluation(const train::EvalMetrics& test, int64_t step, const PreparedJob& prepared,
                           const store::JobPaths& paths, train::MetricsLogger& logger) {
  logger.log_evaluation("test", step, test);
  auto report = train::make_classification_report(train::to_confusion_matrix(test.confusion), prepared.index.classes);
  report.loss = test.loss;
  report.top5_accuracy = test.top5_accuracy;
  Status written = train::write_classification_report(paths.evaluation(), "test_", report);
  if (!written.ok()) throw Error(written);
}

void export_model(const PreparedJob& prepared, const store::JobPaths& paths) {
  const TrainSpec& spec = prepared.spec;
  models::ModelInfo info;
  info.arch = spec.arch;
  info.head_hidden = spec.head;
  info.dropout = spec.dropout;
  info.classes = prepared.index.classes;
  info.input_size = spec.input_size;
  info.resize = spec.resize;
  info.mean = prepared.normalization.mean;
  info.std = prepared.normalization.std;
  info.source_job = spec.name;
  info.pretrained = spec.pretrained;
  info.keras_compat = prepared.keras_compat;
  info.precision = spec.precision;
  info.precision_auto = spec.precision_auto;
  models::Classifier classifier = prepared.classifier;
  classifier->to(at::kCPU);
  classifier->to(at::MemoryFormat::Contiguous);
  Status saved = models::save_model_dir(paths.model(), classifier, info, spec.export_pth);
  if (!saved.ok()) throw Error(saved);
}

}  // namespace kennel::job

#include "kennel/job/export.h"

#include "kennel/models/model_dir.h"
#include "kennel/train/evaluation_report.h"

namespace kennel::job {

std::optional<train::EvalMetrics> evaluate_test_split(train::Trainer& trainer, JobInputs& inputs) {
  if (!inputs.test) return std::nullopt;
  return trainer.evaluate(*inputs.test);
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

// What a completed training job leaves besides its records: the test split's
// evaluation (metrics logged, a per-class report and confusion matrix under
// evaluation/) and the model directory (model.safetensors + model.json, and
// model.pth when asked) that `kennel serve`, `evaluate` and `transform` load.
// Thread-safety: used on the job's thread.
#pragma once

#include <optional>

#include "kennel/job/inputs.h"
#include "kennel/job/prepare.h"
#include "kennel/store/layout.h"
#include "kennel/train/metrics_logger.h"
#include "kennel/train/trainer.h"

namespace kennel::job {

// Evaluates the test split (nullopt when there is none); in a data-parallel
// job every rank evaluates its share and the metrics are summed. On the CPU,
// images go through the graph `kennel serve` and `kennel evaluate` run (a
// folded copy of the model, weights in the job's precision), so the job's
// test accuracy is the endpoint's.
std::optional<train::EvalMetrics> evaluate_test_split(train::Trainer& trainer, JobInputs& inputs,
                                                      const PreparedJob& prepared);

// Logs the test metrics and writes the report under evaluation/. Throws
// kennel::Error when it cannot be written.
void write_test_evaluation(const train::EvalMetrics& test, int64_t step, const PreparedJob& prepared,
                           const store::JobPaths& paths, train::MetricsLogger& logger);

// Writes the trained classifier (moved to the CPU, contiguous) with its
// ModelInfo. Throws kennel::Error on failure.
void export_model(const PreparedJob& prepared, const store::JobPaths& paths);

}  // namespace kennel::job

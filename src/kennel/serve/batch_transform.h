// Batch transform: offline inference over a folder of images or a manifest
// (one path or URL per line), one JSON line per input in the output file —
// the cloud's batch-transform job, on local files.
//
// Resumable: inputs already predicted in the output are skipped, and a last
// line cut short by a crash is dropped before appending, so a killed run
// continues where it stopped and never writes an input twice. An input that
// failed is tried again by a later run until it has had `max_attempts` tries
// (its error line is replaced, never duplicated); a URL that cannot be
// fetched is also retried within a run. Each batch is appended and flushed to
// disk before the next starts.
//
// `<output>.run.json` records the model the output was made with (the digest
// of its files) and `top_k`; a resume with another model or another top_k is
// refused, so one output never mixes two models.
// Thread-safety: one run at a time per output file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "kennel/serve/predictor.h"
#include "kennel/serve/url_fetcher.h"
#include "kennel/util/status.h"

namespace kennel::serve {

struct BatchTransformOptions {
  int64_t top_k = 5;
  int64_t batch_size = 16;
  int64_t max_attempts = 3;  // tries per input, over this run and resumed ones (URL fetches retry in a run)
  int decode_threads = 0;  // 0 = all cores
  bool quiet = false;      // no progress bar
  PredictorOptions predictor;
  FetchOptions fetch;      // for URL lines of a manifest
};

struct BatchTransformSummary {
  int64_t total = 0;      // inputs listed
  int64_t ok = 0;         // predicted in this run
  int64_t failed = 0;     // unreadable/undecodable in this run (an "error" line each)
  int64_t already_done = 0;  // skipped: in the output from an earlier run (predicted, or out of attempts)
  int64_t retried = 0;       // failed in an earlier run and tried again in this one
};

// The record of what made an output: `<output>.run.json`.
std::filesystem::path transform_run_record_path(const std::filesystem::path& output);

// `input`: a folder (images found recursively, sorted by path) or a manifest
// file. Lines of the output: {"input", "label", "index", "probability",
// "top_k": [{"label", "index", "probability"}, ...]} or {"input", "error", "attempts"}.
// Errors: the model, input or output cannot be read/written (named);
// kFailedPrecondition when the output was made with another model or top_k.
Result<BatchTransformSummary> run_batch_transform(const std::filesystem::path& model_dir, const std::string& input,
                                                  const std::filesystem::path& output,
                                                  const BatchTransformOptions& options);

}  // namespace kennel::serve

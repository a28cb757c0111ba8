// Reducing a tensor to a TensorSummary (tensor_record.h): min, max, mean, std,
// variance, l1/l2 norms, the shares of zeros, NaNs, Infs and positives, and a
// histogram of the finite values. Reductions run in float64 on the tensor's
// device and only a few numbers come back to the host, so summarising a
// large weight every few steps costs little. Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

#include "kennel/debug/tensor_record.h"

namespace kennel::debug {

struct SummaryOptions {
  int64_t histogram_bins = 0;  // 0: no histogram
  int64_t keep_values = 0;     // copy the raw values when the tensor has at most this many elements
};

TensorSummary summarize(const at::Tensor& tensor, const std::string& collection, const std::string& what,
                        int64_t step, Mode mode, const SummaryOptions& options = {});

// A one-value summary (a loss, an accuracy): values[0] = value.
TensorSummary scalar_summary(double value, const std::string& collection, const std::string& what, int64_t step,
                             Mode mode);

}  // namespace kennel::debug

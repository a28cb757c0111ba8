// SyncBatchNorm for data-parallel jobs: models::BatchNormSync over a
// ProcessGroup. In training mode each BatchNorm takes its mean and variance
// over every rank's batch (an allreduce of per-channel sums, count and
// squares), updates its running statistics from them (all ranks alike), and
// its backward allreduces the two per-channel sums the input gradient needs,
// as PyTorch's SyncBatchNorm does. Weight and bias gradients stay per rank;
// the gradient averaging after backward treats them like any other.
// Statistics are accumulated in float64 and normalisation runs in float32
// whatever the input's dtype (bf16 under autocast). Every call is collective.
#pragma once

#include <memory>

#include "kennel/dist/process_group.h"
#include "kennel/models/batch_norm.h"

namespace kennel::dist {

std::shared_ptr<models::BatchNormSync> make_batchnorm_sync(ProcessGroup& group);

}  // namespace kennel::dist

// Data parallelism over a ProcessGroup, the trainer's ReplicaGroup: what
// PyTorch's DistributedDataParallel does, written here because c10d::Reducer
// cannot be built against Debian's headers (it needs autograd-context headers
// that are not shipped). The rules follow PyTorch's reducer:
//   - attach: rank 0's parameters and buffers are broadcast to every rank;
//   - buckets: trainable parameters in reverse registration order (roughly
//     the order backward produces their gradients), grouped into flat buckets
//     of at most bucket_cap_bytes (the first one smaller, so communication
//     starts early), the same buckets in the same order on every rank;
//   - overlap: a hook on each parameter copies its gradient into its bucket
//     as soon as autograd computes it; a full bucket is allreduced at once on
//     Gloo's threads while backward goes on. Buckets are launched strictly in
//     order (a bucket is launched only after every bucket before it), so the
//     collectives match on every rank whatever order gradients arrive in;
//   - after backward: buckets still waiting (parameters that got no gradient
//     this step) are completed with zeros and launched; then every bucket is
//     waited for, divided by the world size and copied back into .grad;
//   - BatchNorm buffers: rank 0's are broadcast before each forward pass
//     while any module holding buffers is in training mode (DDP's default).
// Thread-safety: the training thread; gradient hooks run on it during backward.
#pragma once

#include <cstdint>
#include <vector>

#include "kennel/dist/process_group.h"
#include "kennel/train/replica_group.h"

namespace kennel::dist {

struct DataParallelOptions {
  int64_t bucket_cap_bytes = 25ll << 20;       // PyTorch's default bucket_cap_mb
  int64_t first_bucket_cap_bytes = 1ll << 20;  // DDP's first bucket: communication starts sooner
  bool overlap = true;  // false: every bucket after backward (only to measure what overlap saves)
};

// What the last step's gradient averaging cost.
struct GradientSyncStats {
  int64_t buckets = 0;
  int64_t bytes = 0;              // allreduced this step (the flat buckets)
  double exposed_seconds = 0;     // end of backward -> last bucket averaged (communication not hidden)
};

class DataParallel : public train::ReplicaGroup {
 public:
  DataParallel(ProcessGroup& group, DataParallelOptions options = {});
  ~DataParallel() override;
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  int rank() const override { return group_.rank(); }
  int world_size() const override { return group_.world_size(); }
  void attach(train::TrainableModel& model) override;
  void before_forward() override;
  void before_backward() override;
  void after_backward() override;
  std::vector<std::vector<double>> all_gather(const std::vector<double>& values) override;
  void sum(at::Tensor& tensor) override;

  const GradientSyncStats& last_step() const { return stats_; }
  const std::vector<int64_t>& bucket_bytes() const { return bucket_bytes_; }

 private:
  struct Slot {
    at::Tensor parameter;
    int64_t offset = 0;  // in the bucket's flat buffer
    bool arrived = false;
  };
  struct Bucket {
    at::Tensor flat;
    std::vector<Slot> slots;
    int64_t pending = 0;  // slots still waiting for their gradient this step
    bool launched = false;
    ProcessGroup::Pending work;
  };
  void build_buckets(const std::vector<at::Tensor>& parameters);
  void on_gradient(size_t bucket, size_t slot, const at::Tensor& gradient);
  void launch_ready_buckets();
  void launch(Bucket& bucket);

  ProcessGroup& group_;
  DataParallelOptions options_;
  train::TrainableModel* model_ = nullptr;
  std::vector<Bucket> buckets_;
  std::vector<int64_t> bucket_bytes_;
  size_t next_to_launch_ = 0;
  std::vector<std::pair<at::Tensor, unsigned>> hooks_;  // (parameter, hook handle) to remove on destruction
  GradientSyncStats stats_;
};

}  // namespace kennel::dist

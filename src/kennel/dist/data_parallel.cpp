#include "kennel/dist/data_parallel.h"

#include <chrono>
#include <map>

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>
#include <torch/csrc/distributed/c10d/Work.hpp>
#include <torch/nn/module.h>

#include "kennel/train/trainer.h"

namespace kennel::dist {

namespace {

// Broadcasts rank 0's values of `tensors` into them, one flat message per dtype.
void broadcast_coalesced(ProcessGroup& group, const std::vector<at::Tensor>& tensors) {
  std::map<at::ScalarType, std::vector<at::Tensor>> by_type;
  for (const auto& tensor : tensors) by_type[tensor.scalar_type()].push_back(tensor);
  for (auto& [type, group_tensors] : by_type) {
    std::vector<at::Tensor> flat_views;
    for (const auto& tensor : group_tensors) flat_views.push_back(tensor.detach().contiguous().view(-1));
    std::vector<at::Tensor> flat = {at::cat(flat_views)};
    group.broadcast(flat);
    int64_t offset = 0;
    at::NoGradGuard no_grad;
    for (auto& tensor : group_tensors) {
      const int64_t n = tensor.numel();
      tensor.detach().copy_(flat[0].narrow(0, offset, n).view(tensor.sizes()));
      offset += n;
    }
  }
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

DataParallel::DataParallel(ProcessGroup& group, DataParallelOptions options)
    : group_(group), options_(options) {}

DataParallel::~DataParallel() {
  for (auto& [parameter, handle] : hooks_) parameter.remove_hook(handle);
}

void DataParallel::attach(train::TrainableModel& model) {
  if (model_ == &model) return;  // a resumed fit() on the same model keeps its buckets
  model_ = &model;
  torch::nn::Module& module = model.module();
  std::vector<at::Tensor> state = module.parameters();
  for (const auto& buffer : module.buffers()) state.push_back(buffer);
  broadcast_coalesced(group_, state);
  build_buckets(model.trainable_parameters());
  int64_t bytes = 0;
  for (const int64_t bucket : bucket_bytes_) bytes += bucket;
  if (rank() == 0) {
    spdlog::info("data parallel: {} ranks; gradient averaging allreduces {} bytes per step in {} bucket(s){}",
                 world_size(), bytes, bucket_bytes_.size(), options_.overlap ? ", overlapping backward" : "");
  }
}

void DataParallel::build_buckets(const std::vector<at::Tensor>& parameters) {
  Bucket current;
  int64_t current_bytes = 0;
  auto close_bucket = [&] {
    if (current.slots.empty()) return;
    int64_t numel = 0;
    for (auto& slot : current.slots) {
      slot.offset = numel;
      numel += slot.parameter.numel();
    }
    current.flat = at::zeros({numel}, current.slots.front().parameter.options().requires_grad(false));
    bucket_bytes_.push_back(current_bytes);
    buckets_.push_back(std::move(current));
    current = Bucket{};
    current_bytes = 0;
  };
  // Reverse registration order approximates the order backward produces gradients in.
  for (auto it = parameters.rbegin(); it != parameters.rend(); ++it) {
    const at::Tensor& parameter = *it;
    if (!parameter.requires_grad()) continue;
    const int64_t bytes = parameter.numel() * static_cast<int64_t>(parameter.element_size());
    const int64_t cap = buckets_.empty() ? options_.first_bucket_cap_bytes : options_.bucket_cap_bytes;
    const bool other_type = !current.slots.empty() && current.slots.front().parameter.scalar_type() != parameter.scalar_type();
    if (!current.slots.empty() && (current_bytes + bytes > cap || other_type)) close_bucket();
    current.slots.push_back(Slot{parameter, 0, false});
    current_bytes += bytes;
  }
  close_bucket();
  for (size_t b = 0; b < buckets_.size(); ++b) {
    for (size_t s = 0; s < buckets_[b].slots.size(); ++s) {
      at::Tensor parameter = buckets_[b].slots[s].parameter;
      const unsigned handle = parameter.register_hook([this, b, s](const at::Tensor& gradient) {
        on_gradient(b, s, gradient);
      });
      hooks_.emplace_back(parameter, handle);
    }
  }
}

void DataParallel::before_forward() {
  // DDP's broadcast_buffers: rank 0's running statistics, while any buffer's module is training.
  std::vector<at::Tensor> buffers;
  for (const auto& child : model_->module().modules(/*include_self=*/true)) {
    if (!child->is_training()) continue;
    for (const auto& buffer : child->buffers(/*recurse=*/false)) buffers.push_back(buffer);
  }
  if (!buffers.empty()) broadcast_coalesced(group_, buffers);
}

void DataParallel::before_backward() {
  for (auto& bucket : buckets_) {
    bucket.pending = static_cast<int64_t>(bucket.slots.size());
    bucket.launched = false;
    bucket.work.reset();
    for (auto& slot : bucket.slots) slot.arrived = false;
  }
  next_to_launch_ = 0;
  stats_ = GradientSyncStats{};
}

void DataParallel::on_gradient(size_t bucket_index, size_t slot_index, const at::Tensor& gradient) {
  Bucket& bucket = buckets_[bucket_index];
  Slot& slot = bucket.slots[slot_index];
  if (slot.arrived) return;  // one gradient per parameter per step
  at::NoGradGuard no_grad;
  bucket.flat.narrow(0, slot.offset, slot.parameter.numel()).view(slot.parameter.sizes()).copy_(gradient);
  slot.arrived = true;
  if (--bucket.pending == 0 && options_.overlap) launch_ready_buckets();
}

void DataParallel::launch_ready_buckets() {
  while (next_to_launch_ < buckets_.size() && buckets_[next_to_launch_].pending == 0) {
    launch(buckets_[next_to_launch_]);
    ++next_to_launch_;
  }
}

void DataParallel::launch(Bucket& bucket) {
  bucket.work = group_.all_reduce_sum_async(bucket.flat);
  bucket.launched = true;
  ++stats_.buckets;
  stats_.bytes += bucket.flat.numel() * static_cast<int64_t>(bucket.flat.element_size());
}

void DataParallel::after_backward() {
  const auto start = std::chrono::steady_clock::now();
  // Parameters that got no gradient this step contribute zeros, on every rank alike.
  for (auto& bucket : buckets_) {
    for (auto& slot : bucket.slots) {
      if (slot.arrived) continue;
      bucket.flat.narrow(0, slot.offset, slot.parameter.numel()).zero_();
      slot.arrived = true;
      --bucket.pending;
    }
  }
  launch_ready_buckets();
  const double world = static_cast<double>(world_size());
  at::NoGradGuard no_grad;
  for (auto& bucket : buckets_) {
    group_.wait(bucket.work, "averaging gradients");
    bucket.flat.div_(world);
    for (auto& slot : bucket.slots) {
      const at::Tensor averaged = bucket.flat.narrow(0, slot.offset, slot.parameter.numel()).view(slot.parameter.sizes());
      at::Tensor& grad = slot.parameter.mutable_grad();
      if (grad.defined()) {
        grad.copy_(averaged);
      } else {
        grad = averaged.clone(slot.parameter.suggest_memory_format());
      }
    }
  }
  stats_.exposed_seconds = seconds_since(start);
}

std::vector<std::vector<double>> DataParallel::all_gather(const std::vector<double>& values) {
  const at::Tensor mine = at::tensor(values, at::kDouble);
  std::vector<std::vector<double>> out;
  for (const auto& tensor : group_.all_gather(mine)) {
    const double* data = tensor.data_ptr<double>();
    out.emplace_back(data, data + tensor.numel());
  }
  return out;
}

void DataParallel::sum(at::Tensor& tensor) {
  at::Tensor contiguous = tensor.contiguous();
  group_.all_reduce_sum(contiguous);
  if (!contiguous.is_same(tensor)) tensor.copy_(contiguous);
}

}  // namespace kennel::dist

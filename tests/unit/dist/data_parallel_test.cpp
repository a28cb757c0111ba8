// Data parallelism on real c10d/Gloo process groups: two ranks as two threads
// of this process, talking over loopback (a few hundred milliseconds a test).
#include "kennel/dist/data_parallel.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <future>
#include <thread>

#include <gtest/gtest.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/torch.h>

#include "kennel/dist/process_group.h"
#include "kennel/dist/sync_batchnorm.h"
#include "kennel/models/batch_norm.h"
#include "kennel/train/trainer.h"

namespace kennel::dist {
namespace {

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

GroupOptions options_for(int rank, int world, int port, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  GroupOptions options;
  options.rank.rank = rank;
  options.rank.world_size = world;
  options.rank.local_rank = rank;
  options.rank.local_world_size = world;
  options.rank.master_addr = "127.0.0.1";
  options.rank.master_port = port;
  options.rank.launcher = "test";
  options.timeout = timeout;
  options.interface = "lo";
  return options;
}

// Runs `body(rank, group)` on two ranks at once; returns each rank's error text ("" when it passed).
std::vector<std::string> on_two_ranks(const std::function<void(int, ProcessGroup&)>& body) {
  const int port = free_port();
  std::vector<std::future<std::string>> ranks;
  for (int rank = 0; rank < 2; ++rank) {
    ranks.push_back(std::async(std::launch::async, [&, rank]() -> std::string {
      auto group = ProcessGroup::connect(options_for(rank, 2, port));
      if (!group.ok()) return group.status().message();
      try {
        body(rank, **group);
      } catch (const std::exception& error) {
        return error.what();
      }
      return "";
    }));
  }
  std::vector<std::string> errors;
  for (auto& rank : ranks) errors.push_back(rank.get());
  return errors;
}

class MlpModel : public train::TrainableModel {
 public:
  explicit MlpModel(uint64_t seed) {
    torch::manual_seed(seed);
    net_ = torch::nn::Sequential(torch::nn::Linear(4, 8), torch::nn::ReLU(), torch::nn::Linear(8, 8),
                                 torch::nn::ReLU(), torch::nn::Linear(8, 3));
    unused_ = net_->register_parameter("unused", torch::zeros({5}));
  }
  at::Tensor forward(const at::Tensor& inputs) override { return net_->forward(inputs); }
  void set_training(bool training) override { net_->train(training); }
  std::vector<at::Tensor> trainable_parameters() override { return net_->parameters(); }
  torch::nn::Module& module() override { return *net_; }

 private:
  torch::nn::Sequential net_{nullptr};
  at::Tensor unused_;
};

at::Tensor inputs_of(int rank) {
  torch::manual_seed(100 + rank);
  return torch::randn({6, 4});
}

// The loss both ranks and the reference compute: mean over the rank's batch.
at::Tensor loss_of(train::TrainableModel& model, const at::Tensor& inputs) {
  return model.forward(inputs).pow(2).mean();
}

std::vector<at::Tensor> averaged_reference_gradients() {
  std::vector<at::Tensor> sum;
  for (int rank = 0; rank < 2; ++rank) {
    MlpModel model(/*seed=*/1);  // rank 0's initial weights
    loss_of(model, inputs_of(rank)).backward();
    const auto params = model.trainable_parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      const at::Tensor grad = params[i].grad().defined() ? params[i].grad() : torch::zeros_like(params[i]);
      if (sum.size() <= i) {
        sum.push_back(grad.clone());
      } else {
        sum[i] += grad;
      }
    }
  }
  for (auto& grad : sum) grad /= 2;
  return sum;
}

void expect_reference_gradients(bool overlap) {
  const auto reference = averaged_reference_gradients();
  std::vector<std::vector<at::Tensor>> grads(2);
  std::vector<int64_t> buckets(2);
  // Built here, not in the rank threads: the global RNG is not theirs to race on.
  std::vector<std::unique_ptr<MlpModel>> models;
  for (int rank = 0; rank < 2; ++rank) models.push_back(std::make_unique<MlpModel>(1 + rank));
  const std::vector<at::Tensor> inputs = {inputs_of(0), inputs_of(1)};
  const auto errors = on_two_ranks([&](int rank, ProcessGroup& group) {
    MlpModel& model = *models[rank];  // rank 1 starts from other weights: attach must replace them
    // Tiny caps: several buckets, launched in order whatever order gradients arrive in.
    DataParallel parallel(group, {.bucket_cap_bytes = 160, .first_bucket_cap_bytes = 40, .overlap = overlap});
    parallel.attach(model);
    for (int step = 0; step < 2; ++step) {  // hooks and buckets are reused from step to step
      for (auto& param : model.trainable_parameters()) param.mutable_grad() = at::Tensor();
      parallel.before_forward();
      const at::Tensor loss = loss_of(model, inputs[rank]);
      parallel.before_backward();
      loss.backward();
      parallel.after_backward();
    }
    for (const auto& param : model.trainable_parameters()) grads[rank].push_back(param.grad().clone());
    buckets[rank] = parallel.last_step().buckets;
  });
  ASSERT_EQ(errors, (std::vector<std::string>{"", ""}));
  EXPECT_GT(buckets[0], 2);
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_EQ(grads[rank].size(), reference.size());
    for (size_t i = 0; i < reference.size(); ++i) {
      EXPECT_TRUE(torch::allclose(grads[rank][i], reference[i], 1e-5, 1e-6)) << "rank " << rank << " param " << i;
    }
  }
}

TEST(DataParallelTest, GradientsAreTheAverageOverRanksWithBucketsOverlappingBackward) {
  expect_reference_gradients(/*overlap=*/true);
}

TEST(DataParallelTest, GradientsAreTheSameWithoutOverlap) { expect_reference_gradients(/*overlap=*/false); }

TEST(DataParallelTest, BuffersOfTrainingModulesComeFromRankZero) {
  std::vector<at::Tensor> means(2);
  const auto errors = on_two_ranks([&](int rank, ProcessGroup& group) {
    torch::nn::BatchNorm1d norm(3);
    norm->train();
    norm->running_mean.fill_(static_cast<float>(rank + 1));
    class NormModel : public train::TrainableModel {
     public:
      explicit NormModel(torch::nn::BatchNorm1d n) : n_(n) {}
      at::Tensor forward(const at::Tensor& x) override { return n_->forward(x); }
      void set_training(bool t) override { n_->train(t); }
      std::vector<at::Tensor> trainable_parameters() override { return n_->parameters(); }
      torch::nn::Module& module() override { return *n_; }
      torch::nn::BatchNorm1d n_;
    } model(norm);
    DataParallel parallel(group);
    parallel.attach(model);
    norm->running_mean.fill_(static_cast<float>(10 * (rank + 1)));  // diverged during a step
    parallel.before_forward();
    means[rank] = norm->running_mean.clone();
  });
  ASSERT_EQ(errors, (std::vector<std::string>{"", ""}));
  EXPECT_TRUE(torch::equal(means[0], torch::full({3}, 10.0f)));
  EXPECT_TRUE(torch::equal(means[1], torch::full({3}, 10.0f)));
}

// conv -> BatchNorm -> mean of squares: with SyncBatchNorm, two ranks with half the batch each
// train exactly like one process with the whole batch (outputs, averaged gradients, running stats).
class ConvNormModel : public train::TrainableModel {
 public:
  ConvNormModel() {
    torch::manual_seed(11);
    conv_ = torch::nn::Conv2d(torch::nn::Conv2dOptions(2, 3, 3).padding(1));
    norm_ = models::BatchNorm2d(3);
    net_ = torch::nn::Sequential(conv_, norm_);
  }
  at::Tensor forward(const at::Tensor& x) override { return net_->forward(x); }
  void set_training(bool t) override { net_->train(t); }
  std::vector<at::Tensor> trainable_parameters() override { return net_->parameters(); }
  torch::nn::Module& module() override { return *net_; }
  models::BatchNorm2d norm_{nullptr};

 private:
  torch::nn::Conv2d conv_{nullptr};
  torch::nn::Sequential net_{nullptr};
};

TEST(SyncBatchNormTest, TwoHalvesTrainLikeTheWholeBatch) {
  torch::manual_seed(5);
  const at::Tensor batch = torch::randn({8, 2, 5, 5}) * 2 + 1;
  const at::Tensor target = torch::randn({8, 3, 5, 5});
  ConvNormModel whole;  // the same seeded weights as the ranks' (built before any thread runs)
  whole.set_training(true);
  const at::Tensor whole_out = whole.forward(batch);
  (whole_out - target).pow(2).mean().backward();
  std::vector<at::Tensor> outs(2), running(2);
  std::vector<std::vector<at::Tensor>> grads(2);
  std::vector<std::unique_ptr<ConvNormModel>> models;
  for (int rank = 0; rank < 2; ++rank) models.push_back(std::make_unique<ConvNormModel>());
  const auto errors = on_two_ranks([&](int rank, ProcessGroup& group) {
    ConvNormModel& model = *models[rank];
    model.set_training(true);
    models::set_batchnorm_sync(model.module(), make_batchnorm_sync(group));
    DataParallel parallel(group);
    parallel.attach(model);
    const at::Tensor half = batch.narrow(0, 4 * rank, 4);
    parallel.before_forward();
    const at::Tensor out = model.forward(half);
    parallel.before_backward();
    (out - target.narrow(0, 4 * rank, 4)).pow(2).mean().backward();
    parallel.after_backward();
    outs[rank] = out.detach();
    running[rank] = model.norm_->running_var.clone();
    for (const auto& param : model.trainable_parameters()) grads[rank].push_back(param.grad().clone());
  });
  ASSERT_EQ(errors, (std::vector<std::string>{"", ""}));
  EXPECT_TRUE(torch::allclose(at::cat({outs[0], outs[1]}), whole_out.detach(), 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(running[0], whole.norm_->running_var, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(running[1], running[0]));
  const auto whole_params = whole.trainable_parameters();
  for (int rank = 0; rank < 2; ++rank) {
    for (size_t i = 0; i < whole_params.size(); ++i) {
      EXPECT_TRUE(torch::allclose(grads[rank][i], whole_params[i].grad(), 1e-4, 1e-5)) << "rank " << rank << " " << i;
    }
  }
}

TEST(ProcessGroupTest, GathersSumsAndBroadcastsBytes) {
  std::vector<std::string> bytes(2);
  std::vector<double> gathered(2), summed(2);
  const auto errors = on_two_ranks([&](int rank, ProcessGroup& group) {
    const auto all = group.all_gather(torch::full({2}, static_cast<double>(rank + 1), torch::kDouble));
    gathered[rank] = all[1][0].item<double>();
    at::Tensor value = torch::full({1}, static_cast<int64_t>(rank + 5), torch::kLong);
    group.all_reduce_sum(value);
    summed[rank] = static_cast<double>(value.item<int64_t>());
    bytes[rank] = group.broadcast_bytes(rank == 0 ? std::string("spec\0with nul", 13) : std::string());
  });
  ASSERT_EQ(errors, (std::vector<std::string>{"", ""}));
  EXPECT_EQ(gathered, (std::vector<double>{2, 2}));
  EXPECT_EQ(summed, (std::vector<double>{11, 11}));
  EXPECT_EQ(bytes[0], std::string("spec\0with nul", 13));
  EXPECT_EQ(bytes[1], bytes[0]);
}

TEST(ProcessGroupTest, APortInUseIsNamed) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_ANY);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  const int port = ntohs(address.sin_port);
  auto group = ProcessGroup::connect(options_for(0, 2, port, std::chrono::seconds(2)));
  ::close(fd);
  ASSERT_FALSE(group.ok());
  EXPECT_EQ(group.status().code(), ErrorCode::kUnavailable);
  EXPECT_NE(group.status().message().find(std::to_string(port)), std::string::npos) << group.status().message();
  EXPECT_NE(group.status().message().find("another port"), std::string::npos) << group.status().message();
}

TEST(ProcessGroupTest, AnUnreachableMasterIsNamed) {
  auto group = ProcessGroup::connect(options_for(1, 2, free_port(), std::chrono::seconds(2)));
  ASSERT_FALSE(group.ok());
  EXPECT_EQ(group.status().code(), ErrorCode::kUnavailable);
  EXPECT_NE(group.status().message().find("could not reach the master at 127.0.0.1:"), std::string::npos)
      << group.status().message();
}

TEST(ProcessGroupTest, ARankThatLeavesIsNamedByTheOthers) {
  const int port = free_port();
  std::promise<void> rank1_gone;
  std::string rank0_error;
  std::thread rank1([&] {
    auto group = ProcessGroup::connect(options_for(1, 2, port));
    if (group.ok()) (*group)->barrier();
    rank1_gone.set_value();  // its sockets close and its heartbeats stop as the group is destroyed
  });
  auto group = ProcessGroup::connect(options_for(0, 2, port));
  ASSERT_TRUE(group.ok()) << group.status().message();
  (*group)->barrier();
  rank1.join();
  rank1_gone.get_future().wait();
  try {
    at::Tensor value = torch::ones({4});
    (*group)->all_reduce_sum(value);
  } catch (const Error& error) {
    rank0_error = error.status().message();
  }
  EXPECT_NE(rank0_error.find("rank 1 was lost"), std::string::npos) << rank0_error;
}

}  // namespace
}  // namespace kennel::dist

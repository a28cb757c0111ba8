// The trainer loop, its callbacks, schedules, tensor batch sources and
// checkpoints, on a linear model over separable points (milliseconds a test).
#include <gtest/gtest.h>

#include <fstream>

#include <torch/nn/modules/linear.h>
#include <torch/optim/optimizer.h>
#include <torch/torch.h>

#include "kennel/train/batch_sources.h"
#include "kennel/train/checkpoint.h"
#include "kennel/train/schedule.h"
#include "kennel/train/trainer.h"
#include "unit/test_util.h"

namespace kennel::train {
namespace {

using kennel::testing::TempDir;

class LinearModel : public TrainableModel {
 public:
  explicit LinearModel(int64_t classes) : linear_(2, classes) {}
  at::Tensor forward(const at::Tensor& inputs) override { return linear_->forward(inputs); }
  void set_training(bool training) override { linear_->train(training); }
  std::vector<at::Tensor> trainable_parameters() override { return linear_->parameters(); }
  torch::nn::Module& module() override { return *linear_; }

 private:
  torch::nn::Linear linear_;
};

// Two Gaussian blobs, label = which one: linearly separable.
std::pair<at::Tensor, at::Tensor> blobs(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  at::Tensor labels = torch::arange(n, torch::kLong) % 2;
  at::Tensor centers = labels.to(torch::kFloat).unsqueeze(1).repeat({1, 2}) * 6 - 3;
  return {centers + torch::randn({n, 2}) * 0.5, labels};
}

struct Fixture {
  explicit Fixture(uint64_t seed = 0, int64_t epochs = 3) {
    torch::manual_seed(seed);
    model = std::make_unique<LinearModel>(2);
    auto [x, y] = blobs(40, 7);
    train = std::make_unique<TensorBatchSource>(x, y, TensorBatchOptions{.batch_size = 8, .shuffle = true, .seed = 3});
    auto [vx, vy] = blobs(10, 8);
    valid = std::make_unique<TensorBatchSource>(vx, vy, TensorBatchOptions{.batch_size = 8});
    optimizer = make_optimizer(model->trainable_parameters(), {.kind = "momentum", .lr = 0.05});
    options.epochs = epochs;
    options.num_classes = 2;
    options.schedule = {.kind = "cosine", .base_lr = 0.05, .steps_per_epoch = 5, .total_steps = 5 * epochs};
  }
  Trainer make_trainer() { return Trainer(*model, *optimizer, *train, valid.get(), options); }

  std::unique_ptr<LinearModel> model;
  std::unique_ptr<TensorBatchSource> train, valid;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  TrainerOptions options;
};

class RecordingCallback : public TrainerCallback {
 public:
  void on_train_begin(Trainer&) override { events.push_back("begin"); }
  void on_epoch_begin(Trainer&, int64_t epoch) override { events.push_back("epoch_begin " + std::to_string(epoch)); }
  void on_after_backward(Trainer& trainer, const TrainBatch&, const at::Tensor&, const at::Tensor&) override {
    // Gradients exist between backward and the optimizer step.
    grads_present &= trainer.model().trainable_parameters()[0].grad().defined();
  }
  void on_step_end(Trainer& trainer, const StepResult& step) override {
    steps.push_back(step);
    if (stop_at_step > 0 && step.step == stop_at_step) trainer.request_stop("rule fired");
  }
  void on_epoch_end(Trainer&, const EpochResult& epoch) override {
    events.push_back("epoch_end " + std::to_string(epoch.epoch));
    epochs.push_back(epoch);
  }
  void on_train_end(Trainer&, const TrainOutcome& outcome) override {
    events.push_back(outcome.completed ? "end completed" : "end stopped");
  }

  std::vector<std::string> events;
  std::vector<StepResult> steps;
  std::vector<EpochResult> epochs;
  int64_t stop_at_step = 0;
  bool grads_present = true;
};

TEST(TrainerTest, LearnsSeparableDataAndCallsCallbacksInOrder) {
  Fixture f;
  Trainer trainer = f.make_trainer();
  auto callback = std::make_shared<RecordingCallback>();
  trainer.add_callback(callback);
  const TrainOutcome outcome = trainer.fit();
  EXPECT_TRUE(outcome.completed);
  EXPECT_TRUE(outcome.stop_reason.empty());
  ASSERT_EQ(outcome.epochs.size(), 3u);
  ASSERT_TRUE(outcome.epochs.back().valid.has_value());
  EXPECT_GE(outcome.epochs.back().valid->accuracy, 0.99);
  EXPECT_LT(outcome.epochs.back().train_loss, outcome.epochs.front().train_loss);
  EXPECT_EQ(outcome.epochs.back().valid->confusion.sum().item<int64_t>(), 10);
  EXPECT_EQ(callback->events.front(), "begin");
  EXPECT_EQ(callback->events[1], "epoch_begin 0");
  EXPECT_EQ(callback->events.back(), "end completed");
  EXPECT_TRUE(callback->grads_present);
  ASSERT_EQ(callback->steps.size(), 15u);
  EXPECT_EQ(callback->steps.front().step, 1);
  EXPECT_EQ(callback->steps.back().step, 15);
  // Cosine: the rate falls from the base towards 0.
  EXPECT_DOUBLE_EQ(callback->steps.front().lr, 0.05);
  EXPECT_LT(callback->steps.back().lr, 0.005);
}

// A partner replica that mirrors this one (same numbers) and asks to stop at a chosen step.
class MirrorReplicas : public ReplicaGroup {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 2; }
  void attach(TrainableModel&) override { ++attached; }
  void before_forward() override { ++forwards; }
  void before_backward() override { ++backwards; }
  void after_backward() override { ++averaged; }
  std::vector<std::vector<double>> all_gather(const std::vector<double>& values) override {
    ++exchanges;
    std::vector<double> partner = values;
    partner[3] = exchanges == partner_stops_at ? 1.0 : 0.0;  // the stop flag
    return {values, partner};
  }
  void sum(at::Tensor& tensor) override { tensor.mul_(2); }

  int attached = 0, forwards = 0, backwards = 0, averaged = 0, exchanges = 0;
  int partner_stops_at = 0;
};

TEST(TrainerTest, WithReplicasNumbersAreSummedOverThemAndEveryStepSynchronises) {
  Fixture f;
  MirrorReplicas replicas;
  f.options.replicas = &replicas;
  Trainer trainer = f.make_trainer();
  auto callback = std::make_shared<RecordingCallback>();
  trainer.add_callback(callback);
  const TrainOutcome outcome = trainer.fit();
  EXPECT_TRUE(outcome.completed);
  EXPECT_EQ(replicas.attached, 1);
  EXPECT_EQ(replicas.forwards, 15);
  EXPECT_EQ(replicas.backwards, 15);
  EXPECT_EQ(replicas.averaged, 15);
  EXPECT_EQ(replicas.exchanges, 15);
  ASSERT_EQ(callback->steps.size(), 15u);
  EXPECT_EQ(callback->steps.front().batch_size, 16);  // 8 here + 8 on the partner
  EXPECT_EQ(callback->steps.front().replica_busy_seconds.size(), 2u);
  // The partner's samples count: 40 here, 80 in all; validation 10 here, 20 in all.
  EXPECT_EQ(outcome.state.step, 15);
  EXPECT_EQ(outcome.epochs.back().valid->samples, 20);
  EXPECT_EQ(outcome.epochs.back().valid->confusion.sum().item<int64_t>(), 20);
}

TEST(TrainerTest, WithReplicasAStopAskedForElsewhereEndsThisReplicaAtTheSameStep) {
  Fixture f;
  MirrorReplicas replicas;
  replicas.partner_stops_at = 4;
  f.options.replicas = &replicas;
  Trainer trainer = f.make_trainer();
  const TrainOutcome outcome = trainer.fit();
  EXPECT_FALSE(outcome.completed);
  EXPECT_EQ(outcome.stop_reason, "rank 1 stopped the job");
  EXPECT_EQ(outcome.state.step, 4);
}

TEST(TrainerTest, WithReplicasALocalStopWaitsForTheNextExchange) {
  Fixture f;
  MirrorReplicas replicas;
  f.options.replicas = &replicas;
  Trainer trainer = f.make_trainer();
  auto callback = std::make_shared<RecordingCallback>();
  callback->stop_at_step = 7;  // asked after step 7's exchange: every replica learns of it at step 8
  trainer.add_callback(callback);
  const TrainOutcome outcome = trainer.fit();
  EXPECT_FALSE(outcome.completed);
  EXPECT_EQ(outcome.stop_reason, "rule fired");
  EXPECT_EQ(outcome.state.step, 8);
}

TEST(TrainerTest, StopRequestEndsAtAStepBoundaryWithTheFirstReason) {
  Fixture f;
  Trainer trainer = f.make_trainer();
  auto callback = std::make_shared<RecordingCallback>();
  callback->stop_at_step = 7;
  trainer.add_callback(callback);
  trainer.request_stop("first");  // before fit: nothing runs, the first reason wins
  trainer.request_stop("second");
  TrainOutcome outcome = trainer.fit();
  EXPECT_FALSE(outcome.completed);
  EXPECT_EQ(outcome.stop_reason, "first");
  EXPECT_TRUE(callback->steps.empty());

  Fixture g;
  Trainer second = g.make_trainer();
  auto recorder = std::make_shared<RecordingCallback>();
  recorder->stop_at_step = 7;
  second.add_callback(recorder);
  outcome = second.fit();
  EXPECT_FALSE(outcome.completed);
  EXPECT_EQ(outcome.stop_reason, "rule fired");
  EXPECT_EQ(outcome.state.step, 7);
  EXPECT_EQ(outcome.state.epoch, 1);
  EXPECT_EQ(outcome.state.batch, 2);  // 5 batches an epoch: 2 done in the second
  EXPECT_EQ(recorder->epochs.size(), 1u);
}

TEST(TrainerTest, MaxStepsCompletesAfterValidatingThePartialEpoch) {
  Fixture f;
  f.options.max_steps = 7;
  Trainer trainer = f.make_trainer();
  const TrainOutcome outcome = trainer.fit();
  EXPECT_TRUE(outcome.completed);
  EXPECT_EQ(outcome.state.step, 7);
  ASSERT_EQ(outcome.epochs.size(), 2u);
  EXPECT_TRUE(outcome.epochs.back().valid.has_value());
}

TEST(TrainerTest, NonFiniteLossIsAnErrorThatNamesTheLearningRate) {
  Fixture f;
  f.options.schedule.base_lr = std::numeric_limits<double>::infinity();
  f.options.schedule.kind = "constant";
  Trainer trainer = f.make_trainer();
  try {
    trainer.fit();
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_EQ(error.status().code(), ErrorCode::kFailedPrecondition);
    EXPECT_NE(error.status().message().find("learning rate"), std::string::npos) << error.what();
  }
}

TEST(TrainerTest, StepPhasesAccountForTheStep) {
  Fixture f;
  Trainer trainer = f.make_trainer();
  auto callback = std::make_shared<RecordingCallback>();
  trainer.add_callback(callback);
  trainer.fit();
  ASSERT_FALSE(callback->steps.empty());
  double previous_start = 0;
  for (const StepResult& step : callback->steps) {
    const StepPhases& p = step.phases;
    for (double phase : {p.data, p.copy, p.forward, p.backward, p.optimizer, p.callbacks}) EXPECT_GE(phase, 0);
    EXPECT_GT(p.forward + p.backward, 0);
    // Everything but the previous step's on_step_end callbacks happened inside this step.
    EXPECT_LE(p.data + p.copy + p.forward + p.backward + p.optimizer, step.seconds + 1e-9);
    EXPECT_GT(p.start, previous_start);
    previous_start = p.start;
  }
}

// A NaN loss reaches on_after_backward before the step fails, so observers (the debugger) can record it.
TEST(TrainerTest, ObserversSeeTheNonFiniteLossBeforeTheStepFails) {
  Fixture f;
  f.options.schedule.base_lr = std::numeric_limits<double>::infinity();
  f.options.schedule.kind = "constant";
  Trainer trainer = f.make_trainer();
  struct LossWatcher : TrainerCallback {
    void on_after_backward(Trainer&, const TrainBatch&, const at::Tensor&, const at::Tensor& loss) override {
      losses.push_back(loss.item<double>());
    }
    std::vector<double> losses;
  };
  auto watcher = std::make_shared<LossWatcher>();
  trainer.add_callback(watcher);
  EXPECT_THROW(trainer.fit(), Error);
  ASSERT_FALSE(watcher->losses.empty());
  EXPECT_FALSE(std::isfinite(watcher->losses.back()));
}

TEST(TrainerTest, ResumingFromACheckpointGivesTheUninterruptedResult) {
  Fixture reference_fixture;
  Trainer reference = reference_fixture.make_trainer();
  const TrainOutcome expected = reference.fit();

  TempDir dir;
  {
    Fixture f;
    Trainer trainer = f.make_trainer();
    auto stopper = std::make_shared<RecordingCallback>();
    stopper->stop_at_step = 8;
    trainer.add_callback(stopper);
    trainer.add_callback(std::make_shared<Checkpointer>(dir.path()));
    EXPECT_FALSE(trainer.fit().completed);
  }
  // A fresh process: another initialisation, restored from the checkpoint.
  Fixture f(/*seed=*/99);
  auto state = load_latest_checkpoint(dir.path(), f.model->module(), *f.optimizer);
  ASSERT_TRUE(state.ok()) << state.status().to_string();
  EXPECT_EQ(state->step, 8);
  Trainer trainer = f.make_trainer();
  trainer.state() = *state;
  const TrainOutcome resumed = trainer.fit();
  ASSERT_TRUE(resumed.completed);
  EXPECT_EQ(resumed.state.step, expected.state.step);
  EXPECT_NEAR(resumed.epochs.back().train_loss, expected.epochs.back().train_loss, 1e-6);
  EXPECT_NEAR(resumed.epochs.back().valid->loss, expected.epochs.back().valid->loss, 1e-6);
  EXPECT_TRUE(torch::allclose(f.model->trainable_parameters()[0],
                              reference_fixture.model->trainable_parameters()[0], 1e-6, 1e-7));
}

TEST(CheckpointTest, MissingIsNotFoundAndCorruptIsDataLossNamingTheFile) {
  TempDir dir;
  Fixture f;
  auto missing = load_latest_checkpoint(dir.path(), f.model->module(), *f.optimizer);
  EXPECT_EQ(missing.status().code(), ErrorCode::kNotFound);

  TrainerState state;
  state.step = 3;
  ASSERT_TRUE(save_checkpoint(dir.path(), f.model->module(), *f.optimizer, state, "test").ok());
  auto loaded = load_latest_checkpoint(dir.path(), f.model->module(), *f.optimizer);
  ASSERT_TRUE(loaded.ok()) << loaded.status().to_string();
  EXPECT_EQ(loaded->step, 3);

  // Damage the checkpoint the pointer names.
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    if (entry.path().extension() == ".pt") {
      std::ofstream(entry.path(), std::ios::binary | std::ios::trunc) << "garbage";
    }
  }
  auto corrupt = load_latest_checkpoint(dir.path(), f.model->module(), *f.optimizer);
  EXPECT_EQ(corrupt.status().code(), ErrorCode::kDataLoss);
  EXPECT_NE(corrupt.status().message().find(dir.path().string()), std::string::npos);

  std::ofstream(dir / "latest.json", std::ios::trunc) << "{not json";
  EXPECT_EQ(load_latest_checkpoint(dir.path(), f.model->module(), *f.optimizer).status().code(),
            ErrorCode::kDataLoss);
}

TEST(CheckpointTest, KeepsOnlyTheTwoNewest) {
  TempDir dir;
  Fixture f;
  TrainerState state;
  for (int64_t step = 1; step <= 4; ++step) {
    state.step = step;
    ASSERT_TRUE(save_checkpoint(dir.path(), f.model->module(), *f.optimizer, state, "test").ok());
  }
  int checkpoints = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    checkpoints += entry.path().extension() == ".pt";
  }
  EXPECT_EQ(checkpoints, 2);
  EXPECT_EQ(load_latest_checkpoint(dir.path(), f.model->module(), *f.optimizer)->step, 4);
}

TEST(TensorBatchSourceTest, OrderIsAFunctionOfSeedAndEpochAndCanStartMidEpoch) {
  const at::Tensor inputs = torch::arange(10, torch::kFloat).unsqueeze(1);
  const at::Tensor labels = torch::arange(10, torch::kLong);
  auto order = [&](uint64_t seed, int64_t epoch, int64_t first_batch) {
    TensorBatchSource source(inputs, labels, {.batch_size = 3, .shuffle = true, .seed = seed});
    source.start_epoch(epoch, first_batch);
    std::vector<int64_t> seen;
    while (auto batch = source.next()) {
      for (int64_t i = 0; i < batch->labels.size(0); ++i) seen.push_back(batch->labels[i].item<int64_t>());
    }
    return seen;
  };
  const auto full = order(1, 0, 0);
  ASSERT_EQ(full.size(), 10u);
  EXPECT_EQ(std::set<int64_t>(full.begin(), full.end()).size(), 10u);
  EXPECT_EQ(order(1, 0, 0), full);
  EXPECT_NE(order(1, 1, 0), full);
  EXPECT_NE(order(2, 0, 0), full);
  const auto tail = order(1, 0, 2);
  EXPECT_EQ(tail, std::vector<int64_t>(full.begin() + 6, full.end()));
  TensorBatchSource source(inputs, labels, {.batch_size = 3});
  EXPECT_EQ(source.batches_per_epoch(), 4);
}

TEST(ScheduleTest, WarmupStepAndCosine) {
  LrSchedule constant{.kind = "constant", .base_lr = 0.1, .steps_per_epoch = 10, .total_steps = 100,
                      .warmup_steps = 4};
  EXPECT_DOUBLE_EQ(constant.lr_at(0), 0.025);
  EXPECT_DOUBLE_EQ(constant.lr_at(3), 0.1);
  EXPECT_DOUBLE_EQ(constant.lr_at(50), 0.1);

  LrSchedule step{.kind = "step", .base_lr = 1.0, .steps_per_epoch = 10, .total_steps = 100, .step_epochs = 2,
                  .gamma = 0.5};
  EXPECT_DOUBLE_EQ(step.lr_at(19), 1.0);
  EXPECT_DOUBLE_EQ(step.lr_at(20), 0.5);
  EXPECT_DOUBLE_EQ(step.lr_at(45), 0.25);

  LrSchedule cosine{.kind = "cosine", .base_lr = 1.0, .steps_per_epoch = 10, .total_steps = 100};
  EXPECT_DOUBLE_EQ(cosine.lr_at(0), 1.0);
  EXPECT_NEAR(cosine.lr_at(50), 0.5, 1e-12);
  EXPECT_NEAR(cosine.lr_at(100), 0.0, 1e-12);

  // With a floor the curve ends at min_lr (the last steps still move the weights) and halves the way there.
  LrSchedule floored{.kind = "cosine", .base_lr = 1.0, .steps_per_epoch = 10, .total_steps = 100, .min_lr = 0.01};
  EXPECT_DOUBLE_EQ(floored.lr_at(0), 1.0);
  EXPECT_NEAR(floored.lr_at(50), 0.505, 1e-12);
  EXPECT_NEAR(floored.lr_at(99), 0.01, 1e-3);
  EXPECT_NEAR(floored.lr_at(100), 0.01, 1e-12);
}

}  // namespace
}  // namespace kennel::train

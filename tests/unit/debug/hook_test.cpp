// The debugger hook on a real Trainer: which steps and tensors it records,
// that frozen parameters are left out, and that its records drive the rules.
#include "kennel/debug/hook.h"

#include <cmath>
#include <limits>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "kennel/debug/rules.h"
#include "kennel/debug/summarize.h"
#include "kennel/train/batch_sources.h"
#include "kennel/train/schedule.h"

namespace kennel::debug {
namespace {

using train::TrainableModel;

class TinyLinear : public TrainableModel {
 public:
  explicit TinyLinear(int64_t classes) : linear_(2, classes) {}
  at::Tensor forward(const at::Tensor& inputs) override { return linear_->forward(inputs); }
  void set_training(bool training) override { linear_->train(training); }
  std::vector<at::Tensor> trainable_parameters() override {
    std::vector<at::Tensor> out;
    for (const auto& p : linear_->parameters()) {
      if (p.requires_grad()) out.push_back(p);
    }
    return out;
  }
  torch::nn::Module& module() override { return *linear_; }
  torch::nn::Linear& linear() { return linear_; }

 private:
  torch::nn::Linear linear_;
};

struct HookRun {
  std::vector<StepRecord> records;
  int64_t steps = 0;
};

// 40 samples of two blobs, batch 8: 5 steps per epoch.
HookRun train_with_hook(DebugHookConfig config, int64_t epochs, const std::function<void(TinyLinear&)>& prepare = {},
                    std::shared_ptr<RuleRunner> runner = nullptr) {
  torch::manual_seed(0);
  TinyLinear model(2);
  if (prepare) prepare(model);
  const at::Tensor labels = torch::arange(40, torch::kLong) % 2;
  const at::Tensor x = labels.to(torch::kFloat).unsqueeze(1).repeat({1, 2}) * 6 - 3 + torch::randn({40, 2}) * 0.5;
  train::TensorBatchSource source(x, labels, {.batch_size = 8, .shuffle = true, .seed = 1});
  train::TensorBatchSource valid(x.slice(0, 0, 16), labels.slice(0, 0, 16), {.batch_size = 8});
  auto optimizer = train::make_optimizer(model.trainable_parameters(), {.kind = "sgd", .lr = 0.1});
  train::TrainerOptions options;
  options.epochs = epochs;
  options.num_classes = 2;
  options.schedule = {.kind = "constant", .base_lr = 0.1, .steps_per_epoch = 5, .total_steps = 5 * epochs};
  train::Trainer trainer(model, *optimizer, source, &valid, options);
  HookRun run;
  trainer.add_callback(std::make_shared<DebugHook>(std::move(config), [&](StepRecord record) {
    if (runner) runner->push(record);
    run.records.push_back(std::move(record));
  }));
  const auto outcome = trainer.fit();
  run.steps = outcome.state.step;
  return run;
}

const TensorSummary* find(const StepRecord& record, const std::string& name) {
  for (const auto& tensor : record.tensors) {
    if (tensor.name == name) return &tensor;
  }
  return nullptr;
}

TEST(SummarizeTest, ReductionsCountNonFiniteValuesAndHistogramTheRest) {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  const at::Tensor tensor = torch::tensor({-2.0, 0.0, 0.0, 4.0, nan, inf}, torch::kDouble);
  const TensorSummary s = summarize(tensor, "weights", "w", 3, Mode::kTrain, {.histogram_bins = 3, .keep_values = 10});
  EXPECT_EQ(s.name, "weights/w");
  EXPECT_EQ(s.count, 6);
  EXPECT_DOUBLE_EQ(s.fraction_nan, 1.0 / 6);
  EXPECT_DOUBLE_EQ(s.fraction_inf, 1.0 / 6);
  EXPECT_DOUBLE_EQ(s.fraction_zero, 2.0 / 6);
  EXPECT_DOUBLE_EQ(s.fraction_positive, 2.0 / 6);  // 4 and +inf
  EXPECT_DOUBLE_EQ(s.min, -2);
  EXPECT_DOUBLE_EQ(s.max, 4);
  EXPECT_TRUE(std::isnan(s.mean));  // a NaN must not hide in the mean of the finite values
  EXPECT_DOUBLE_EQ(s.l1, 6);
  EXPECT_DOUBLE_EQ(s.l2, std::sqrt(20.0));
  ASSERT_TRUE(s.histogram);
  int64_t total = 0;
  for (auto c : s.histogram->counts) total += c;
  EXPECT_EQ(total, 4);
  EXPECT_EQ(s.histogram->edges.size(), 4u);
  EXPECT_EQ(s.values.size(), 6u);

  const TensorSummary finite = summarize(torch::tensor({1.0, 3.0}), "weights", "v", 0, Mode::kTrain);
  EXPECT_DOUBLE_EQ(finite.mean, 2);
  EXPECT_DOUBLE_EQ(finite.variance, 1);
  EXPECT_FALSE(finite.histogram);
  EXPECT_TRUE(finite.values.empty());
}

TEST(DebugHookTest, DefaultsRecordLossesEveryStepAndTensorsEveryTenSteps) {
  const HookRun run = train_with_hook(DebugHookConfig::defaults(), 3);
  ASSERT_EQ(run.steps, 15);
  std::vector<int64_t> train_steps, tensor_steps, eval_steps;
  for (const auto& record : run.records) {
    if (record.mode == Mode::kEval) {
      eval_steps.push_back(record.step);
      EXPECT_TRUE(find(record, "losses/valid_loss"));
      EXPECT_TRUE(find(record, "metrics/valid_accuracy"));
      const auto* confusion = find(record, "predictions/confusion");
      ASSERT_TRUE(confusion);
      EXPECT_EQ(confusion->values.size(), 4u);
      continue;
    }
    train_steps.push_back(record.step);
    EXPECT_TRUE(find(record, "losses/train_loss"));
    if (find(record, "gradients/weight")) tensor_steps.push_back(record.step);
  }
  EXPECT_EQ(train_steps.size(), 15u);
  EXPECT_EQ(train_steps.front(), 0);
  EXPECT_EQ(tensor_steps, (std::vector<int64_t>{0, 10}));
  EXPECT_EQ(eval_steps, (std::vector<int64_t>{4, 9, 14}));
  const StepRecord& first = run.records.front();
  for (const char* name : {"weights/weight", "biases/bias", "gradients/bias", "optimizer/update_ratio/weight",
                           "labels/counts", "predictions/confusion", "inputs/features"}) {
    EXPECT_TRUE(find(first, name)) << name;
  }
  // Labels and predictions are recorded every step (ClassImbalance counts every sample).
  for (const auto& record : run.records) {
    if (record.mode == Mode::kTrain) {
      EXPECT_TRUE(find(record, "labels/counts")) << record.step;
    }
  }
  const auto* weights = find(first, "weights/weight");
  ASSERT_TRUE(weights && weights->histogram);
  EXPECT_EQ(weights->histogram->counts.size(), 30u);
  const auto* ratio = find(first, "optimizer/update_ratio/weight");
  EXPECT_GT(ratio->values[0], 0);
  EXPECT_EQ(ratio->values.size(), 2u);
  const auto* labels = find(first, "labels/counts");
  EXPECT_DOUBLE_EQ(labels->values[0] + labels->values[1], 8);
}

TEST(DebugHookTest, SaveConfigSelectsStepsAndModes) {
  SaveConfig save;
  save.save_interval = 4;
  save.start_step = 2;
  save.end_step = 11;
  save.save_steps = {3};
  std::vector<int64_t> saved;
  for (int64_t step = 0; step < 15; ++step) {
    if (save.saves(step)) saved.push_back(step);
  }
  EXPECT_EQ(saved, (std::vector<int64_t>{2, 3, 6, 10}));

  DebugHookConfig config;
  CollectionConfig losses;
  losses.save.save_interval = 1;
  losses.save.eval = false;
  config.collections["losses"] = losses;
  const HookRun run = train_with_hook(config, 1);
  for (const auto& record : run.records) {
    EXPECT_EQ(record.mode, Mode::kTrain);
    EXPECT_EQ(record.tensors.size(), 1u);
  }
}

TEST(DebugHookTest, FrozenParametersAreLeftOut) {
  const HookRun run = train_with_hook(DebugHookConfig::defaults(), 1,
                                  [](TinyLinear& model) { model.linear()->weight.set_requires_grad(false); });
  const StepRecord& first = run.records.front();
  EXPECT_FALSE(find(first, "gradients/weight"));
  EXPECT_FALSE(find(first, "weights/weight"));
  EXPECT_TRUE(find(first, "gradients/bias"));
}

TEST(DebugHookTest, RecordsDriveTheRules) {
  auto make = [](const std::string& name) { return make_rule(name, nlohmann::json::object()).value(); };
  std::vector<std::unique_ptr<Rule>> rules;
  rules.push_back(make("AllZero"));
  rules.push_back(make("ExplodingTensor"));
  auto runner = std::make_shared<RuleRunner>(std::move(rules), nullptr);
  DebugHookConfig config = DebugHookConfig::defaults();
  config.collections["weights"].save.save_interval = 1;
  // Zero weights and no learning rate: the weights stay all zero.
  train_with_hook(config, 1, [](TinyLinear& model) {
    torch::NoGradGuard no_grad;
    model.linear()->weight.zero_();
    model.linear()->bias.zero_();
  }, runner);
  runner->finish();
  const auto results = runner->results();
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[1].status, RuleStatus::kNoIssuesFound) << results[1].message;
  // SGD moves zero weights after the first step, but step 0 saw them all zero.
  EXPECT_EQ(results[0].status, RuleStatus::kIssuesFound) << results[0].message;
  EXPECT_EQ(results[0].step, 0);
}

}  // namespace
}  // namespace kennel::debug

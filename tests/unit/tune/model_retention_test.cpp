// save_models: which finished trials of this host keep model/ and checkpoints/.
#include "kennel/tune/model_retention.h"

#include <fstream>

#include <gtest/gtest.h>

#include "unit/test_util.h"

namespace kennel::tune {
namespace {

namespace fs = std::filesystem;

class ModelRetentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 4; ++i) {
      Trial trial;
      trial.index = i;
      trial.name = "s-00" + std::to_string(i + 1);
      trial.state = i == 3 ? store::kTrialRunning : store::kTrialCompleted;
      trial.objective = 0.1 * (i + 1);  // trial 2 is the best finished one (maximised)
      trial.host = i == 1 ? "elsewhere" : "here";
      trials_.push_back(trial);
      const auto job = home_.job(trial.name);
      fs::create_directories(job.model());
      fs::create_directories(job.checkpoints());
      std::ofstream(job.model() / "model.safetensors") << "weights";
    }
    objective_.goal = "maximize";
  }
  bool has_model(int i) const { return fs::exists(home_.job(trials_[i].name).model()); }
  bool has_checkpoints(int i) const { return fs::exists(home_.job(trials_[i].name).checkpoints()); }

  testing::TempDir dir_;
  store::HomeLayout home_{dir_.path()};
  std::vector<Trial> trials_;
  ObjectiveSpec objective_;
};

TEST_F(ModelRetentionTest, BestKeepsOnlyTheBestModelOfThisHost) {
  EXPECT_EQ(best_trial_index(trials_, objective_), 2u);
  const auto removed = prune_trial_files("best", trials_, objective_, "here", home_);
  EXPECT_FALSE(has_model(0));
  EXPECT_TRUE(has_model(1)) << "another host's trial: not ours to remove";
  EXPECT_TRUE(has_model(2)) << "the best";
  EXPECT_TRUE(has_model(3)) << "still running";
  EXPECT_FALSE(has_checkpoints(0));
  EXPECT_FALSE(has_checkpoints(2));
  EXPECT_TRUE(has_checkpoints(3));
  EXPECT_EQ(removed.size(), 3u);
  // A new best: the old one loses its model on the next pass.
  trials_[3].state = store::kTrialCompleted;
  prune_trial_files("best", trials_, objective_, "here", home_);
  EXPECT_FALSE(has_model(2));
  EXPECT_TRUE(has_model(3));
}

TEST_F(ModelRetentionTest, NoneAndAll) {
  prune_trial_files("all", trials_, objective_, "here", home_);
  EXPECT_TRUE(has_model(0) && has_model(2) && has_checkpoints(0));
  prune_trial_files("none", trials_, objective_, "here", home_);
  EXPECT_FALSE(has_model(0) || has_model(2));
  EXPECT_TRUE(has_model(3));
}

}  // namespace
}  // namespace kennel::tune

// The profiler's training hook: a Trainer callback that turns every step's
// StepPhases into a StepTiming, samples the data loader (queue depth, decode
// time) as the trainer asks for the next batch, and, for a window of steps,
// records LibTorch's operator-level events (its Kineto profiler: prepare /
// enable / disable) and reduces them to operator spans and a top-operators
// table. The trainer never knows it is there.
// Thread-safety: the callbacks run on the training thread; results are read
// after training ended (steps(), operators()).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kennel/profile/profile_record.h"
#include "kennel/train/trainer.h"

namespace kennel::profile {

// One operator call LibTorch recorded, on the clock of StepTiming (Unix seconds).
struct OperatorEvent {
  std::string name;
  uint64_t thread = 0;  // system thread id
  double start = 0, duration = 0;
};

// Calls, self and total time per operator name, most self time first.
struct OperatorStat {
  std::string name;
  int64_t calls = 0;
  double self_ms = 0, total_ms = 0;
};
nlohmann::json to_json(const std::vector<OperatorStat>& stats);
// Self time = own duration minus direct children's, per thread (events nest per thread).
std::vector<OperatorStat> operator_stats(const std::vector<OperatorEvent>& events, size_t top = 30);

struct ProfilerHookConfig {
  bool framework = true;           // step phases and loader samples
  int64_t operators_start_step = 5;  // first step of the operator window (after warm-up)
  int64_t operators_num_steps = 3;   // 0: no operator trace
};

class ProfilerHook : public train::TrainerCallback {
 public:
  using LoaderProbe = std::function<LoaderSample()>;  // time and decode_seconds since the start
  ProfilerHook(ProfilerHookConfig config, LoaderProbe loader_probe);
  ~ProfilerHook() override;

  void on_before_forward(train::Trainer& trainer, const train::TrainBatch& batch) override;
  void on_step_end(train::Trainer& trainer, const train::StepResult& step) override;
  void on_train_end(train::Trainer& trainer, const train::TrainOutcome& outcome) override;

  const std::vector<StepTiming>& steps() const { return steps_; }
  const std::vector<LoaderSample>& loader() const { return loader_; }
  const std::vector<OperatorEvent>& operator_events() const { return operator_events_; }
  // Why the operator window recorded nothing ("" when it did, or was not asked for).
  const std::string& operator_note() const { return operator_note_; }

 private:
  void start_operators(int64_t step);
  void stop_operators();

  ProfilerHookConfig config_;
  LoaderProbe loader_probe_;
  double unix_minus_steady_ = 0;  // StepPhases::start is steady-clock time
  double last_decode_seconds_ = 0;
  bool recording_operators_ = false;
  std::vector<StepTiming> steps_;
  std::vector<LoaderSample> loader_;
  std::vector<OperatorEvent> operator_events_;
  std::string operator_note_;
};

}  // namespace kennel::profile

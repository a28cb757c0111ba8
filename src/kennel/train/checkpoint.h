// Checkpoints: the trainable module, the optimizer's state, the trainer's
// position (epoch, batch, step, running sums) and the CPU RNG state, in one
// file written atomically (temp + fsync + rename), then named by
// `latest.json` (also atomic). A process killed at any moment — SIGKILL
// included — leaves the previous checkpoint readable. The two newest
// checkpoints are kept. Thread-safety: call from the training thread.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "kennel/train/trainer.h"
#include "kennel/util/status.h"

namespace kennel::train {

inline constexpr int kCheckpointFormatVersion = 1;

// Writes `<dir>/checkpoint-<step>.pt` and points `<dir>/latest.json` at it.
Status save_checkpoint(const std::filesystem::path& dir, torch::nn::Module& module,
                       torch::optim::Optimizer& optimizer, const TrainerState& state,
                       const std::string& reason);

// Restores the newest checkpoint into `module` and `optimizer` (built the same
// way as when it was saved) and returns the trainer position. kNotFound when
// there is none; kDataLoss naming the file when it cannot be read.
Result<TrainerState> load_latest_checkpoint(const std::filesystem::path& dir, torch::nn::Module& module,
                                            torch::optim::Optimizer& optimizer);

// The two halves of load_latest_checkpoint, for a data-parallel job whose
// rank 0 reads the file and sends its bytes to ranks without the directory.
struct CheckpointBytes {
  std::string name;   // the file's path, for messages
  std::string bytes;
};
Result<CheckpointBytes> read_latest_checkpoint(const std::filesystem::path& dir);
Result<TrainerState> restore_checkpoint(const CheckpointBytes& checkpoint, torch::nn::Module& module,
                                        torch::optim::Optimizer& optimizer);

// The trainer callback: a checkpoint after every epoch, and one when training
// stops early (signal, rule) so it can resume mid-epoch.
class Checkpointer : public TrainerCallback {
 public:
  explicit Checkpointer(std::filesystem::path dir) : dir_(std::move(dir)) {}
  void on_epoch_end(Trainer& trainer, const EpochResult& epoch) override;
  void on_train_end(Trainer& trainer, const TrainOutcome& outcome) override;

 private:
  std::filesystem::path dir_;
};

}  // namespace kennel::train

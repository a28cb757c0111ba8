#include "kennel/train/checkpoint.h"

#include <algorithm>
#include <sstream>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize.h>

#include "kennel/util/fs.h"

namespace kennel::train {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {
json state_to_json(const TrainerState& state) {
  return {{"epoch", state.epoch},       {"batch", state.batch}, {"step", state.step},
          {"loss_sum", state.loss_sum}, {"correct", state.correct},
          {"seen", state.seen},         {"epoch_seconds", state.epoch_seconds}};
}

TrainerState state_from_json(const json& j) {
  TrainerState state;
  state.epoch = j.at("epoch");
  state.batch = j.at("batch");
  state.step = j.at("step");
  state.loss_sum = j.at("loss_sum");
  state.correct = j.at("correct");
  state.seen = j.at("seen");
  state.epoch_seconds = j.at("epoch_seconds");
  return state;
}

void prune_old_checkpoints(const fs::path& dir, const std::string& keep_a, const std::string& keep_b) {
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("checkpoint-", 0) == 0 && name != keep_a && name != keep_b) {
      fs::remove(entry.path(), error);
    }
  }
}
}  // namespace

Status save_checkpoint(const fs::path& dir, torch::nn::Module& module, torch::optim::Optimizer& optimizer,
                       const TrainerState& state, const std::string& reason) {
  KENNEL_RETURN_IF_ERROR(kennel::create_directories(dir));
  std::ostringstream bytes;
  try {
    torch::serialize::OutputArchive archive;
    torch::serialize::OutputArchive model_archive;
    module.save(model_archive);
    archive.write("model", model_archive);
    torch::serialize::OutputArchive optimizer_archive;
    optimizer.save(optimizer_archive);
    archive.write("optimizer", optimizer_archive);
    auto generator = at::detail::getDefaultCPUGenerator();
    {
      std::lock_guard<std::mutex> lock(generator.mutex());
      archive.write("cpu_rng_state", generator.get_state());
    }
    json meta = {{"format_version", kCheckpointFormatVersion}, {"reason", reason}, {"state", state_to_json(state)}};
    archive.write("meta", c10::IValue(meta.dump()));
    archive.save_to(bytes);
  } catch (const c10::Error& error) {
    return internal_error("writing a checkpoint in '{}': {}", dir.string(), error.what_without_backtrace());
  }
  const std::string name = fmt::format("checkpoint-{:08}.pt", state.step);
  KENNEL_RETURN_IF_ERROR(write_file_atomic(dir / name, bytes.str()));
  std::string previous;
  if (auto latest = read_file_text(dir / "latest.json"); latest.ok()) {
    try {
      previous = json::parse(*latest).value("file", "");
    } catch (const std::exception&) {
    }
  }
  json latest = {{"file", name}, {"reason", reason}, {"state", state_to_json(state)}};
  KENNEL_RETURN_IF_ERROR(write_file_atomic(dir / "latest.json", latest.dump(2) + "\n"));
  prune_old_checkpoints(dir, name, previous);
  return {};
}

Result<CheckpointBytes> read_latest_checkpoint(const fs::path& dir) {
  auto latest_text = read_file_text(dir / "latest.json");
  if (!latest_text.ok()) {
    return not_found("no checkpoint in '{}' (the job stopped before its first checkpoint)", dir.string());
  }
  std::string file;
  try {
    file = json::parse(*latest_text).at("file").get<std::string>();
  } catch (const std::exception& error) {
    return Status(ErrorCode::kDataLoss, fmt::format("'{}' is not readable: {}", (dir / "latest.json").string(), error.what()));
  }
  const fs::path path = dir / file;
  auto bytes = read_file_text(path);
  if (!bytes.ok()) {
    return Status(ErrorCode::kDataLoss, fmt::format("checkpoint '{}' cannot be read: {}", path.string(),
                                                    bytes.status().message()));
  }
  return CheckpointBytes{path.string(), std::move(*bytes)};
}

Result<TrainerState> restore_checkpoint(const CheckpointBytes& checkpoint, torch::nn::Module& module,
                                        torch::optim::Optimizer& optimizer) {
  const std::string& path = checkpoint.name;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(checkpoint.bytes.data(), checkpoint.bytes.size());
    torch::serialize::InputArchive model_archive;
    archive.read("model", model_archive);
    module.load(model_archive);
    torch::serialize::InputArchive optimizer_archive;
    archive.read("optimizer", optimizer_archive);
    optimizer.load(optimizer_archive);
    at::Tensor rng_state;
    archive.read("cpu_rng_state", rng_state);
    auto generator = at::detail::getDefaultCPUGenerator();
    {
      std::lock_guard<std::mutex> lock(generator.mutex());
      generator.set_state(rng_state);
    }
    c10::IValue meta;
    archive.read("meta", meta);
    const json parsed = json::parse(meta.toStringRef());
    if (parsed.value("format_version", 0) > kCheckpointFormatVersion) {
      return failed_precondition("checkpoint '{}' has format version {}, newer than this kennel reads", path,
                                 parsed.value("format_version", 0));
    }
    return state_from_json(parsed.at("state"));
  } catch (const c10::Error& error) {
    return Status(ErrorCode::kDataLoss,
                  fmt::format("checkpoint '{}' cannot be read: {}", path, error.what_without_backtrace()));
  } catch (const std::exception& error) {
    return Status(ErrorCode::kDataLoss, fmt::format("checkpoint '{}' cannot be read: {}", path, error.what()));
  }
}

Result<TrainerState> load_latest_checkpoint(const fs::path& dir, torch::nn::Module& module,
                                            torch::optim::Optimizer& optimizer) {
  auto checkpoint = read_latest_checkpoint(dir);
  if (!checkpoint.ok()) return checkpoint.status();
  return restore_checkpoint(*checkpoint, module, optimizer);
}

void Checkpointer::on_epoch_end(Trainer& trainer, const EpochResult&) {
  Status status = save_checkpoint(dir_, trainer.model().module(), trainer.optimizer(), trainer.state(), "epoch_end");
  if (!status.ok()) throw Error(status);
}

void Checkpointer::on_train_end(Trainer& trainer, const TrainOutcome& outcome) {
  if (outcome.completed) return;
  Status status = save_checkpoint(dir_, trainer.model().module(), trainer.optimizer(), trainer.state(), "stopped");
  if (!status.ok()) throw Error(status);
}

}  // namespace kennel::train

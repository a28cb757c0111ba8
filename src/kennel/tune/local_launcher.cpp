// The local launcher: each trial a child process of the worker (trial_process.h).
#include <fmt/format.h>

#include "kennel/tune/slurm_launcher.h"
#include "kennel/tune/trial_launcher.h"

namespace kennel::tune {

namespace {

class LocalTrial final : public LaunchedTrial {
 public:
  explicit LocalTrial(TrialProcess process) : process_(std::move(process)) {}
  std::string id() const override { return fmt::format("pid {}", process_.pid()); }
  std::optional<TrialEnd> poll() override {
    auto exit = process_.poll();
    if (!exit) return std::nullopt;
    TrialEnd end;
    end.exit = *exit;
    return end;
  }
  void terminate() override { process_.terminate(); }
  void kill() override { process_.kill(); }
  bool terminated_by_us() const override { return process_.terminated_by_us(); }

 private:
  TrialProcess process_;
};

class LocalLauncher final : public TrialLauncher {
 public:
  Result<std::unique_ptr<LaunchedTrial>> start(const TrialLaunch& launch) override {
    auto process = TrialProcess::start(launch.argv, launch.env, launch.log);
    if (!process.ok()) return process.status();
    return std::unique_ptr<LaunchedTrial>(new LocalTrial(std::move(*process)));
  }
  bool detached() const override { return false; }
};

}  // namespace

Result<std::unique_ptr<TrialLauncher>> make_launcher(const LauncherOptions& options) {
  if (options.kind == "local" || options.kind.empty()) return std::unique_ptr<TrialLauncher>(new LocalLauncher());
  if (options.kind == "slurm") return make_slurm_launcher(options);
  return invalid_argument("--launcher '{}' is not one of local, slurm", options.kind);
}

}  // namespace kennel::tune

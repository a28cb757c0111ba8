#include "kennel/job/hooks.h"

#include <thread>

#include <spdlog/spdlog.h>

namespace kennel::job {

using nlohmann::json;

JobHooks::JobHooks(const PreparedJob& prepared, const store::JobPaths& paths, int threads,
                   profile::ProfilerHook::LoaderProbe loader_probe)
    : prepared_(prepared), paths_(paths), artifacts_(json::object()) {
  if (!prepared.profiler) return;
  const auto cores = static_cast<int64_t>(std::max(1u, std::thread::hardware_concurrency()));
  profile::ProfiledJob job{prepared.spec.name, prepared.device.str(), cores, threads, threads, prepared.started_at};
  auto session = profile::ProfilerSession::start(*prepared.profiler, paths_.profile(), job, std::move(loader_probe));
  if (!session.ok()) throw Error(session.status());
  profiler_ = std::move(*session);
}

JobHooks::~JobHooks() = default;

void JobHooks::attach(train::Trainer& trainer) {
  if (prepared_.debugger) {
    auto session = debug::DebuggerSession::start(*prepared_.debugger, paths_.debug(),
                                                 [&trainer](const std::string& reason) { trainer.request_stop(reason); });
    if (!session.ok()) throw Error(session.status());
    debugger_ = std::move(*session);
    trainer.add_callback(debugger_->hook());
  }
  if (profiler_) trainer.add_callback(profiler_->hook());
}

void JobHooks::end_loop() {
  if (loop_ended_) return;
  loop_ended_ = true;
  if (profiler_) profiler_->mark_loop_end();
  if (debugger_) {
    json summary = json::object();
    for (const auto& rule : debugger_->finish()) {
      summary[rule.value("rule", std::string())] = rule.value("status", std::string());
    }
    artifacts_["debug"] = {{"dir", paths_.debug().string()}, {"rules", summary}};
  }
}

json JobHooks::finish() {
  if (finished_) return artifacts_;
  finished_ = true;
  end_loop();
  if (profiler_) {
    auto artifact = profiler_->finish();
    if (artifact.ok()) {
      artifacts_["profile"] = *artifact;
    } else {
      spdlog::warn("profiler: could not write its report: {}", artifact.status().message());
    }
  }
  return artifacts_;
}

}  // namespace kennel::job

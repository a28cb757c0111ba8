// The debugger of one training job: what `--debugger default|off|SPEC` (or
// `debugger:` in the job spec) asks for, and the session that runs it — the
// hook (a trainer callback), the tensor store under the job's debug/, the rule
// runner on its own thread, and each rule's action when it finds an issue:
// `log` (default), `stop_training` (the job stops, naming the rule) or
// `webhook` (POST a JSON event, 5 s timeout). debug/rules.json always holds
// the latest rule statuses.
//
// Spec (YAML or JSON):
//   collections: {gradients: {save_interval: 5, histogram_bins: 30}, losses: {}, ...}
//   rules: [ExplodingTensor, {name: LossNotDecreasing, parameters: {num_steps: 20},
//            action: stop_training}, {name: Overfit, action: {webhook: "http://127.0.0.1:9000/hook"}}]
// Omitted collections/rules fall back to the defaults. Thread-safety: the
// session is built and finished on the job's thread.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kennel/debug/hook.h"
#include "kennel/debug/rules.h"
#include "kennel/debug/tensor_store.h"
#include "kennel/util/status.h"

namespace kennel::debug {

struct RuleSpec {
  std::string name;
  nlohmann::json parameters = nlohmann::json::object();
  std::string action = "log";  // log | stop_training | webhook
  std::string webhook_url;
};

struct DebuggerSpec {
  DebugHookConfig hook = DebugHookConfig::defaults();
  std::vector<RuleSpec> rules;
  Rotation rotation;  // storage: {rotate_megabytes, rotate_minutes}
};

// A spec file's object (the job reads the file). Errors name the field.
Result<DebuggerSpec> parse_debugger_spec(const nlohmann::json& object, const std::string& origin);
// The rules `--debugger default` runs: those whose data the default collections provide.
DebuggerSpec default_debugger_spec();

class DebuggerSession {
 public:
  using StopTraining = std::function<void(const std::string& reason)>;
  static Result<std::unique_ptr<DebuggerSession>> start(const DebuggerSpec& spec, const std::filesystem::path& debug_dir,
                                                        StopTraining stop_training);
  ~DebuggerSession();

  std::shared_ptr<train::TrainerCallback> hook() const { return hook_; }
  // Drains the rules, writes debug/rules.json; returns the results as JSON.
  nlohmann::json finish();

 private:
  DebuggerSession() = default;
  void on_issue(const std::string& rule, const RuleResult& result);
  void write_rules_json();

  std::filesystem::path dir_;
  std::vector<RuleSpec> rules_;
  StopTraining stop_training_;
  std::unique_ptr<class TensorStore> store_;
  std::unique_ptr<RuleRunner> runner_;
  std::shared_ptr<DebugHook> hook_;
  bool finished_ = false;
};

nlohmann::json rules_to_json(const std::vector<RuleResult>& results, const std::vector<RuleSpec>& specs);

}  // namespace kennel::debug

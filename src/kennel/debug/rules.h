// Debugger rules: pure logic that watches a stream of StepRecords (tensor
// summaries from the training hook) and decides, per rule, whether training
// shows a known pathology — vanishing gradients, NaNs, dead ReLUs, a loss that
// stopped decreasing, overfitting, a stalled job, ... — with the same names,
// parameters and meanings as the cloud debugger's built-in rules.
//
// This module owns the rules and the RuleRunner that feeds them on a background
// thread. It does not own producing records (the debug hook), storing them
// (event files) or writing rules.json and acting on issues (the job does, from
// RuleRunner's on_issue callback and results()). No torch here.
//
// A rule's life: observe() every record in order, tick() now and then with the
// wall clock, finish() once when training ends. Its status starts InProgress,
// becomes IssuesFound at the first violation and stays so (the first issue's
// step, tensor and message are kept; later violations are only counted);
// finish() turns InProgress into NoIssuesFound when the rule evaluated data, or
// NoData with a reason naming the collection it needed and how to enable it.
//
// Thread-safety: a Rule is single-threaded. RuleRunner is thread-safe: push()
// from the training thread, results() from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "kennel/debug/tensor_record.h"
#include "kennel/util/status.h"

namespace kennel::debug {

enum class RuleStatus { kInProgress, kNoIssuesFound, kIssuesFound, kNoData, kError };

// "InProgress", "NoIssuesFound", "IssuesFound", "NoData", "Error".
const char* rule_status_name(RuleStatus status);

struct RuleResult {
  std::string rule;                         // the rule's name
  RuleStatus status = RuleStatus::kInProgress;
  std::optional<int64_t> step;              // step of the first issue
  std::string tensor;                       // tensor of the first issue ("" when not about one tensor)
  std::string message;                      // issue: what was seen, the threshold, what to try;
                                            // NoData: why; Error: the exception; else a summary
  int64_t datapoints = 0;                   // observations the rule evaluated
  int64_t violations = 0;                   // observations that broke the rule (>= 1 when IssuesFound)
};

// {"rule", "status", "step" (null when none), "tensor", "message", "datapoints", "violations"}.
nlohmann::json to_json(const RuleResult& result);

class Rule {
 public:
  virtual ~Rule() = default;
  virtual std::string name() const = 0;
  // The resolved parameters: every parameter with its default filled in.
  virtual nlohmann::json parameters() const = 0;
  // Records arrive in the order the hook produced them.
  virtual void observe(const StepRecord& record) = 0;
  // The wall clock (seconds since the Unix epoch), called about once a second
  // by the runner; only time-based rules (StalledTraining) use it.
  virtual void tick(double now_wall_time) { (void)now_wall_time; }
  // Training ended: rules that evaluate at the end do so, then InProgress
  // becomes NoIssuesFound or NoData. Called once; observe() is not called after.
  virtual void finish() = 0;
  virtual RuleResult result() const = 0;
};

// The 16 built-in rules, in documentation order.
const std::vector<std::string>& builtin_rule_names();

// Builds a built-in rule. `parameters` is an object (or null for all defaults);
// values may be numbers/booleans/lists or their string spelling ("1e-7",
// "True", "weights,gradients"), as cloud rule configs write them.
// Fails with InvalidArgument naming the unknown rule (and listing the valid
// ones), or the unknown / invalid parameter (and listing the rule's parameters).
Result<std::unique_ptr<Rule>> make_rule(const std::string& name, const nlohmann::json& parameters);

struct RuleRunnerOptions {
  double tick_interval_seconds = 1.0;  // how often rules get tick(); StalledTraining's resolution
  // Records waiting for the rule thread; beyond this push() drops the record
  // (and counts it) rather than block or grow without bound.
  size_t max_queued_records = 100000;
  // The wall clock passed to tick(); system_clock seconds since the epoch when empty (tests inject one).
  std::function<double()> clock;
};

// Owns rules and evaluates them on its own thread, so the training thread only
// pays for a mutex-guarded move into a queue. A rule that throws becomes Error
// with the exception's message and is not fed again; nothing a rule does
// reaches the training thread.
class RuleRunner {
 public:
  // Fired on the rule thread, once per rule, when the rule first turns
  // IssuesFound (also when that happens in finish()). It may call results()
  // and push(), not finish(). Exceptions it throws are swallowed.
  using IssueCallback = std::function<void(const std::string& rule, const RuleResult& result)>;

  explicit RuleRunner(std::vector<std::unique_ptr<Rule>> rules, IssueCallback on_issue = {},
                      RuleRunnerOptions options = {});
  ~RuleRunner();  // finish()es if the caller did not
  RuleRunner(const RuleRunner&) = delete;
  RuleRunner& operator=(const RuleRunner&) = delete;

  // Queues a record. False (and the record is dropped) after finish() or when
  // the queue is full; never blocks beyond the queue's mutex.
  bool push(StepRecord record);
  // Drains the queue, calls finish() on every rule, fires pending on_issue
  // callbacks and joins the rule thread. Idempotent.
  void finish();
  // A snapshot, one result per rule in construction order.
  std::vector<RuleResult> results() const;
  int64_t dropped_records() const;

 private:
  struct Slot {
    std::unique_ptr<Rule> rule;
    std::string name;
    std::optional<RuleResult> error;  // set when the rule threw; then it is fed no more
    bool issue_reported = false;
  };

  void run();
  double now() const;
  // Runs `action` on every healthy rule under rules_mutex_, converting throws to Error.
  void for_each_rule(const std::function<void(Rule&)>& action);
  void report_new_issues();

  RuleRunnerOptions options_;
  IssueCallback on_issue_;

  mutable std::mutex rules_mutex_;  // guards slots_: rules are single-threaded
  std::vector<Slot> slots_;

  mutable std::mutex queue_mutex_;
  std::condition_variable queue_ready_;
  std::deque<StepRecord> queue_;
  bool stopping_ = false;
  int64_t dropped_ = 0;

  std::mutex finish_mutex_;  // serialises finish() callers
  std::thread worker_;
};

}  // namespace kennel::debug

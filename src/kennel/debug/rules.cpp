// Rule status names, RuleResult as JSON, and the RuleRunner (rules.h).
// The built-in rules and make_rule live in builtin_rules.cpp.
#include "kennel/debug/rules.h"

#include <chrono>
#include <exception>
#include <limits>

namespace kennel::debug {

const char* rule_status_name(RuleStatus status) {
  switch (status) {
    case RuleStatus::kInProgress: return "InProgress";
    case RuleStatus::kNoIssuesFound: return "NoIssuesFound";
    case RuleStatus::kIssuesFound: return "IssuesFound";
    case RuleStatus::kNoData: return "NoData";
    case RuleStatus::kError: return "Error";
  }
  return "Error";
}

nlohmann::json to_json(const RuleResult& result) {
  return {{"rule", result.rule},
          {"status", rule_status_name(result.status)},
          {"step", result.step ? nlohmann::json(*result.step) : nlohmann::json(nullptr)},
          {"tensor", result.tensor},
          {"message", result.message},
          {"datapoints", result.datapoints},
          {"violations", result.violations}};
}

RuleRunner::RuleRunner(std::vector<std::unique_ptr<Rule>> rules, IssueCallback on_issue, RuleRunnerOptions options)
    : options_(std::move(options)), on_issue_(std::move(on_issue)) {
  for (auto& rule : rules) {
    if (!rule) continue;
    Slot slot;
    slot.name = rule->name();
    slot.rule = std::move(rule);
    slots_.push_back(std::move(slot));
  }
  worker_ = std::thread([this] { run(); });
}

RuleRunner::~RuleRunner() { finish(); }

bool RuleRunner::push(StepRecord record) {
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    if (stopping_) return false;
    if (queue_.size() >= options_.max_queued_records) {
      ++dropped_;
      return false;
    }
    queue_.push_back(std::move(record));
  }
  queue_ready_.notify_one();
  return true;
}

void RuleRunner::finish() {
  std::lock_guard<std::mutex> finishing(finish_mutex_);
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    stopping_ = true;
  }
  queue_ready_.notify_one();
  // From the rule thread itself (an on_issue callback) joining would deadlock;
  // the thread sees stopping_ and finishes on its own.
  if (worker_.joinable() && worker_.get_id() != std::this_thread::get_id()) worker_.join();
}

std::vector<RuleResult> RuleRunner::results() const {
  std::lock_guard<std::mutex> lock(rules_mutex_);
  std::vector<RuleResult> results;
  results.reserve(slots_.size());
  for (const Slot& slot : slots_) {
    if (slot.error) {
      results.push_back(*slot.error);
      continue;
    }
    try {
      results.push_back(slot.rule->result());
    } catch (const std::exception& error) {
      results.push_back({slot.name, RuleStatus::kError, std::nullopt, "", error.what(), 0, 0});
    }
  }
  return results;
}

int64_t RuleRunner::dropped_records() const {
  std::lock_guard<std::mutex> lock(queue_mutex_);
  return dropped_;
}

double RuleRunner::now() const {
  if (options_.clock) return options_.clock();
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void RuleRunner::for_each_rule(const std::function<void(Rule&)>& action) {
  std::lock_guard<std::mutex> lock(rules_mutex_);
  for (Slot& slot : slots_) {
    if (slot.error) continue;
    std::string message;
    try {
      action(*slot.rule);
      continue;
    } catch (const std::exception& error) {
      message = error.what();
    } catch (...) {
      message = "unknown exception";
    }
    RuleResult failed;
    try {
      failed = slot.rule->result();
    } catch (...) {
    }
    failed.rule = slot.name;
    failed.status = RuleStatus::kError;
    failed.message = "the rule failed: " + message;
    slot.error = failed;
  }
}

void RuleRunner::report_new_issues() {
  std::vector<RuleResult> fresh;
  {
    std::lock_guard<std::mutex> lock(rules_mutex_);
    for (Slot& slot : slots_) {
      if (slot.error || slot.issue_reported) continue;
      RuleResult result;
      try {
        result = slot.rule->result();
      } catch (...) {
        continue;
      }
      if (result.status != RuleStatus::kIssuesFound) continue;
      slot.issue_reported = true;
      fresh.push_back(std::move(result));
    }
  }
  if (!on_issue_) return;
  for (const RuleResult& result : fresh) {  // outside the lock: the callback may call results()
    try {
      on_issue_(result.rule, result);
    } catch (...) {
      // An action that fails (a webhook down) must not take the rules or training with it.
    }
  }
}

void RuleRunner::run() {
  const auto interval = std::chrono::duration<double>(options_.tick_interval_seconds);
  double last_tick = -std::numeric_limits<double>::infinity();
  for (;;) {
    std::deque<StepRecord> batch;
    bool stopping = false;
    {
      std::unique_lock<std::mutex> lock(queue_mutex_);
      queue_ready_.wait_for(lock, interval, [this] { return stopping_ || !queue_.empty(); });
      batch.swap(queue_);
      stopping = stopping_;  // push() refuses once stopping_ is set, so this batch is the last
    }
    for (const StepRecord& record : batch) {
      for_each_rule([&](Rule& rule) { rule.observe(record); });
      report_new_issues();
    }
    double current = now();
    if (current - last_tick >= options_.tick_interval_seconds) {
      last_tick = current;
      for_each_rule([&](Rule& rule) { rule.tick(current); });
      report_new_issues();
    }
    if (stopping) break;
  }
  for_each_rule([](Rule& rule) { rule.finish(); });
  report_new_issues();
}

}  // namespace kennel::debug

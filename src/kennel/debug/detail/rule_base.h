// Internals shared by the built-in rules: the status bookkeeping every rule
// has (RuleBase), reading and validating a rule's parameters (ParamReader),
// tensor selection by collection and name (TensorFilter), and histogram math.
// Not part of the debug module's contract; include rules.h instead.
#pragma once

#include <cmath>
#include <limits>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kennel/debug/rules.h"
#include "kennel/util/status.h"

namespace kennel::debug::detail {

// Status bookkeeping: the first issue is kept, later ones only counted.
class RuleBase : public Rule {
 public:
  RuleBase(std::string name, nlohmann::json parameters);
  std::string name() const override { return result_.rule; }
  nlohmann::json parameters() const override { return parameters_; }
  RuleResult result() const override { return result_; }
  void finish() final;

 protected:
  // End-of-training evaluation for rules that judge a whole pass or window.
  virtual void on_finish() {}
  // Why there was nothing to evaluate: the collection needed and how to enable it.
  virtual std::string no_data_reason() const = 0;

  void add_datapoint(int64_t n = 1) { result_.datapoints += n; }
  void report_issue(int64_t step, const std::string& tensor, const std::string& message);
  bool has_issue() const { return result_.status == RuleStatus::kIssuesFound; }

 private:
  nlohmann::json parameters_;
  RuleResult result_;
};

// Reads parameters with defaults, accepting numbers or their string spelling;
// records the first error and, in status(), rejects keys nobody asked for.
class ParamReader {
 public:
  ParamReader(std::string rule, const nlohmann::json& given);

  double number(const std::string& key, double fallback, double min = -std::numeric_limits<double>::infinity(),
                double max = std::numeric_limits<double>::infinity());
  int64_t integer(const std::string& key, int64_t fallback, int64_t min = std::numeric_limits<int64_t>::min());
  bool boolean(const std::string& key, bool fallback);
  std::string choice(const std::string& key, const std::string& fallback, const std::vector<std::string>& options);
  std::string text(const std::string& key, const std::string& fallback);
  // A list of collection names (array, or comma-separated string); each must be a known collection.
  std::vector<std::string> collections(const std::string& key, const std::vector<std::string>& fallback);
  // A regex searched in tensor names ("" = every name); must compile.
  std::string regex(const std::string& key, const std::string& fallback = "");
  // Records a cross-parameter error (e.g. min above max).
  void fail(Status status);

  // OK, or the first invalid value, or an unknown key (listing the valid ones).
  Status status() const;
  const nlohmann::json& resolved() const { return resolved_; }

 private:
  const nlohmann::json* find(const std::string& key);

  std::string rule_;
  nlohmann::json given_;
  nlohmann::json resolved_ = nlohmann::json::object();
  std::vector<std::string> known_;
  Status error_;
};

// Selects tensors by collection (empty = every collection) and an optional
// regex searched in the tensor's name.
class TensorFilter {
 public:
  TensorFilter() = default;
  TensorFilter(std::vector<std::string> collections, const std::string& regex);
  bool matches(const TensorSummary& tensor) const;
  std::string describe() const;  // "collections weights, gradients" for NoData reasons

 private:
  std::set<std::string> collections_;
  std::optional<std::regex> regex_;
  std::string regex_text_;
};

// Validates a regex parameter; returns the error for ParamReader-style reporting.
Status check_regex(const std::string& rule, const std::string& key, const std::string& pattern);

// The q-quantile (0..1) of the pooled distribution of several tensors, from
// their histograms (linear within a bin) or, lacking one, a uniform spread
// between min and max. nullopt when the tensors hold no elements.
std::optional<double> pooled_quantile(const std::vector<const TensorSummary*>& tensors, double q);

// Share of the histogram's mass with |x| > threshold (linear within a bin).
double histogram_share_beyond(const Histogram& histogram, double threshold);

// The scalar a loss/metric tensor carries: values[0], else its mean.
double scalar_of(const TensorSummary& tensor);

// "%.4g"-style short number for messages.
std::string num(double value);

const TensorSummary* find_tensor(const StepRecord& record, const std::string& name);

}  // namespace kennel::debug::detail

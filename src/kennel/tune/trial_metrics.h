// What a trial reports, read back: a Kennel trial's metrics.jsonl epoch
// records, or the regex matches in an external command's output (each match
// of the objective's regex is one intermediate value); and what those values
// amount to — the objective, and the curve the early-stopping rules compare.
// Thread-safety: values; CommandMetrics has one owner.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "kennel/store/study_store.h"
#include "kennel/tune/study_spec.h"

namespace kennel::tune {

using Trial = store::TrialRecord;

// The objective a list of per-epoch values amounts to (the final or the best epoch's).
std::optional<double> objective_of(const std::vector<double>& values, const ObjectiveSpec& objective);

// A curve in the stoppers' minimise orientation, "best so far" when the objective is the best epoch.
TrialCurve curve_of(const Trial& trial, const ObjectiveSpec& objective);

// A Kennel trial's metrics.jsonl: the objective metric of each epoch record.
struct EpochValues {
  std::vector<double> values;
  std::vector<int64_t> epochs;  // the record's epoch number of each value
  std::vector<std::string> metrics_seen;
};
// A job resumed from an older checkpoint repeats epochs: the later record of an epoch replaces the earlier.
void absorb_epoch_line(const std::string& line, const std::string& metric, EpochValues& out);
EpochValues read_epoch_values(const std::filesystem::path& metrics_path, const std::string& metric);

// An external command's output lines, matched with the study's metric regexes.
class CommandMetrics {
 public:
  CommandMetrics(const std::map<std::string, std::string>& definitions, std::string objective_metric);
  // Appends each new objective value to `intermediate`; returns the metrics.jsonl
  // records for them (the latest value of every metric at that point).
  std::string absorb(const std::vector<std::string>& lines, std::vector<double>& intermediate);
  const std::map<std::string, double>& latest() const { return latest_; }

 private:
  std::vector<std::pair<std::string, std::regex>> regexes_;
  std::string objective_;
  std::map<std::string, double> latest_;
};

std::string join_names(const std::vector<std::string>& items);  // "a, b" or "nothing"

}  // namespace kennel::tune

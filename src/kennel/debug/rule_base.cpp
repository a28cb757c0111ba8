// RuleBase, ParamReader, TensorFilter and the histogram helpers (detail/rule_base.h).
#include "kennel/debug/detail/rule_base.h"
#include "kennel/util/text.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace kennel::debug::detail {

RuleBase::RuleBase(std::string name, nlohmann::json parameters) : parameters_(std::move(parameters)) {
  result_.rule = std::move(name);
}

void RuleBase::finish() {
  on_finish();
  if (result_.status != RuleStatus::kInProgress) return;
  if (result_.datapoints > 0) {
    result_.status = RuleStatus::kNoIssuesFound;
    result_.message = fmt::format("no issues found in {} datapoints", result_.datapoints);
  } else {
    result_.status = RuleStatus::kNoData;
    result_.message = no_data_reason();
  }
}

void RuleBase::report_issue(int64_t step, const std::string& tensor, const std::string& message) {
  ++result_.violations;
  if (result_.status == RuleStatus::kIssuesFound) return;  // the first issue is the one users act on
  result_.status = RuleStatus::kIssuesFound;
  result_.step = step;
  result_.tensor = tensor;
  result_.message = message;
}

namespace {


std::string trim(const std::string& text) {
  size_t begin = text.find_first_not_of(" \t");
  if (begin == std::string::npos) return "";
  size_t end = text.find_last_not_of(" \t");
  return text.substr(begin, end - begin + 1);
}

std::optional<double> parse_double(const nlohmann::json& value) {
  if (value.is_number()) return value.get<double>();
  if (!value.is_string()) return std::nullopt;
  const std::string text = trim(value.get<std::string>());
  if (text.empty()) return std::nullopt;
  try {
    size_t used = 0;
    double parsed = std::stod(text, &used);
    if (used != text.size()) return std::nullopt;
    return parsed;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

ParamReader::ParamReader(std::string rule, const nlohmann::json& given) : rule_(std::move(rule)) {
  if (given.is_null()) {
    given_ = nlohmann::json::object();
  } else if (!given.is_object()) {
    given_ = nlohmann::json::object();
    fail(invalid_argument("rule '{}': parameters must be an object, got {}", rule_, given.dump()));
  } else {
    given_ = given;
  }
}

const nlohmann::json* ParamReader::find(const std::string& key) {
  known_.push_back(key);
  auto it = given_.find(key);
  return it == given_.end() ? nullptr : &*it;
}

void ParamReader::fail(Status status) {
  if (error_.ok()) error_ = std::move(status);
}

double ParamReader::number(const std::string& key, double fallback, double min, double max) {
  double value = fallback;
  if (const nlohmann::json* given = find(key)) {
    std::optional<double> parsed = parse_double(*given);
    if (!parsed || !std::isfinite(*parsed)) {
      fail(invalid_argument("rule '{}': parameter '{}' must be a number, got {}", rule_, key, given->dump()));
    } else if (*parsed < min || *parsed > max) {
      fail(invalid_argument("rule '{}': parameter '{}' must be in [{}, {}], got {}", rule_, key, min, max, *parsed));
    } else {
      value = *parsed;
    }
  }
  resolved_[key] = value;
  return value;
}

int64_t ParamReader::integer(const std::string& key, int64_t fallback, int64_t min) {
  int64_t value = fallback;
  if (const nlohmann::json* given = find(key)) {
    std::optional<double> parsed = parse_double(*given);
    if (!parsed || !std::isfinite(*parsed) || std::floor(*parsed) != *parsed || std::fabs(*parsed) > 9e15) {
      fail(invalid_argument("rule '{}': parameter '{}' must be an integer, got {}", rule_, key, given->dump()));
    } else if (static_cast<int64_t>(*parsed) < min) {
      fail(invalid_argument("rule '{}': parameter '{}' must be >= {}, got {}", rule_, key, min, *parsed));
    } else {
      value = static_cast<int64_t>(*parsed);
    }
  }
  resolved_[key] = value;
  return value;
}

bool ParamReader::boolean(const std::string& key, bool fallback) {
  bool value = fallback;
  if (const nlohmann::json* given = find(key)) {
    std::string text = given->is_string() ? ascii_lower(trim(given->get<std::string>())) : "";
    if (given->is_boolean()) {
      value = given->get<bool>();
    } else if (text == "true" || text == "1") {
      value = true;
    } else if (text == "false" || text == "0") {
      value = false;
    } else {
      fail(invalid_argument("rule '{}': parameter '{}' must be true or false, got {}", rule_, key, given->dump()));
    }
  }
  resolved_[key] = value;
  return value;
}

std::string ParamReader::choice(const std::string& key, const std::string& fallback,
                                const std::vector<std::string>& options) {
  std::string value = fallback;
  if (const nlohmann::json* given = find(key)) {
    std::string text = given->is_string() ? ascii_lower(trim(given->get<std::string>())) : "";
    if (std::find(options.begin(), options.end(), text) == options.end()) {
      fail(invalid_argument("rule '{}': parameter '{}' must be one of {}, got {}", rule_, key,
                            fmt::join(options, ", "), given->dump()));
    } else {
      value = text;
    }
  }
  resolved_[key] = value;
  return value;
}

std::string ParamReader::text(const std::string& key, const std::string& fallback) {
  std::string value = fallback;
  if (const nlohmann::json* given = find(key)) {
    if (!given->is_string()) {
      fail(invalid_argument("rule '{}': parameter '{}' must be a string, got {}", rule_, key, given->dump()));
    } else {
      value = given->get<std::string>();
    }
  }
  resolved_[key] = value;
  return value;
}

std::vector<std::string> ParamReader::collections(const std::string& key, const std::vector<std::string>& fallback) {
  std::vector<std::string> value = fallback;
  if (const nlohmann::json* given = find(key)) {
    std::vector<std::string> names;
    bool well_formed = true;
    if (given->is_string()) {
      std::string text = given->get<std::string>();
      size_t start = 0;
      while (start <= text.size()) {
        size_t comma = text.find(',', start);
        std::string item = trim(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
        if (!item.empty()) names.push_back(item);
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    } else if (given->is_array()) {
      for (const auto& item : *given) {
        if (!item.is_string()) well_formed = false;
        else names.push_back(trim(item.get<std::string>()));
      }
    } else {
      well_formed = false;
    }
    if (!well_formed) {
      fail(invalid_argument("rule '{}': parameter '{}' must be a list of collection names, got {}", rule_, key,
                            given->dump()));
    } else {
      const auto& known = known_collections();
      for (const std::string& name : names) {
        if (std::find(known.begin(), known.end(), name) == known.end()) {
          fail(invalid_argument("rule '{}': parameter '{}' names unknown collection '{}' (known: {})", rule_, key,
                                name, fmt::join(known, ", ")));
        }
      }
      value = names;
    }
  }
  resolved_[key] = value;
  return value;
}

std::string ParamReader::regex(const std::string& key, const std::string& fallback) {
  std::string pattern = text(key, fallback);
  Status valid = check_regex(rule_, key, pattern);
  if (!valid.ok()) {
    fail(valid);
    pattern = fallback;
    resolved_[key] = pattern;
  }
  return pattern;
}

Status ParamReader::status() const {
  if (!error_.ok()) return error_;
  for (const auto& [key, value] : given_.items()) {
    if (std::find(known_.begin(), known_.end(), key) == known_.end()) {
      return invalid_argument("rule '{}' has no parameter '{}' (valid: {})", rule_, key,
                              known_.empty() ? std::string("none") : fmt::format("{}", fmt::join(known_, ", ")));
    }
  }
  return Status::ok_status();
}

TensorFilter::TensorFilter(std::vector<std::string> collections, const std::string& regex)
    : collections_(collections.begin(), collections.end()), regex_text_(regex) {
  if (!regex.empty()) regex_ = std::regex(regex);
}

bool TensorFilter::matches(const TensorSummary& tensor) const {
  if (!collections_.empty() && collections_.count(tensor.collection) == 0) return false;
  if (regex_ && !std::regex_search(tensor.name, *regex_)) return false;
  return true;
}

std::string TensorFilter::describe() const {
  std::string text = collections_.empty() ? std::string("any collection")
                                          : fmt::format("collections {}", fmt::join(collections_, ", "));
  if (!regex_text_.empty()) text += fmt::format(" matching '{}'", regex_text_);
  return text;
}

Status check_regex(const std::string& rule, const std::string& key, const std::string& pattern) {
  try {
    std::regex compiled(pattern);
  } catch (const std::regex_error& error) {
    return invalid_argument("rule '{}': parameter '{}' is not a valid regex '{}': {}", rule, key, pattern,
                            error.what());
  }
  return Status::ok_status();
}

namespace {

bool usable_histogram(const TensorSummary& tensor) {
  if (!tensor.histogram) return false;
  const Histogram& h = *tensor.histogram;
  if (h.counts.empty() || h.edges.size() != h.counts.size() + 1) return false;
  int64_t total = 0;
  for (int64_t c : h.counts) total += c;
  return total > 0;
}

// Number of the tensor's elements <= x (histogram: linear within a bin).
double mass_below(const TensorSummary& tensor, double x) {
  if (usable_histogram(tensor)) {
    const Histogram& h = *tensor.histogram;
    double mass = 0;
    for (size_t b = 0; b < h.counts.size(); ++b) {
      double lo = h.edges[b], hi = h.edges[b + 1];
      if (x >= hi) mass += h.counts[b];
      else if (x > lo && hi > lo) mass += h.counts[b] * (x - lo) / (hi - lo);
    }
    return mass;
  }
  double n = static_cast<double>(tensor.count);
  if (tensor.max <= tensor.min) return x >= tensor.min ? n : 0;
  return n * std::clamp((x - tensor.min) / (tensor.max - tensor.min), 0.0, 1.0);
}

double total_mass(const TensorSummary& tensor) {
  if (usable_histogram(tensor)) {
    double total = 0;
    for (int64_t c : tensor.histogram->counts) total += c;
    return total;
  }
  return static_cast<double>(std::max<int64_t>(tensor.count, 0));
}

}  // namespace

std::optional<double> pooled_quantile(const std::vector<const TensorSummary*>& tensors, double q) {
  double total = 0;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const TensorSummary* tensor : tensors) {
    double mass = total_mass(*tensor);
    if (mass <= 0) continue;
    total += mass;
    if (usable_histogram(*tensor)) {
      lo = std::min(lo, tensor->histogram->edges.front());
      hi = std::max(hi, tensor->histogram->edges.back());
    } else {
      lo = std::min(lo, tensor->min);
      hi = std::max(hi, tensor->max);
    }
  }
  if (total <= 0 || !std::isfinite(lo) || !std::isfinite(hi)) return std::nullopt;
  const double target = q * total;
  for (int iteration = 0; iteration < 100 && hi > lo; ++iteration) {
    double mid = lo + (hi - lo) / 2;
    double below = 0;
    for (const TensorSummary* tensor : tensors) below += mass_below(*tensor, mid);
    if (below >= target) hi = mid;
    else lo = mid;
  }
  return hi;
}

double histogram_share_beyond(const Histogram& histogram, double threshold) {
  double total = 0, beyond = 0;
  for (size_t b = 0; b < histogram.counts.size() && b + 1 < histogram.edges.size(); ++b) {
    double lo = histogram.edges[b], hi = histogram.edges[b + 1];
    double n = static_cast<double>(histogram.counts[b]);
    total += n;
    if (hi <= lo) {
      if (std::fabs(lo) > threshold) beyond += n;
      continue;
    }
    // The parts of [lo, hi) below -threshold and above +threshold.
    double below_part = std::max(0.0, std::min(hi, -threshold) - lo);
    double above_part = std::max(0.0, hi - std::max(lo, threshold));
    beyond += n * std::min(1.0, (below_part + above_part) / (hi - lo));
  }
  return total > 0 ? beyond / total : 0;
}

double scalar_of(const TensorSummary& tensor) { return tensor.values.empty() ? tensor.mean : tensor.values[0]; }

std::string num(double value) { return fmt::format("{:.4g}", value); }

const TensorSummary* find_tensor(const StepRecord& record, const std::string& name) {
  for (const TensorSummary& tensor : record.tensors) {
    if (tensor.name == name) return &tensor;
  }
  return nullptr;
}

}  // namespace kennel::debug::detail

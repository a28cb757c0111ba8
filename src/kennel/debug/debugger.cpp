#include "kennel/debug/debugger.h"

#include <curl/curl.h>

#include <spdlog/spdlog.h>

#include "kennel/debug/tensor_store.h"
#include "kennel/util/fs.h"
#include "kennel/util/json_value.h"

namespace kennel::debug {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

int64_t as_int(const json& value, const std::string& field) {
  if (const auto integer = json_integer(value)) return *integer;
  throw Error(invalid_argument("debugger field '{}': expected an integer, got {}", field, value.dump()));
}

bool as_bool(const json& value, const std::string& field) {
  if (value.is_boolean()) return value.get<bool>();
  throw Error(invalid_argument("debugger field '{}': expected true or false, got {}", field, value.dump()));
}

CollectionConfig parse_collection(const std::string& name, const json& value, CollectionConfig config) {
  if (value.is_null()) return config;
  if (!value.is_object()) {
    throw Error(invalid_argument("debugger collection '{}': expected a mapping of save settings, got {}", name,
                                 value.dump()));
  }
  for (const auto& [key, item] : value.items()) {
    const std::string field = "collections." + name + "." + key;
    if (key == "save_interval") {
      config.save.save_interval = as_int(item, field);
    } else if (key == "save_steps") {
      config.save.save_steps.clear();
      if (!item.is_array()) throw Error(invalid_argument("debugger field '{}': expected a list of steps", field));
      for (const auto& step : item) config.save.save_steps.push_back(as_int(step, field));
    } else if (key == "start_step") {
      config.save.start_step = as_int(item, field);
    } else if (key == "end_step") {
      config.save.end_step = as_int(item, field);
    } else if (key == "train") {
      config.save.train = as_bool(item, field);
    } else if (key == "eval") {
      config.save.eval = as_bool(item, field);
    } else if (key == "histogram_bins") {
      config.histogram_bins = as_int(item, field);
    } else if (key == "raw_values") {
      config.raw_values = as_int(item, field);
      if (config.raw_values < 0 || config.raw_values > CollectionConfig::kMaxRawValues) {
        throw Error(invalid_argument("debugger field '{}': {} is outside [0, {}] (raw values per tensor)", field,
                                     config.raw_values, CollectionConfig::kMaxRawValues));
      }
    } else {
      throw Error(invalid_argument(
          "debugger field '{}': unknown (use save_interval, save_steps, start_step, end_step, train, eval, "
          "histogram_bins, raw_values)",
          field));
    }
  }
  if (config.save.save_interval < 0 || config.histogram_bins < 0 || config.histogram_bins > 1000) {
    throw Error(invalid_argument("debugger collection '{}': save_interval must be >= 0 and histogram_bins in [0, 1000]",
                                 name));
  }
  if (config.save.end_step >= 0 && config.save.end_step <= config.save.start_step) {
    throw Error(invalid_argument("debugger collection '{}': end_step {} must be after start_step {}", name,
                                 config.save.end_step, config.save.start_step));
  }
  return config;
}

RuleSpec parse_rule(const json& value) {
  RuleSpec rule;
  if (value.is_string()) {
    rule.name = value.get<std::string>();
  } else if (value.is_object()) {
    for (const auto& [key, item] : value.items()) {
      if (key == "name") {
        rule.name = item.is_string() ? item.get<std::string>() : "";
      } else if (key == "parameters") {
        if (!item.is_object()) throw Error(invalid_argument("debugger rule parameters must be a mapping"));
        rule.parameters = item;
      } else if (key == "action") {
        if (item.is_string()) {
          rule.action = item.get<std::string>();
        } else if (item.is_object() && item.contains("webhook") && item["webhook"].is_string()) {
          rule.action = "webhook";
          rule.webhook_url = item["webhook"].get<std::string>();
        } else {
          throw Error(invalid_argument("debugger rule action: expected log, stop_training or {{webhook: URL}}, got {}",
                                       item.dump()));
        }
      } else {
        throw Error(invalid_argument("debugger rule: unknown key '{}' (use name, parameters, action)", key));
      }
    }
  } else {
    throw Error(invalid_argument("debugger rules: expected a rule name or {{name, parameters, action}}, got {}",
                                 value.dump()));
  }
  if (rule.action != "log" && rule.action != "stop_training" && rule.action != "webhook") {
    throw Error(invalid_argument("debugger rule '{}': action '{}' is not one of log, stop_training, webhook",
                                 rule.name, rule.action));
  }
  if (rule.action == "webhook" && rule.webhook_url.rfind("http://", 0) != 0 &&
      rule.webhook_url.rfind("https://", 0) != 0) {
    throw Error(invalid_argument("debugger rule '{}': webhook '{}' must be an http:// or https:// URL", rule.name,
                                 rule.webhook_url));
  }
  // The rule's own validation (unknown rule, unknown or bad parameter) happens here, before training.
  auto made = make_rule(rule.name, rule.parameters);
  if (!made.ok()) throw Error(made.status());
  return rule;
}

void post_webhook(const std::string& url, const std::string& body) {
  CURL* curl = curl_easy_init();
  if (!curl) return;
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  // A monitoring receiver on this machine must not be routed through an http_proxy from the environment.
  curl_easy_setopt(curl, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
  const CURLcode code = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  if (code != CURLE_OK || status >= 400) {
    spdlog::warn("debugger webhook {} failed: {}", url,
                 code != CURLE_OK ? curl_easy_strerror(code) : fmt::format("HTTP {}", status));
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
}

}  // namespace

DebuggerSpec default_debugger_spec() {
  DebuggerSpec spec;
  for (const char* name : {"VanishingGradient", "ExplodingTensor", "PoorWeightInitialization", "LossNotDecreasing",
                           "Overfit", "Overtraining", "DeadRelu", "WeightUpdateRatio", "AllZero", "ClassImbalance",
                           "CheckInputImages", "StalledTraining"}) {
    spec.rules.push_back({name, json::object(), "log", ""});
  }
  return spec;
}

Result<DebuggerSpec> parse_debugger_spec(const json& object, const std::string& origin) {
  if (!object.is_object()) return invalid_argument("{}: a debugger spec must be a mapping", origin);
  DebuggerSpec spec = default_debugger_spec();
  try {
    for (const auto& [key, value] : object.items()) {
      if (key == "collections") {
        if (!value.is_object()) return invalid_argument("{}: 'collections' must map names to save settings", origin);
        DebugHookConfig hook;
        const DebugHookConfig defaults = DebugHookConfig::defaults();
        for (const auto& [name, settings] : value.items()) {
          const auto& known = known_collections();
          if (std::find(known.begin(), known.end(), name) == known.end()) {
            std::string list;
            for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
            return invalid_argument("{}: unknown collection '{}' (one of {})", origin, name, list);
          }
          const auto found = defaults.collections.find(name);
          hook.collections[name] =
              parse_collection(name, settings, found != defaults.collections.end() ? found->second : CollectionConfig{});
        }
        spec.hook = hook;
      } else if (key == "rules") {
        spec.rules.clear();
        if (!value.is_array()) return invalid_argument("{}: 'rules' must be a list", origin);
        for (const auto& rule : value) spec.rules.push_back(parse_rule(rule));
      } else if (key == "storage") {
        if (!value.is_object()) return invalid_argument("{}: 'storage' must be a mapping", origin);
        for (const auto& [field, setting] : value.items()) {
          if (!setting.is_number() || !(setting.get<double>() > 0)) {
            return invalid_argument("{}: storage.{} must be a positive number, got {}", origin, field, setting.dump());
          }
          if (field == "rotate_megabytes") {
            spec.rotation.bytes = static_cast<int64_t>(setting.get<double>() * 1024 * 1024);
          } else if (field == "rotate_minutes") {
            spec.rotation.seconds = setting.get<double>() * 60;
          } else {
            return invalid_argument("{}: unknown storage field '{}' (use rotate_megabytes, rotate_minutes)", origin,
                                    field);
          }
        }
      } else {
        return invalid_argument("{}: unknown debugger field '{}' (use collections, rules, storage)", origin, key);
      }
    }
  } catch (const Error& error) {
    return error.status().with_context(origin);
  }
  return spec;
}

json rules_to_json(const std::vector<RuleResult>& results, const std::vector<RuleSpec>& specs) {
  json out = json::array();
  for (size_t i = 0; i < results.size(); ++i) {
    json item = to_json(results[i]);
    if (i < specs.size()) item["action"] = specs[i].action;
    out.push_back(item);
  }
  return out;
}

Result<std::unique_ptr<DebuggerSession>> DebuggerSession::start(const DebuggerSpec& spec, const fs::path& debug_dir,
                                                                StopTraining stop_training) {
  std::unique_ptr<DebuggerSession> session(new DebuggerSession());
  session->dir_ = debug_dir;
  session->rules_ = spec.rules;
  session->stop_training_ = std::move(stop_training);
  auto store = TensorStore::open(debug_dir, spec.rotation);
  if (!store.ok()) return store.status();
  session->store_ = std::move(*store);
  std::vector<std::unique_ptr<Rule>> rules;
  for (const auto& rule : spec.rules) {
    auto made = make_rule(rule.name, rule.parameters);
    if (!made.ok()) return made.status();
    rules.push_back(std::move(*made));
  }
  DebuggerSession* raw = session.get();
  session->runner_ = std::make_unique<RuleRunner>(
      std::move(rules), [raw](const std::string& rule, const RuleResult& result) { raw->on_issue(rule, result); });
  session->hook_ = std::make_shared<DebugHook>(spec.hook, [raw](StepRecord record) {
    if (Status written = raw->store_->write(record); !written.ok()) {
      spdlog::warn("debugger: {}", written.message());
    }
    raw->runner_->push(std::move(record));
  });
  session->write_rules_json();
  return session;
}

DebuggerSession::~DebuggerSession() {
  if (!finished_) finish();
}

void DebuggerSession::on_issue(const std::string& rule, const RuleResult& result) {
  const auto spec = std::find_if(rules_.begin(), rules_.end(), [&](const RuleSpec& r) { return r.name == rule; });
  const std::string where = result.step ? fmt::format(" at step {}", *result.step) : "";
  spdlog::warn("debugger: {} found an issue{}{}: {}", rule, where,
               result.tensor.empty() ? "" : fmt::format(" in {}", result.tensor), result.message);
  write_rules_json();
  if (spec == rules_.end()) return;
  if (spec->action == "stop_training" && stop_training_) {
    stop_training_(fmt::format("debugger rule {} found an issue{}: {}", rule, where, result.message));
  } else if (spec->action == "webhook") {
    post_webhook(spec->webhook_url, json{{"event", "rule_issue"}, {"rule", rule}, {"result", to_json(result)},
                                         {"debug_dir", dir_.string()}}
                                        .dump());
  }
}

void DebuggerSession::write_rules_json() {
  const json rules = rules_to_json(runner_->results(), rules_);
  Status written = write_file_atomic(dir_ / "rules.json", json{{"rules", rules}}.dump(2) + "\n");
  if (!written.ok()) spdlog::warn("debugger: {}", written.message());
}

json DebuggerSession::finish() {
  if (!finished_) {
    finished_ = true;
    runner_->finish();
    write_rules_json();
  }
  return rules_to_json(runner_->results(), rules_);
}

}  // namespace kennel::debug

// StudioApi: the endpoints part. Each registered `kennel serve` is probed
// (GET /ping, /models, /metrics with a short timeout) and its Prometheus text
// summarised: requests, errors, images, mean latency, queue depth.
#include <charconv>
#include <sstream>

#include <fmt/format.h>
#include <httplib.h>

#include "kennel/studio/api.h"

namespace kennel::studio {

using nlohmann::json;

namespace {

constexpr time_t kProbeTimeoutSeconds = 1;

// Sums of the samples of a Prometheus text exposition, by metric name (labels
// ignored), plus the request count by status class.
json summarise_prometheus(const std::string& text) {
  std::map<std::string, double> sums;
  double errors = 0;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    if (space == std::string::npos) continue;
    const std::string series = line.substr(0, space);
    double value = 0;
    const char* begin = line.data() + space + 1;
    if (std::from_chars(begin, line.data() + line.size(), value).ec != std::errc()) continue;
    const std::string name = series.substr(0, series.find('{'));
    sums[name] += value;
    if (name == "kennel_requests_total") {
      const size_t status = series.find("status=\"");
      if (status != std::string::npos && status + 8 < series.size() && series[status + 8] >= '4')
        errors += value;
    }
  }
  const auto get = [&](const char* name) {
    return sums.count(name) ? json(sums[name]) : json(nullptr);
  };
  json out = {{"requests", get("kennel_requests_total")},
              {"errors", errors},
              {"images", get("kennel_images_total")},
              {"queue_depth", get("kennel_queue_depth")},
              {"model_load_seconds", get("kennel_model_load_seconds")},
              {"mean_latency_ms", nullptr},
              {"mean_batch_size", nullptr}};
  if (sums["kennel_request_seconds_count"] > 0) {
    out["mean_latency_ms"] =
        1000 * sums["kennel_request_seconds_sum"] / sums["kennel_request_seconds_count"];
  }
  if (sums["kennel_batch_size_count"] > 0) {
    out["mean_batch_size"] = sums["kennel_batch_size_sum"] / sums["kennel_batch_size_count"];
  }
  return out;
}

json probe(const store::EndpointRecord& endpoint) {
  json out = {{"url", endpoint.url},
              {"model", endpoint.model},
              {"model_dir", endpoint.model_dir},
              {"host", endpoint.host},
              {"pid", endpoint.pid},
              {"started_at", endpoint.started_at},
              {"same_host", endpoint.same_host},
              {"ping", nullptr},
              {"answering", false},
              {"arch", nullptr},
              {"num_classes", nullptr},
              {"metrics", nullptr},
              {"error", nullptr}};
  // Only http URLs of the endpoint's own registration are probed (never a redirect elsewhere).
  if (!endpoint.url.starts_with("http://")) {
    out["error"] = "not probed: only http:// endpoints are probed";
    return out;
  }
  httplib::Client client(endpoint.url);
  client.set_connection_timeout(kProbeTimeoutSeconds, 0);
  client.set_read_timeout(kProbeTimeoutSeconds, 0);
  client.set_follow_location(false);
  const auto ping = client.Get("/ping");
  if (!ping) {
    out["error"] =
        fmt::format("no answer from {}/ping: {}", endpoint.url, httplib::to_string(ping.error()));
    return out;
  }
  out["ping"] = ping->status;
  out["answering"] = true;
  if (const auto models = client.Get("/models"); models && models->status == 200) {
    const json description = json::parse(models->body, nullptr, /*allow_exceptions=*/false);
    if (description.is_object()) {
      out["arch"] = description.value("arch", json());
      out["num_classes"] = description.value("num_classes", json());
    }
  }
  if (const auto metrics = client.Get("/metrics"); metrics && metrics->status == 200) {
    out["metrics"] = summarise_prometheus(metrics->body);
  } else if (metrics && metrics->status == 401) {
    // /ping is open to health checks; the rest of an endpoint started with a token needs it.
    out["error"] = "its /models and /metrics need the endpoint's bearer token (--auth-token-file)";
  }
  return out;
}

}  // namespace

json StudioApi::endpoints() {
  json rows = json::array();
  for (const auto& endpoint : source_.endpoints()) {
    json row = probe(endpoint);
    // Another host's entry cannot be checked by pid: it is listed only while it answers.
    if (!endpoint.same_host && !row["answering"].get<bool>()) continue;
    rows.push_back(std::move(row));
  }
  return json{{"endpoints", std::move(rows)}, {"now", store::unix_now()}};
}

}  // namespace kennel::studio

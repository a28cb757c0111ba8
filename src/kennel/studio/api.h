// The documents of Studio's HTTP API (docs/studio.md), built from a
// StudioSource and the job folders; no HTTP here (studio_server.cpp maps
// routes to these calls and Status codes to HTTP statuses: kNotFound 404,
// kInvalidArgument 400, kFailedPrecondition 409, kUnavailable 503).
//
//   jobs()                 GET  /api/jobs            every job, one row each
//   job(name)              GET  /api/jobs/NAME       row + spec, log tail, debugger, profiler,
//                                                    evaluation, model files, problems
//   metrics(name, since)   GET  /api/jobs/NAME/metrics?since=STEP
//   tensors(name, ...)     GET  /api/jobs/NAME/tensors?name=REGEX&step=STEP
//   stop(name)             POST /api/jobs/NAME/stop
//   studies()              GET  /api/studies
//   study(name)            GET  /api/studies/NAME    summary + parameter importance + retrain
//   command endpoints()            GET  /api/endpoints       live `kennel serve` processes, probed
//
// A job whose folder is damaged is still a row (and a page) with its
// `problems` listed: nothing a job folder holds makes a call fail or throw.
// Thread-safety: every call may run concurrently with the others.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "kennel/studio/metrics_history.h"
#include "kennel/studio/studio_source.h"
#include "kennel/util/status.h"

namespace kennel::studio {

// Links to files inside a job's or study's folder, as the server serves them.
std::string job_file_url(const std::string& job, const std::string& relative_path);
std::string study_file_url(const std::string& study, const std::string& relative_path);

class StudioApi {
 public:
  explicit StudioApi(StudioSource& source) : source_(source) {}

  Result<nlohmann::json> jobs();
  Result<nlohmann::json> job(const std::string& name);
  Result<nlohmann::json> metrics(const std::string& name, int64_t since);
  Result<nlohmann::json> tensors(const std::string& name, const std::string& name_regex,
                                 std::optional<int64_t> step);
  Result<nlohmann::json> stop(const std::string& name);
  Result<nlohmann::json> studies();
  Result<nlohmann::json> study(const std::string& name);
  nlohmann::json endpoints();

  // Where a job's files live (kNotFound for an unknown job): the server confines file links to it.
  Result<std::filesystem::path> job_dir(const std::string& name);
  Result<std::filesystem::path> study_dir(const std::string& name);

 private:
  nlohmann::json importance_of(const nlohmann::json& summary);

  StudioSource& source_;
  MetricsHistoryCache metrics_cache_;
  // Importance is recomputed only when the finished trials of a study change.
  std::mutex importance_mutex_;
  std::map<std::string, std::pair<std::string, nlohmann::json>> importance_cache_;
};

}  // namespace kennel::studio

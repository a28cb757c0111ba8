// The store's factories (read-write and read-only) and location, the registry's
// shared values, stopping a job, and the trial record's JSON form.
#include "kennel/store/store.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "kennel/store/detail/postgres_connection.h"
#include "kennel/store/detail/sql_store.h"
#include "kennel/store/detail/sqlite_connection.h"
#include "kennel/store/layout.h"

namespace kennel::store {

using nlohmann::json;

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string this_host() {
  char host[256] = "";
  ::gethostname(host, sizeof(host) - 1);
  return host;
}

const char* job_status_name(JobStatus status) {
  switch (status) {
    case JobStatus::kInProgress: return "InProgress";
    case JobStatus::kCompleted: return "Completed";
    case JobStatus::kFailed: return "Failed";
    case JobStatus::kStopped: return "Stopped";
  }
  return "Failed";
}

std::optional<JobStatus> parse_job_status(const std::string& name) {
  for (auto status : {JobStatus::kInProgress, JobStatus::kCompleted, JobStatus::kFailed, JobStatus::kStopped}) {
    if (name == job_status_name(status)) return status;
  }
  return std::nullopt;
}

double JobRecord::duration_seconds(double now) const {
  if (started_at <= 0) return 0;
  return (ended_at > 0 ? ended_at : now) - started_at;
}

bool TrialRecord::finished() const {
  return state == kTrialCompleted || state == kTrialStopped || state == kTrialFailed;
}

json TrialRecord::to_json() const {
  return {{"index", index},
          {"name", name},
          {"hyperparameters", hyperparameters},
          {"source", source},
          {"state", state},
          {"early_stopped", early_stopped},
          {"reason", reason},
          {"objective", objective ? json(*objective) : json(nullptr)},
          {"intermediate", intermediate},
          {"epochs_run", epochs_run},
          {"attempts", attempts},
          {"started_at", started_at},
          {"ended_at", ended_at},
          {"worker", worker},
          {"host", host},
          {"launch_id", launch_id}};
}

TrialRecord TrialRecord::from_json(const json& object) {
  TrialRecord trial;
  trial.index = object.value("index", int64_t{0});
  trial.name = object.value("name", std::string());
  trial.hyperparameters = object.value("hyperparameters", json::object());
  trial.source = object.value("source", std::string());
  trial.state = object.value("state", std::string(kTrialPending));
  trial.early_stopped = object.value("early_stopped", false);
  trial.reason = object.value("reason", std::string());
  if (object.contains("objective") && object["objective"].is_number()) trial.objective = object["objective"].get<double>();
  if (object.contains("intermediate") && object["intermediate"].is_array()) {
    for (const auto& value : object["intermediate"]) {
      if (value.is_number()) trial.intermediate.push_back(value.get<double>());
    }
  }
  trial.epochs_run = object.value("epochs_run", int64_t{0});
  trial.attempts = object.value("attempts", int64_t{0});
  trial.started_at = object.value("started_at", 0.0);
  trial.ended_at = object.value("ended_at", 0.0);
  trial.worker = object.value("worker", std::string());
  trial.host = object.value("host", std::string());
  trial.launch_id = object.value("launch_id", std::string());
  return trial;
}

std::string StoreLocation::display() const {
  if (kind != Kind::kPostgres) return sqlite_path.string();
  // postgresql://user:secret@host/db -> postgresql://user@host/db
  const auto scheme = url.find("://");
  const auto at = url.find('@', scheme == std::string::npos ? 0 : scheme + 3);
  if (scheme == std::string::npos || at == std::string::npos) return url;
  const auto colon = url.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon) + url.substr(at);
}

std::string StoreLocation::argument() const {
  switch (kind) {
    case Kind::kEmbedded: return "embedded";
    case Kind::kSqlite: return "sqlite:" + std::filesystem::absolute(sqlite_path).string();
    case Kind::kPostgres: return url;
  }
  return url;
}

Result<StoreLocation> parse_store_location(const std::string& text, const std::filesystem::path& home) {
  StoreLocation location;
  if (text.empty() || text == "embedded") {
    location.kind = StoreLocation::Kind::kEmbedded;
    location.sqlite_path = HomeLayout(home).registry();
    return location;
  }
  if (text.rfind("sqlite:", 0) == 0) {
    std::string path = text.substr(7);
    if (path.rfind("//", 0) == 0) path = path.substr(2);  // sqlite:///abs/path
    if (path.empty()) return invalid_argument("--store '{}': no file after 'sqlite:' (e.g. sqlite:/srv/kennel.db)", text);
    location.kind = StoreLocation::Kind::kSqlite;
    location.sqlite_path = path;
    return location;
  }
  if (text.rfind("postgresql://", 0) == 0 || text.rfind("postgres://", 0) == 0) {
    location.kind = StoreLocation::Kind::kPostgres;
    location.url = text;
    return location;
  }
  return invalid_argument(
      "--store '{}' (or KENNEL_STORE) is not a store: use embedded (the home's kennel.db), sqlite:PATH, or "
      "postgresql://user@host:port/database",
      text);
}

Result<std::unique_ptr<Store>> open_store(const StoreLocation& location) {
  if (location.kind == StoreLocation::Kind::kPostgres) {
    auto connection = detail::PostgresConnection::open(location.url, location.display());
    if (!connection.ok()) return connection.status();
    auto store = detail::SqlStore::open(location, std::move(*connection), detail::postgres_schema());
    if (!store.ok()) return store.status();
    return std::unique_ptr<Store>(std::move(*store));
  }
  auto connection = detail::SqliteConnection::open(location.sqlite_path);
  if (!connection.ok()) return connection.status();
  auto store = detail::SqlStore::open(location, std::move(*connection), detail::sqlite_schema());
  if (!store.ok()) return store.status().with_context(fmt::format("opening '{}'", location.sqlite_path.string()));
  return std::unique_ptr<Store>(std::move(*store));
}

Result<std::unique_ptr<Store>> open_store_read_only(const StoreLocation& location, double busy_timeout_seconds) {
  if (location.kind == StoreLocation::Kind::kPostgres) {
    auto connection = detail::PostgresConnection::open(location.url, location.display(), /*read_only=*/true);
    if (!connection.ok()) return connection.status();
    auto store = detail::SqlStore::open_read_only(location, std::move(*connection), detail::postgres_schema());
    if (!store.ok()) return store.status();
    return std::unique_ptr<Store>(std::move(*store));
  }
  std::error_code error;
  if (!std::filesystem::exists(location.sqlite_path, error)) {
    return not_found("no job registry at '{}': no job has run with this --home (or --store) yet",
                     location.sqlite_path.string());
  }
  auto connection = detail::SqliteConnection::open_read_only(location.sqlite_path, busy_timeout_seconds);
  if (!connection.ok()) return connection.status();
  auto store = detail::SqlStore::open_read_only(location, std::move(*connection), detail::sqlite_schema());
  if (!store.ok()) return store.status().with_context(fmt::format("reading '{}'", location.sqlite_path.string()));
  return std::unique_ptr<Store>(std::move(*store));
}

Result<std::unique_ptr<JobRegistry>> JobRegistry::open_read_only(const std::filesystem::path& db_path,
                                                                 double busy_timeout_seconds) {
  StoreLocation location;
  location.kind = StoreLocation::Kind::kSqlite;
  location.sqlite_path = db_path;
  auto store = open_store_read_only(location, busy_timeout_seconds);
  if (!store.ok()) return store.status();
  return std::unique_ptr<JobRegistry>(std::move(*store));
}

Status request_stop(const JobRecord& job) {
  if (job.status != JobStatus::kInProgress) {
    return failed_precondition("job '{}' is not running (status {})", job.name, job_status_name(job.status));
  }
  if (job.pid <= 0) {
    return failed_precondition("no process owns job '{}' (a study run by tuning workers): stop its workers "
                               "(Ctrl-C or SIGTERM to each `kennel tune worker`)",
                               job.name);
  }
  if (job.host != this_host()) {
    return failed_precondition("job '{}' runs on host '{}': stop it there", job.name, job.host);
  }
  if (::kill(static_cast<pid_t>(job.pid), SIGTERM) != 0) {
    return failed_precondition("cannot signal job '{}' (pid {}): {}", job.name, job.pid, std::strerror(errno));
  }
  return {};
}

Result<std::unique_ptr<JobRegistry>> JobRegistry::open(const std::filesystem::path& db_path) {
  StoreLocation location;
  location.kind = StoreLocation::Kind::kSqlite;
  location.sqlite_path = db_path;
  auto store = open_store(location);
  if (!store.ok()) return store.status();
  return std::unique_ptr<JobRegistry>(std::move(*store));
}

}  // namespace kennel::store

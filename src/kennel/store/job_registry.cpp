#include "kennel/store/job_registry.h"

#include <chrono>
#include <cerrno>
#include <cstring>
#include <thread>

#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

namespace kennel::store {

namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
  name TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  parent TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL,
  failure_reason TEXT NOT NULL DEFAULT '',
  spec_json TEXT NOT NULL DEFAULT '{}',
  job_dir TEXT NOT NULL DEFAULT '',
  created_at REAL NOT NULL,
  started_at REAL NOT NULL DEFAULT 0,
  ended_at REAL NOT NULL DEFAULT 0,
  heartbeat_at REAL NOT NULL DEFAULT 0,
  pid INTEGER NOT NULL DEFAULT 0,
  host TEXT NOT NULL DEFAULT '',
  final_metrics_json TEXT NOT NULL DEFAULT '{}',
  artifacts_json TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS jobs_parent ON jobs(parent);
)sql";
constexpr int kSchemaVersion = 1;

std::string host_name() {
  char host[256] = "";
  ::gethostname(host, sizeof(host) - 1);
  return host;
}

// RAII prepared statement with typed binders; errors carry SQLite's message.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) stmt_ = nullptr;
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  bool ok() const { return stmt_ != nullptr; }
  Statement& bind(int index, const std::string& text) {
    sqlite3_bind_text(stmt_, index, text.c_str(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& bind(int index, double value) {
    sqlite3_bind_double(stmt_, index, value);
    return *this;
  }
  Statement& bind(int index, int64_t value) {
    sqlite3_bind_int64(stmt_, index, value);
    return *this;
  }
  int step() { return sqlite3_step(stmt_); }
  std::string text(int column) const {
    const auto* text = sqlite3_column_text(stmt_, column);
    return text ? reinterpret_cast<const char*>(text) : "";
  }
  double real(int column) const { return sqlite3_column_double(stmt_, column); }
  int64_t integer(int column) const { return sqlite3_column_int64(stmt_, column); }
  Status error(const std::string& what) const {
    // A writer holding the lock past the busy timeout is "try again", not a bug.
    const int primary = sqlite3_errcode(db_) & 0xff;
    return Status(primary == SQLITE_BUSY || primary == SQLITE_LOCKED ? ErrorCode::kUnavailable : ErrorCode::kInternal,
                  fmt::format("job registry: {}: {}", what, sqlite3_errmsg(db_)));
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

constexpr const char* kSelectColumns =
    "SELECT name, kind, parent, status, failure_reason, spec_json, job_dir, created_at, "
    "started_at, ended_at, heartbeat_at, pid, host, final_metrics_json, artifacts_json FROM jobs";

JobRecord read_record(const Statement& row) {
  JobRecord record;
  record.name = row.text(0);
  record.kind = row.text(1);
  record.parent = row.text(2);
  record.status = parse_job_status(row.text(3)).value_or(JobStatus::kFailed);
  record.failure_reason = row.text(4);
  record.spec_json = row.text(5);
  record.job_dir = row.text(6);
  record.created_at = row.real(7);
  record.started_at = row.real(8);
  record.ended_at = row.real(9);
  record.heartbeat_at = row.real(10);
  record.pid = row.integer(11);
  record.host = row.text(12);
  record.final_metrics_json = row.text(13);
  record.artifacts_json = row.text(14);
  return record;
}

bool process_alive(int64_t pid) {
  if (pid <= 0) return false;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

}  // namespace

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
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

Result<std::unique_ptr<JobRegistry>> JobRegistry::open(const std::filesystem::path& db_path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(db_path.c_str(), &db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                                 nullptr);
  if (rc != SQLITE_OK) {
    Status status(ErrorCode::kPermissionDenied,
                  fmt::format("cannot open the job registry '{}': {} (check that --home is writable)",
                              db_path.string(), db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
    sqlite3_close(db);
    return status;
  }
  std::unique_ptr<JobRegistry> registry(new JobRegistry(db, db_path, /*read_only=*/false));
  sqlite3_busy_timeout(db, 30'000);
  // Processes opening a new registry at once race for the switch to WAL and the
  // schema; SQLite may answer SQLITE_BUSY there without waiting on its busy
  // handler, so the whole initialisation is retried, and the schema is written in
  // one IMMEDIATE transaction (one schema_version row, whoever wins).
  Status initialised;
  for (int attempt = 0; attempt < 200; ++attempt) {
    initialised = registry->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;");
    if (initialised.ok()) {
      initialised = registry->exec(std::string("BEGIN IMMEDIATE;") + kSchema +
                                   fmt::format("INSERT INTO schema_version(version) SELECT {} WHERE NOT EXISTS "
                                               "(SELECT 1 FROM schema_version); COMMIT;",
                                               kSchemaVersion));
      if (!initialised.ok()) (void)registry->exec("ROLLBACK;");
    }
    if (initialised.code() != ErrorCode::kUnavailable) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  KENNEL_RETURN_IF_ERROR(initialised.with_context(fmt::format("opening '{}'", db_path.string())));
  Statement version(db, "SELECT MAX(version) FROM schema_version");
  if (version.step() == SQLITE_ROW && version.integer(0) > kSchemaVersion) {
    return failed_precondition("the job registry '{}' has schema version {}, newer than this "
                               "kennel understands ({}): upgrade kennel",
                               db_path.string(), version.integer(0), kSchemaVersion);
  }
  return registry;
}

Result<std::unique_ptr<JobRegistry>> JobRegistry::open_read_only(const std::filesystem::path& db_path,
                                                                 double busy_timeout_seconds) {
  std::error_code error;
  if (!std::filesystem::exists(db_path, error)) {
    return not_found("no job registry at '{}': no job has run with this --home yet", db_path.string());
  }
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    Status status(ErrorCode::kPermissionDenied,
                  fmt::format("cannot open the job registry '{}' for reading: {}", db_path.string(),
                              db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
    sqlite3_close(db);
    return status;
  }
  std::unique_ptr<JobRegistry> registry(new JobRegistry(db, db_path, /*read_only=*/true));
  sqlite3_busy_timeout(db, static_cast<int>(busy_timeout_seconds * 1000));
  Statement version(db, "SELECT MAX(version) FROM schema_version");
  if (!version.ok()) {
    return Status(ErrorCode::kDataLoss, fmt::format("'{}' is not a Kennel job registry: {}", db_path.string(),
                                                    sqlite3_errmsg(db)));
  }
  if (version.step() == SQLITE_ROW && version.integer(0) > kSchemaVersion) {
    return failed_precondition("the job registry '{}' has schema version {}, newer than this "
                               "kennel understands ({}): upgrade kennel",
                               db_path.string(), version.integer(0), kSchemaVersion);
  }
  return registry;
}

JobRegistry::~JobRegistry() { sqlite3_close(db_); }

Status JobRegistry::check_writable() const {
  if (!read_only_) return {};
  return failed_precondition("the job registry '{}' was opened read-only", path_.string());
}

Status JobRegistry::exec(const std::string& sql) {
  char* message = nullptr;
  if (const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message); rc != SQLITE_OK) {
    const int primary = rc & 0xff;
    Status status(primary == SQLITE_BUSY || primary == SQLITE_LOCKED ? ErrorCode::kUnavailable : ErrorCode::kInternal,
                  fmt::format("job registry '{}': {}", path_.string(), message ? message : "error"));
    sqlite3_free(message);
    return status;
  }
  return {};
}

Status JobRegistry::create_job(const JobRecord& record) {
  KENNEL_RETURN_IF_ERROR(check_writable());
  Statement insert(db_,
                   "INSERT INTO jobs(name, kind, parent, status, failure_reason, spec_json, job_dir, "
                   "created_at, started_at, heartbeat_at, pid, host) "
                   "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?8, ?9, ?10)");
  if (!insert.ok()) return insert.error("preparing insert");
  const double now = unix_now();
  insert.bind(1, record.name).bind(2, record.kind).bind(3, record.parent)
      .bind(4, std::string(job_status_name(record.status))).bind(5, record.failure_reason)
      .bind(6, record.spec_json).bind(7, record.job_dir).bind(8, now)
      .bind(9, record.pid > 0 ? record.pid : static_cast<int64_t>(::getpid()))
      .bind(10, record.host.empty() ? host_name() : record.host);
  const int rc = insert.step();
  if (rc == SQLITE_CONSTRAINT) {
    return Status(ErrorCode::kAlreadyExists,
                  fmt::format("a job named '{}' already exists: choose another --name, or resume "
                              "it with --resume {}",
                              record.name, record.name));
  }
  if (rc != SQLITE_DONE) return insert.error(fmt::format("creating job '{}'", record.name));
  return {};
}

Status JobRegistry::set_status(const std::string& name, JobStatus status, const std::string& reason) {
  KENNEL_RETURN_IF_ERROR(check_writable());
  const bool terminal = status != JobStatus::kInProgress;
  Statement update(db_,
                   "UPDATE jobs SET status = ?2, failure_reason = ?3, ended_at = ?4, heartbeat_at = ?5 "
                   "WHERE name = ?1");
  if (!update.ok()) return update.error("preparing update");
  const double now = unix_now();
  update.bind(1, name).bind(2, std::string(job_status_name(status))).bind(3, reason)
      .bind(4, terminal ? now : 0.0).bind(5, now);
  if (update.step() != SQLITE_DONE) return update.error(fmt::format("updating job '{}'", name));
  if (sqlite3_changes(db_) == 0) return not_found("no job named '{}'", name);
  return {};
}

Status JobRegistry::reopen_job(const std::string& name) {
  KENNEL_RETURN_IF_ERROR(check_writable());
  Statement update(db_,
                   "UPDATE jobs SET status = 'InProgress', failure_reason = '', ended_at = 0, "
                   "heartbeat_at = ?2, pid = ?3, host = ?4 WHERE name = ?1");
  if (!update.ok()) return update.error("preparing update");
  update.bind(1, name).bind(2, unix_now()).bind(3, static_cast<int64_t>(::getpid())).bind(4, host_name());
  if (update.step() != SQLITE_DONE) return update.error(fmt::format("reopening job '{}'", name));
  if (sqlite3_changes(db_) == 0) return not_found("no job named '{}'", name);
  return {};
}

Status JobRegistry::heartbeat(const std::string& name) {
  KENNEL_RETURN_IF_ERROR(check_writable());
  Statement update(db_, "UPDATE jobs SET heartbeat_at = ?2 WHERE name = ?1");
  if (!update.ok()) return update.error("preparing update");
  update.bind(1, name).bind(2, unix_now());
  if (update.step() != SQLITE_DONE) return update.error(fmt::format("heartbeat of job '{}'", name));
  return {};
}

Status JobRegistry::set_final_metrics(const std::string& name, const std::string& metrics_json) {
  KENNEL_RETURN_IF_ERROR(check_writable());
  Statement update(db_, "UPDATE jobs SET final_metrics_json = ?2 WHERE name = ?1");
  if (!update.ok()) return update.error("preparing update");
  update.bind(1, name).bind(2, metrics_json);
  if (update.step() != SQLITE_DONE) return update.error(fmt::format("metrics of job '{}'", name));
  return {};
}

Status JobRegistry::set_artifacts(const std::string& name, const std::string& artifacts_json) {
  KENNEL_RETURN_IF_ERROR(check_writable());
  Statement update(db_, "UPDATE jobs SET artifacts_json = ?2 WHERE name = ?1");
  if (!update.ok()) return update.error("preparing update");
  update.bind(1, name).bind(2, artifacts_json);
  if (update.step() != SQLITE_DONE) return update.error(fmt::format("artifacts of job '{}'", name));
  return {};
}

std::string JobRegistry::stale_reason(const JobRecord& record, double now) const {
  if (record.status != JobStatus::kInProgress) return "";
  // On this host a dead pid is proof enough; elsewhere only a stale heartbeat.
  if (record.host == host_name() && !process_alive(record.pid)) {
    return fmt::format("the job's process (pid {}) died without recording an outcome", record.pid);
  }
  if (now - record.heartbeat_at > stale_after_seconds_) {
    return fmt::format("no heartbeat for {:.0f} s: the job's process died or hung", now - record.heartbeat_at);
  }
  return "";
}

void JobRegistry::settle_stale(JobRecord& record, double now) const {
  const std::string reason = stale_reason(record, now);
  if (reason.empty()) return;
  record.status = JobStatus::kFailed;
  record.failure_reason = reason;
  record.ended_at = record.heartbeat_at;
}

Status JobRegistry::mark_stale_jobs() {
  if (read_only_) return {};  // readers settle stale rows in memory (settle_stale)
  Statement select(db_, "SELECT name, heartbeat_at, pid, host FROM jobs WHERE status = 'InProgress'");
  if (!select.ok()) return select.error("preparing select");
  const double now = unix_now();
  std::vector<std::pair<std::string, std::string>> dead;
  while (select.step() == SQLITE_ROW) {
    JobRecord row;
    row.heartbeat_at = select.real(1);
    row.pid = select.integer(2);
    row.host = select.text(3);
    if (std::string reason = stale_reason(row, now); !reason.empty()) dead.emplace_back(select.text(0), reason);
  }
  for (const auto& [name, reason] : dead) {
    Statement update(db_,
                     "UPDATE jobs SET status = 'Failed', failure_reason = ?2, ended_at = heartbeat_at "
                     "WHERE name = ?1 AND status = 'InProgress'");
    update.bind(1, name).bind(2, reason);
    if (update.step() != SQLITE_DONE) return update.error(fmt::format("marking job '{}' failed", name));
  }
  return {};
}

Result<JobRecord> JobRegistry::get_job(const std::string& name) {
  KENNEL_RETURN_IF_ERROR(mark_stale_jobs());
  Statement select(db_, (std::string(kSelectColumns) + " WHERE name = ?1").c_str());
  if (!select.ok()) return select.error("preparing select");
  select.bind(1, name);
  if (select.step() != SQLITE_ROW) {
    return not_found("no job named '{}' in {} (see `kennel jobs list`)", name, path_.string());
  }
  JobRecord record = read_record(select);
  if (read_only_) settle_stale(record, unix_now());
  return record;
}

Result<std::vector<JobRecord>> JobRegistry::list_jobs(const JobFilter& filter) {
  KENNEL_RETURN_IF_ERROR(mark_stale_jobs());
  // A read-only registry settles dead jobs after the query: an InProgress row may turn out
  // Failed, so it is read whatever the status asked for, and the filter and limit apply after.
  const bool settle_after = read_only_ && filter.status.has_value();
  std::string sql = std::string(kSelectColumns) +
                    " WHERE (?1 = '' OR kind = ?1) AND (?2 = '' OR parent = ?2) AND (?3 = '' OR status = ?3" +
                    (settle_after ? " OR status = 'InProgress'" : "") +
                    ") AND (?4 = '' OR instr(name, ?4) > 0) ORDER BY created_at DESC, name";
  if (filter.limit > 0 && !settle_after) sql += fmt::format(" LIMIT {}", filter.limit);
  Statement select(db_, sql.c_str());
  if (!select.ok()) return select.error("preparing select");
  select.bind(1, filter.kind).bind(2, filter.parent)
      .bind(3, filter.status ? std::string(job_status_name(*filter.status)) : std::string())
      .bind(4, filter.name_contains);
  std::vector<JobRecord> records;
  int rc;
  const double now = unix_now();
  while ((rc = select.step()) == SQLITE_ROW) {
    records.push_back(read_record(select));
    if (read_only_) settle_stale(records.back(), now);
  }
  if (rc != SQLITE_DONE) return select.error("listing jobs");
  if (settle_after) {
    std::erase_if(records, [&](const JobRecord& record) { return record.status != *filter.status; });
    if (filter.limit > 0 && static_cast<int64_t>(records.size()) > filter.limit) records.resize(filter.limit);
  }
  return records;
}

Status request_stop(const JobRecord& job) {
  if (job.status != JobStatus::kInProgress) {
    return failed_precondition("job '{}' is not running (status {})", job.name, job_status_name(job.status));
  }
  if (job.host != host_name()) {
    return failed_precondition("job '{}' runs on host '{}': stop it there", job.name, job.host);
  }
  if (job.pid <= 0 || ::kill(static_cast<pid_t>(job.pid), SIGTERM) != 0) {
    return failed_precondition("cannot signal job '{}' (pid {}): {}", job.name, job.pid,
                               job.pid <= 0 ? "no process recorded" : std::strerror(errno));
  }
  return {};
}

}  // namespace kennel::store

// The schemas and the job registry half of SqlStore.
#include "kennel/store/detail/sql_store.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include <fmt/format.h>

namespace kennel::store::detail {

namespace {

// Version 1 is the registry Kennel has always had; version 2 adds studies and
// trials (the shared tuning state). Column meanings: docs/tuning.md.
const char* const kSqliteJobs = R"sql(CREATE TABLE IF NOT EXISTS jobs (
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
))sql";

const char* const kSqliteStudies = R"sql(CREATE TABLE IF NOT EXISTS studies (
  name TEXT PRIMARY KEY,
  spec_json TEXT NOT NULL,
  max_jobs INTEGER NOT NULL,
  max_parallel_jobs INTEGER NOT NULL,
  max_retries INTEGER NOT NULL,
  lease_seconds REAL NOT NULL,
  requeue_grace_seconds REAL NOT NULL,
  exhausted INTEGER NOT NULL DEFAULT 0,
  created_at REAL NOT NULL
))sql";

const char* const kSqliteTrials = R"sql(CREATE TABLE IF NOT EXISTS trials (
  study TEXT NOT NULL,
  idx INTEGER NOT NULL,
  name TEXT NOT NULL,
  hyperparameters_json TEXT NOT NULL,
  source TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL,
  early_stopped INTEGER NOT NULL DEFAULT 0,
  reason TEXT NOT NULL DEFAULT '',
  objective REAL,
  intermediate_json TEXT NOT NULL DEFAULT '[]',
  epochs_run INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0,
  token TEXT NOT NULL DEFAULT '',
  worker TEXT NOT NULL DEFAULT '',
  host TEXT NOT NULL DEFAULT '',
  launch_id TEXT NOT NULL DEFAULT '',
  lease_expires_at REAL NOT NULL DEFAULT 0,
  heartbeat_at REAL NOT NULL DEFAULT 0,
  started_at REAL NOT NULL DEFAULT 0,
  ended_at REAL NOT NULL DEFAULT 0,
  PRIMARY KEY (study, idx)
))sql";

const char* const kPostgresJobs = R"sql(CREATE TABLE IF NOT EXISTS kennel_jobs (
  name TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  parent TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL,
  failure_reason TEXT NOT NULL DEFAULT '',
  spec_json TEXT NOT NULL DEFAULT '{}',
  job_dir TEXT NOT NULL DEFAULT '',
  created_at DOUBLE PRECISION NOT NULL,
  started_at DOUBLE PRECISION NOT NULL DEFAULT 0,
  ended_at DOUBLE PRECISION NOT NULL DEFAULT 0,
  heartbeat_at DOUBLE PRECISION NOT NULL DEFAULT 0,
  pid BIGINT NOT NULL DEFAULT 0,
  host TEXT NOT NULL DEFAULT '',
  final_metrics_json TEXT NOT NULL DEFAULT '{}',
  artifacts_json TEXT NOT NULL DEFAULT '{}'
))sql";

const char* const kPostgresStudies = R"sql(CREATE TABLE IF NOT EXISTS kennel_studies (
  name TEXT PRIMARY KEY,
  spec_json TEXT NOT NULL,
  max_jobs BIGINT NOT NULL,
  max_parallel_jobs BIGINT NOT NULL,
  max_retries BIGINT NOT NULL,
  lease_seconds DOUBLE PRECISION NOT NULL,
  requeue_grace_seconds DOUBLE PRECISION NOT NULL,
  exhausted BIGINT NOT NULL DEFAULT 0,
  created_at DOUBLE PRECISION NOT NULL
))sql";

const char* const kPostgresTrials = R"sql(CREATE TABLE IF NOT EXISTS kennel_trials (
  study TEXT NOT NULL REFERENCES kennel_studies(name) ON DELETE CASCADE,
  idx BIGINT NOT NULL,
  name TEXT NOT NULL,
  hyperparameters_json TEXT NOT NULL,
  source TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL,
  early_stopped BIGINT NOT NULL DEFAULT 0,
  reason TEXT NOT NULL DEFAULT '',
  objective DOUBLE PRECISION,
  intermediate_json TEXT NOT NULL DEFAULT '[]',
  epochs_run BIGINT NOT NULL DEFAULT 0,
  attempts BIGINT NOT NULL DEFAULT 0,
  token TEXT NOT NULL DEFAULT '',
  worker TEXT NOT NULL DEFAULT '',
  host TEXT NOT NULL DEFAULT '',
  launch_id TEXT NOT NULL DEFAULT '',
  lease_expires_at DOUBLE PRECISION NOT NULL DEFAULT 0,
  heartbeat_at DOUBLE PRECISION NOT NULL DEFAULT 0,
  started_at DOUBLE PRECISION NOT NULL DEFAULT 0,
  ended_at DOUBLE PRECISION NOT NULL DEFAULT 0,
  PRIMARY KEY (study, idx)
))sql";

constexpr const char* kJobColumns =
    "name, kind, parent, status, failure_reason, spec_json, job_dir, created_at, started_at, ended_at, "
    "heartbeat_at, pid, host, final_metrics_json, artifacts_json";
constexpr size_t kJobColumnCount = 15;  // a query's next column comes after these

JobRecord read_job(const SqlRow& row) {
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

int64_t owner_pid(const JobRecord& record) {
  if (record.pid == JobRecord::kNoOwner) return 0;
  return record.pid > 0 ? record.pid : static_cast<int64_t>(::getpid());
}

}  // namespace

const Schema& sqlite_schema() {
  static const Schema schema{"schema_version", "",
                             "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
                             {{1, {kSqliteJobs, "CREATE INDEX IF NOT EXISTS jobs_parent ON jobs(parent)"}},
                              {2, {kSqliteStudies, kSqliteTrials}}}};
  return schema;
}

const Schema& postgres_schema() {
  // A fixed advisory-lock key: workers that open a new database together migrate it once.
  static const Schema schema{
      "kennel_schema_version",
      "SELECT pg_advisory_xact_lock(7316851)",
      "SELECT CASE WHEN to_regclass(CAST($1 AS TEXT)) IS NULL THEN 0 ELSE 1 END",
      {{1, {kPostgresJobs, "CREATE INDEX IF NOT EXISTS kennel_jobs_parent ON kennel_jobs(parent)"}},
       {2, {kPostgresStudies, kPostgresTrials}}}};
  return schema;
}

Result<std::unique_ptr<SqlStore>> SqlStore::open(StoreLocation location, std::unique_ptr<SqlConnection> connection,
                                                 const Schema& schema) {
  std::unique_ptr<SqlStore> store(new SqlStore(std::move(location), std::move(connection), /*read_only=*/false));
  KENNEL_RETURN_IF_ERROR(store->migrate(schema));
  store->schema_version_ = schema.latest();
  return store;
}

Result<std::unique_ptr<SqlStore>> SqlStore::open_read_only(StoreLocation location,
                                                           std::unique_ptr<SqlConnection> connection,
                                                           const Schema& schema) {
  std::unique_ptr<SqlStore> store(new SqlStore(std::move(location), std::move(connection), /*read_only=*/true));
  KENNEL_RETURN_IF_ERROR(store->check_schema(schema));
  return store;
}

Status SqlStore::check_schema(const Schema& schema) {
  auto exists = db_->query_retried(schema.table_exists, {schema.version_table});
  if (!exists.ok()) {
    if (exists.status().code() == ErrorCode::kUnavailable) return exists.status();
    return Status(ErrorCode::kDataLoss, fmt::format("the store {} is not a Kennel store: {}", describe(),
                                                    exists.status().message()));
  }
  if (exists->empty() || exists->front().integer(0) == 0) {
    return not_found("the store {} has no Kennel tables yet: no job has run with it", describe());
  }
  auto current = db_->query_retried(fmt::format("SELECT COALESCE(MAX(version), 0) FROM {}", schema.version_table));
  if (!current.ok()) return current.status();
  schema_version_ = static_cast<int>(current->empty() ? 0 : current->front().integer(0));
  if (schema_version_ > schema.latest()) {
    return failed_precondition("the store {} has schema version {}, newer than this kennel understands ({}): "
                               "upgrade kennel",
                               describe(), schema_version_, schema.latest());
  }
  return {};
}

Status SqlStore::check_writable() const {
  if (!read_only()) return {};
  return failed_precondition("the store {} was opened read-only: this reader never writes to it", describe());
}

Status SqlStore::migrate(const Schema& schema) {
  return db_->transaction([&]() -> Status {
    if (!schema.lock_statement.empty()) {
      auto locked = db_->query(schema.lock_statement);
      if (!locked.ok()) return locked.status();
    }
    auto created = db_->execute(fmt::format("CREATE TABLE IF NOT EXISTS {} (version INTEGER NOT NULL)",
                                            schema.version_table));
    if (!created.ok()) return created.status();
    auto current = db_->query(fmt::format("SELECT COALESCE(MAX(version), 0) FROM {}", schema.version_table));
    if (!current.ok()) return current.status();
    const int64_t version = current->empty() ? 0 : (*current)[0].integer(0);
    if (version > schema.latest()) {
      return failed_precondition("the store {} has schema version {}, newer than this kennel understands ({}): "
                                 "upgrade kennel",
                                 describe(), version, schema.latest());
    }
    for (const auto& migration : schema.migrations) {
      if (migration.version <= version) continue;
      for (const auto& statement : migration.statements) {
        auto applied = db_->execute(statement);
        if (!applied.ok()) return applied.status().with_context(fmt::format("schema version {}", migration.version));
      }
      auto recorded = db_->execute(fmt::format("INSERT INTO {}(version) VALUES ($1)", schema.version_table),
                                   {static_cast<int64_t>(migration.version)});
      if (!recorded.ok()) return recorded.status();
    }
    return {};
  });
}

std::string SqlStore::describe() const {
  return location().kind == StoreLocation::Kind::kPostgres ? location().display()
                                                            : fmt::format("'{}'", location().sqlite_path.string());
}

Status SqlStore::insert_job(const JobRecord& record) {
  auto inserted = db_->execute(
      "INSERT INTO {jobs}(name, kind, parent, status, failure_reason, spec_json, job_dir, created_at, started_at, "
      "heartbeat_at, pid, host) VALUES ($1, $2, $3, $4, $5, $6, $7, {now}, {now}, {now}, $8, $9)",
      {record.name, record.kind, record.parent, std::string(job_status_name(record.status)), record.failure_reason,
       record.spec_json, record.job_dir, owner_pid(record), record.host.empty() ? this_host() : record.host});
  if (!inserted.ok() && db_->last_error_was_unique_violation()) {
    return Status(ErrorCode::kAlreadyExists,
                  fmt::format("a job named '{}' already exists: choose another --name, or resume it with --resume {}",
                              record.name, record.name));
  }
  return inserted.status();
}

Status SqlStore::create_job(const JobRecord& record) {
  KENNEL_RETURN_IF_ERROR(check_writable());
  return db_->transaction([&] { return insert_job(record); });
}

Status SqlStore::replace_job(const JobRecord& record) {
  KENNEL_RETURN_IF_ERROR(check_writable());
  return db_->transaction([&]() -> Status {
    auto updated = db_->execute(
        "UPDATE {jobs} SET kind = $2, parent = $3, status = $4, failure_reason = $5, spec_json = $6, job_dir = $7, "
        "started_at = {now}, ended_at = 0, heartbeat_at = {now}, pid = $8, host = $9, final_metrics_json = '{}', "
        "artifacts_json = '{}' WHERE name = $1",
        {record.name, record.kind, record.parent, std::string(job_status_name(record.status)), record.failure_reason,
         record.spec_json, record.job_dir, owner_pid(record), record.host.empty() ? this_host() : record.host});
    if (!updated.ok()) return updated.status();
    if (*updated > 0) return {};
    return insert_job(record);
  });
}

Status SqlStore::set_status(const std::string& name, JobStatus status, const std::string& reason) {
  KENNEL_RETURN_IF_ERROR(check_writable());
  const bool terminal = status != JobStatus::kInProgress;
  auto updated = db_->execute_retried(
      terminal ? "UPDATE {jobs} SET status = $2, failure_reason = $3, ended_at = {now}, heartbeat_at = {now} "
                 "WHERE name = $1"
               : "UPDATE {jobs} SET status = $2, failure_reason = $3, ended_at = 0, heartbeat_at = {now} "
                 "WHERE name = $1",
      {name, std::string(job_status_name(status)), reason});
  if (!updated.ok()) return updated.status().with_context(fmt::format("updating job '{}'", name));
  if (*updated == 0) return not_found("no job named '{}'", name);
  return {};
}

Status SqlStore::reopen_job(const std::string& name) {
  KENNEL_RETURN_IF_ERROR(check_writable());
  auto updated = db_->execute_retried(
      "UPDATE {jobs} SET status = 'InProgress', failure_reason = '', ended_at = 0, heartbeat_at = {now}, pid = $2, "
      "host = $3 WHERE name = $1",
      {name, static_cast<int64_t>(::getpid()), this_host()});
  if (!updated.ok()) return updated.status().with_context(fmt::format("reopening job '{}'", name));
  if (*updated == 0) return not_found("no job named '{}'", name);
  return {};
}

Status SqlStore::heartbeat(const std::string& name) {
  KENNEL_RETURN_IF_ERROR(check_writable());
  return db_->execute_retried("UPDATE {jobs} SET heartbeat_at = {now} WHERE name = $1", {name}).status();
}

Status SqlStore::set_final_metrics(const std::string& name, const std::string& metrics_json) {
  KENNEL_RETURN_IF_ERROR(check_writable());
  return db_->execute_retried("UPDATE {jobs} SET final_metrics_json = $2 WHERE name = $1", {name, metrics_json})
      .status();
}

Status SqlStore::set_artifacts(const std::string& name, const std::string& artifacts_json) {
  KENNEL_RETURN_IF_ERROR(check_writable());
  return db_->execute_retried("UPDATE {jobs} SET artifacts_json = $2 WHERE name = $1", {name, artifacts_json})
      .status();
}

std::string SqlStore::stale_reason(const std::string& host, int64_t pid, double silent_seconds) const {
  // pid 0: no process owns the row (a study waiting for its workers).
  if (pid == 0) return "";
  // On this host a dead pid is proof enough; elsewhere only a stale heartbeat.
  if (host == this_host() && !process_alive(pid)) {
    return fmt::format("the job's process (pid {}) died without recording an outcome", pid);
  }
  if (silent_seconds > stale_after_seconds_) {
    return fmt::format("no heartbeat for {:.0f} s: the job's process died or hung", silent_seconds);
  }
  return "";
}

void SqlStore::settle_stale(JobRecord& record, double silent_seconds) const {
  if (record.status != JobStatus::kInProgress) return;
  std::string reason = stale_reason(record.host, record.pid, silent_seconds);
  if (reason.empty()) return;
  // What mark_stale_jobs would write.
  record.status = JobStatus::kFailed;
  record.failure_reason = std::move(reason);
  record.ended_at = record.heartbeat_at;
}

Status SqlStore::mark_stale_jobs() {
  if (read_only()) return {};  // a reader settles stale rows in memory (settle_stale)
  // Read first, without the write lock: stale rows are rare, reads are not.
  auto rows = db_->query_retried(
      "SELECT name, {now} - heartbeat_at, pid, host FROM {jobs} WHERE status = 'InProgress' AND pid <> 0");
  if (!rows.ok()) return rows.status();
  for (const auto& row : *rows) {
    const int64_t pid = row.integer(2);
    const std::string reason = stale_reason(row.text(3), pid, row.real(1));
    if (reason.empty()) continue;
    // The pid condition: a job re-opened meanwhile by a live process stays as it is.
    auto updated = db_->execute_retried(
        "UPDATE {jobs} SET status = 'Failed', failure_reason = $2, ended_at = heartbeat_at "
        "WHERE name = $1 AND status = 'InProgress' AND pid = $3",
        {row.text(0), reason, pid});
    if (!updated.ok()) return updated.status();
  }
  return {};
}

Result<JobRecord> SqlStore::get_job(const std::string& name) {
  KENNEL_RETURN_IF_ERROR(mark_stale_jobs());
  auto rows = db_->query_retried(
      fmt::format("SELECT {}, {{now}} - heartbeat_at FROM {{jobs}} WHERE name = $1", kJobColumns), {name});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return not_found("no job named '{}' in {} (see `kennel jobs list`)", name, describe());
  JobRecord record = read_job(rows->front());
  if (read_only()) settle_stale(record, rows->front().real(kJobColumnCount));
  return record;
}

Result<std::vector<JobRecord>> SqlStore::list_jobs(const JobFilter& filter) {
  KENNEL_RETURN_IF_ERROR(mark_stale_jobs());
  std::string contains = db_->dialect().contains;
  contains.replace(contains.find("{a}"), 3, "name");
  contains.replace(contains.find("{b}"), 3, "$4");
  // A read-only store settles dead jobs after the query: an InProgress row may
  // turn out Failed, so it is read whatever status was asked for, and the
  // status filter and the limit apply to what is reported.
  const bool settle_after = read_only() && filter.status.has_value();
  std::string sql = fmt::format(
      "SELECT {}, {{now}} - heartbeat_at FROM {{jobs}} WHERE (CAST($1 AS TEXT) = '' OR kind = $1) "
      "AND (CAST($2 AS TEXT) = '' OR parent = $2) AND (CAST($3 AS TEXT) = '' OR status = $3{}) "
      "AND (CAST($4 AS TEXT) = '' OR {}) ORDER BY created_at DESC, name",
      kJobColumns, settle_after ? " OR status = 'InProgress'" : "", contains);
  if (filter.limit > 0 && !settle_after) sql += fmt::format(" LIMIT {}", filter.limit);
  auto rows = db_->query_retried(
      sql, {filter.kind, filter.parent,
            filter.status ? std::string(job_status_name(*filter.status)) : std::string(), filter.name_contains});
  if (!rows.ok()) return rows.status().with_context("listing jobs");
  std::vector<JobRecord> records;
  records.reserve(rows->size());
  for (const auto& row : *rows) {
    records.push_back(read_job(row));
    if (read_only()) settle_stale(records.back(), row.real(kJobColumnCount));
  }
  if (settle_after) {
    std::erase_if(records, [&](const JobRecord& record) { return record.status != *filter.status; });
    if (filter.limit > 0 && static_cast<int64_t>(records.size()) > filter.limit) {
      records.resize(static_cast<size_t>(filter.limit));
    }
  }
  return records;
}

}  // namespace kennel::store::detail

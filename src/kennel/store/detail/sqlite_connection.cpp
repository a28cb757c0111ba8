#include "kennel/store/detail/sqlite_connection.h"

#include <sqlite3.h>

#include <chrono>
#include <random>
#include <thread>

#include <fmt/format.h>

namespace kennel::store::detail {

namespace {

bool busy(int rc) {
  const int primary = rc & 0xff;
  return primary == SQLITE_BUSY || primary == SQLITE_LOCKED;
}

// Waits for another process's write lock in steps of about a millisecond, for
// up to ~30 s. sqlite3_busy_timeout() sleeps 1, 2, 5, ... up to 100 ms between
// tries, so sixteen claiming workers formed a convoy of sleepers (35 claims/s,
// p99 220 ms in bench/store_bench.cpp); short jittered sleeps keep the lock busy.
int wait_for_lock(void*, int tries) {
  if (tries >= 30'000) return 0;
  thread_local std::mt19937 jitter(std::random_device{}());
  std::this_thread::sleep_for(std::chrono::microseconds(500 + jitter() % 1000));
  return 1;
}

}  // namespace

SqliteConnection::SqliteConnection(sqlite3* db, std::filesystem::path path) : db_(db), path_(std::move(path)) {
  dialect_.jobs_table = "jobs";
  dialect_.studies_table = "studies";
  dialect_.trials_table = "trials";
  // julianday() has millisecond resolution, like the clock the lease needs.
  dialect_.now_expression = "((julianday('now') - 2440587.5) * 86400.0)";
  dialect_.contains = "instr({a}, {b}) > 0";
  dialect_.lock_study = "";  // BEGIN IMMEDIATE already holds the write lock
}

Result<std::unique_ptr<SqliteConnection>> SqliteConnection::open(const std::filesystem::path& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    Status status(ErrorCode::kPermissionDenied,
                  fmt::format("cannot open the job registry '{}': {} (check that --home is writable)",
                              path.string(), db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
    sqlite3_close(db);
    return status;
  }
  sqlite3_extended_result_codes(db, 1);
  std::unique_ptr<SqliteConnection> connection(new SqliteConnection(db, path));
  sqlite3_busy_handler(db, wait_for_lock, nullptr);
  // Processes opening a new file at once race for the switch to WAL; SQLite may
  // answer SQLITE_BUSY there without waiting on its busy handler.
  Status wal;
  for (int attempt = 0; attempt < 200; ++attempt) {
    wal = connection->exec_script("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;");
    if (wal.code() != ErrorCode::kUnavailable) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  KENNEL_RETURN_IF_ERROR(wal.with_context(fmt::format("opening '{}'", path.string())));
  return connection;
}

Result<std::unique_ptr<SqliteConnection>> SqliteConnection::open_read_only(const std::filesystem::path& path,
                                                                           double busy_timeout_seconds) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    Status status(ErrorCode::kPermissionDenied,
                  fmt::format("cannot open the job registry '{}' for reading: {}", path.string(),
                              db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
    sqlite3_close(db);
    return status;
  }
  sqlite3_extended_result_codes(db, 1);
  std::unique_ptr<SqliteConnection> connection(new SqliteConnection(db, path));
  // SQLite's own timeout, not wait_for_lock: a reader gives up soon rather than queue with the writers.
  sqlite3_busy_timeout(db, static_cast<int>(busy_timeout_seconds * 1000));
  connection->busy_retries_ = 0;
  return connection;
}

SqliteConnection::~SqliteConnection() {
  for (auto& [sql, statement] : statements_) sqlite3_finalize(statement);
  sqlite3_close(db_);
}

Status SqliteConnection::error(const std::string& what, int rc) {
  const int extended = sqlite3_extended_errcode(db_);
  unique_violation_ = extended == SQLITE_CONSTRAINT_PRIMARYKEY || extended == SQLITE_CONSTRAINT_UNIQUE;
  return Status(busy(rc) ? ErrorCode::kUnavailable : ErrorCode::kInternal,
                fmt::format("job registry '{}': {}: {}", path_.string(), what, sqlite3_errmsg(db_)));
}

Status SqliteConnection::exec_script(const std::string& sql) {
  char* message = nullptr;
  if (const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message); rc != SQLITE_OK) {
    Status status(busy(rc) ? ErrorCode::kUnavailable : ErrorCode::kInternal,
                  fmt::format("job registry '{}': {}", path_.string(), message ? message : sqlite3_errstr(rc)));
    sqlite3_free(message);
    return status;
  }
  return {};
}

Result<sqlite3_stmt*> SqliteConnection::prepare(std::string_view sql, const std::vector<SqlValue>& params) {
  sqlite3_stmt* statement = nullptr;
  if (auto cached = statements_.find(sql); cached != statements_.end()) {
    statement = cached->second;
  } else {
    const std::string expanded = dialect_.expand(sql);
    const int rc = sqlite3_prepare_v2(db_, expanded.c_str(), -1, &statement, nullptr);
    if (rc != SQLITE_OK) return error(fmt::format("preparing `{}`", expanded), rc);
    statements_.emplace(std::string(sql), statement);
  }
  sqlite3_reset(statement);
  sqlite3_clear_bindings(statement);
  for (size_t i = 0; i < params.size(); ++i) {
    const int index = sqlite3_bind_parameter_index(statement, fmt::format("${}", i + 1).c_str());
    if (index == 0) continue;  // a parameter the statement does not use
    const SqlValue& value = params[i];
    if (const auto* integer = std::get_if<int64_t>(&value)) {
      sqlite3_bind_int64(statement, index, *integer);
    } else if (const auto* real = std::get_if<double>(&value)) {
      sqlite3_bind_double(statement, index, *real);
    } else if (const auto* text = std::get_if<std::string>(&value)) {
      sqlite3_bind_text(statement, index, text->data(), static_cast<int>(text->size()), SQLITE_TRANSIENT);
    } else {
      sqlite3_bind_null(statement, index);
    }
  }
  return statement;
}

Result<SqlRows> SqliteConnection::query(std::string_view sql, const std::vector<SqlValue>& params) {
  auto statement = prepare(sql, params);
  if (!statement.ok()) return statement.status();
  SqlRows rows;
  int rc;
  while ((rc = sqlite3_step(*statement)) == SQLITE_ROW) {
    const int columns = sqlite3_column_count(*statement);
    std::vector<SqlValue> cells;
    cells.reserve(static_cast<size_t>(columns));
    for (int c = 0; c < columns; ++c) {
      switch (sqlite3_column_type(*statement, c)) {
        case SQLITE_INTEGER: cells.emplace_back(static_cast<int64_t>(sqlite3_column_int64(*statement, c))); break;
        case SQLITE_FLOAT: cells.emplace_back(sqlite3_column_double(*statement, c)); break;
        case SQLITE_NULL: cells.emplace_back(std::monostate{}); break;
        default: {
          const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(*statement, c));
          cells.emplace_back(std::string(text ? text : ""));
        }
      }
    }
    rows.emplace_back(std::move(cells));
  }
  sqlite3_reset(*statement);
  if (rc != SQLITE_DONE) return error("query", rc);
  return rows;
}

Result<int64_t> SqliteConnection::execute(std::string_view sql, const std::vector<SqlValue>& params) {
  auto statement = prepare(sql, params);
  if (!statement.ok()) return statement.status();
  const int rc = sqlite3_step(*statement);
  sqlite3_reset(*statement);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return error("statement", rc);
  unique_violation_ = false;
  return static_cast<int64_t>(sqlite3_changes(db_));
}

Status SqliteConnection::transaction(const std::function<Status()>& body, bool write) {
  if (in_transaction_) return body();  // nested: part of the outer one
  for (int attempt = 0;; ++attempt) {
    Status status = exec_script(write ? "BEGIN IMMEDIATE" : "BEGIN");
    if (status.ok()) {
      in_transaction_ = true;
      status = body();
      in_transaction_ = false;
      if (status.ok()) status = exec_script("COMMIT");
      if (!status.ok()) (void)exec_script("ROLLBACK");
    }
    // Busy beyond the busy timeout (30 s) is rare; a few more tries cost little.
    if (status.ok() || status.code() != ErrorCode::kUnavailable || attempt >= busy_retries_) return status;
    std::this_thread::sleep_for(std::chrono::milliseconds(50 << attempt));
  }
}

}  // namespace kennel::store::detail

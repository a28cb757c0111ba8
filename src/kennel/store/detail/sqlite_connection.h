// SqlConnection on an SQLite file: WAL mode, a ~30 s wait for a busy lock, prepared
// statements cached per SQL text, BEGIN IMMEDIATE for write transactions (the
// whole database's write lock: what makes a claim atomic on one host). Or the
// same file opened read-only, with a short wait, for a dashboard.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "kennel/store/detail/sql_connection.h"

struct sqlite3;
struct sqlite3_stmt;

namespace kennel::store::detail {

class SqliteConnection final : public SqlConnection {
 public:
  // Opens (creating) the file. Errors name it and say what to check.
  static Result<std::unique_ptr<SqliteConnection>> open(const std::filesystem::path& path);
  // Opens an existing file for reading only (SQLITE_OPEN_READONLY: no WAL
  // switch, no schema change). A statement waits at most `busy_timeout_seconds`
  // for a writer's lock and is not retried after it: kUnavailable.
  static Result<std::unique_ptr<SqliteConnection>> open_read_only(const std::filesystem::path& path,
                                                                  double busy_timeout_seconds);
  ~SqliteConnection() override;

  Result<SqlRows> query(std::string_view sql, const std::vector<SqlValue>& params = {}) override;
  Result<int64_t> execute(std::string_view sql, const std::vector<SqlValue>& params = {}) override;
  Status transaction(const std::function<Status()>& body, bool write = true) override;
  const SqlDialect& dialect() const override { return dialect_; }
  bool last_error_was_unique_violation() const override { return unique_violation_; }

 private:
  SqliteConnection(sqlite3* db, std::filesystem::path path);
  Status exec_script(const std::string& sql);
  Result<sqlite3_stmt*> prepare(std::string_view sql, const std::vector<SqlValue>& params);
  Status error(const std::string& what, int rc);

  sqlite3* db_;
  std::filesystem::path path_;
  std::map<std::string, sqlite3_stmt*, std::less<>> statements_;
  SqlDialect dialect_;
  bool unique_violation_ = false;
  bool in_transaction_ = false;
  int busy_retries_ = 5;  // transactions run again after a busy timeout (0: read-only, answer at once)
};

}  // namespace kennel::store::detail

// What the store needs from a SQL database, so its logic is written once for
// SQLite and PostgreSQL: parameterised statements ($1, $2, ... in both),
// typed values, and a transaction that holds the write lock and is retried
// whole on transient failures (SQLite busy; PostgreSQL serialization
// failures, deadlocks, lock timeouts and lost connections, with back-off).
// The dialect fills the few differences into the SQL text: table names, the
// clock, text search, and row locks. Thread-safety: one connection per thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kennel/util/status.h"

namespace kennel::store::detail {

using SqlValue = std::variant<std::monostate, int64_t, double, std::string>;

// One row of a result: SQLite gives typed cells, PostgreSQL text; the
// accessors convert either way (exactly: doubles travel as shortest round-trip text).
class SqlRow {
 public:
  explicit SqlRow(std::vector<SqlValue> cells) : cells_(std::move(cells)) {}
  bool is_null(size_t column) const;
  std::string text(size_t column) const;
  double real(size_t column) const;
  int64_t integer(size_t column) const;
  size_t size() const { return cells_.size(); }

 private:
  std::vector<SqlValue> cells_;
};
using SqlRows = std::vector<SqlRow>;

struct SqlDialect {
  std::string jobs_table, studies_table, trials_table;
  std::string now_expression;  // the database's clock as Unix seconds
  std::string contains;        // "instr({a}, {b}) > 0" style, with {a} and {b}
  std::string lock_study;      // "" (the transaction already locks) or " FOR UPDATE"
  // Replaces {jobs}, {studies}, {trials}, {now} and {for_update} in `sql`.
  std::string expand(std::string_view sql) const;
};

class SqlConnection {
 public:
  virtual ~SqlConnection() = default;
  virtual Result<SqlRows> query(std::string_view sql, const std::vector<SqlValue>& params = {}) = 0;
  // The number of rows changed.
  virtual Result<int64_t> execute(std::string_view sql, const std::vector<SqlValue>& params = {}) = 0;
  // Runs `body` in a transaction (`write`: holding the database's write lock
  // from the start, so a read-decide-write body is atomic); a transient
  // failure (see the file comment) rolls back and runs it again, within the
  // retry budget. A body's own non-OK Status rolls back and is returned.
  virtual Status transaction(const std::function<Status()>& body, bool write = true) = 0;
  // One statement on its own (atomic by itself), retried like a transaction.
  Result<SqlRows> query_retried(std::string_view sql, const std::vector<SqlValue>& params = {});
  Result<int64_t> execute_retried(std::string_view sql, const std::vector<SqlValue>& params = {});
  // Runs `body` (one statement) with the transaction's retries but no BEGIN/COMMIT round trips.
  virtual Status retried(const std::function<Status()>& body) { return transaction(body, /*write=*/false); }
  virtual const SqlDialect& dialect() const = 0;
  // Whether the last failure was a unique-key violation (a name taken).
  virtual bool last_error_was_unique_violation() const = 0;
};

}  // namespace kennel::store::detail

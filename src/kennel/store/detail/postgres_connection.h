// SqlConnection on PostgreSQL through libpq (Debian's libpq-dev; a small RAII
// wrapper instead of libpqxx 6.4's older API). Connects with a 5 s timeout and
// TCP keepalives (a dead server or host is noticed in ~10 s, not the kernel's
// two hours); each session sets lock_timeout (10 s) and
// idle_in_transaction_session_timeout (15 s), so a worker frozen inside a
// transaction (SIGSTOP, a stalled VM) cannot hold a study's lock for longer.
// Transient failures — serialization failure, deadlock, lock timeout, a lost
// connection or a server restarting — roll back, reconnect if needed and run
// the transaction again with exponential back-off (0.1 s doubling to 2 s,
// jittered) for up to `retry_seconds`; then kUnavailable naming the server.
#pragma once

#include <memory>
#include <string>

#include "kennel/store/detail/sql_connection.h"

struct pg_conn;

namespace kennel::store::detail {

class PostgresConnection final : public SqlConnection {
 public:
  // `display` is the URL without its password, for messages. `read_only`: a
  // session whose transactions are read-only (default_transaction_read_only).
  static Result<std::unique_ptr<PostgresConnection>> open(const std::string& url, const std::string& display,
                                                          bool read_only = false);
  ~PostgresConnection() override;

  Result<SqlRows> query(std::string_view sql, const std::vector<SqlValue>& params = {}) override;
  Result<int64_t> execute(std::string_view sql, const std::vector<SqlValue>& params = {}) override;
  Status transaction(const std::function<Status()>& body, bool write = true) override;
  Status retried(const std::function<Status()>& body) override;
  const SqlDialect& dialect() const override { return dialect_; }
  bool last_error_was_unique_violation() const override { return last_sqlstate_ == "23505"; }

  // How long one call keeps retrying a lost server before giving up (kUnavailable).
  void set_retry_seconds(double seconds) { retry_seconds_ = seconds; }

 private:
  PostgresConnection(std::string url, std::string display);
  Status connect();
  Status run(std::string_view sql, const std::vector<SqlValue>& params, SqlRows* rows, int64_t* changed);
  bool transient() const;
  Status with_retries(const std::function<Status()>& attempt);

  std::string url_, display_;
  pg_conn* connection_ = nullptr;
  SqlDialect dialect_;
  std::string last_sqlstate_;
  bool connection_lost_ = false;
  bool in_transaction_ = false;
  bool read_only_ = false;
  double retry_seconds_ = 10;
};

}  // namespace kennel::store::detail

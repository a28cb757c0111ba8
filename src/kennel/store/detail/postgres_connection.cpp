#include "kennel/store/detail/postgres_connection.h"

#include <libpq-fe.h>

#include <chrono>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace kennel::store::detail {

namespace {

void ignore_notice(void*, const char*) {}  // "relation already exists, skipping" and the like

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

}  // namespace

PostgresConnection::PostgresConnection(std::string url, std::string display)
    : url_(std::move(url)), display_(std::move(display)) {
  dialect_.jobs_table = "kennel_jobs";
  dialect_.studies_table = "kennel_studies";
  dialect_.trials_table = "kennel_trials";
  dialect_.now_expression = "extract(epoch from clock_timestamp())::double precision";
  dialect_.contains = "strpos({a}, {b}) > 0";
  dialect_.lock_study = " FOR UPDATE";
}

Result<std::unique_ptr<PostgresConnection>> PostgresConnection::open(const std::string& url,
                                                                     const std::string& display, bool read_only) {
  std::unique_ptr<PostgresConnection> connection(new PostgresConnection(url, display));
  connection->read_only_ = read_only;
  KENNEL_RETURN_IF_ERROR(connection->connect());
  return connection;
}

PostgresConnection::~PostgresConnection() {
  if (connection_) PQfinish(connection_);
}

Status PostgresConnection::connect() {
  if (connection_) PQfinish(connection_);
  // The URL is expanded first; the keywords after it fill what it leaves out.
  const char* keywords[] = {"dbname", "connect_timeout", "keepalives", "keepalives_idle",
                            "keepalives_interval", "keepalives_count", "application_name", nullptr};
  const char* values[] = {url_.c_str(), "5", "1", "5", "2", "3", "kennel", nullptr};
  connection_ = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
  if (!connection_ || PQstatus(connection_) != CONNECTION_OK) {
    connection_lost_ = true;
    const std::string why = connection_ ? trimmed(PQerrorMessage(connection_)) : "out of memory";
    return Status(ErrorCode::kUnavailable, fmt::format("cannot connect to the store {}: {}", display_, why));
  }
  PQsetNoticeProcessor(connection_, ignore_notice, nullptr);
  connection_lost_ = false;
  // A read-only session is set again on each reconnection: the server itself refuses its writes.
  const std::string session =
      std::string("SET lock_timeout = '10s'; SET idle_in_transaction_session_timeout = '15s'; "
                  "SET statement_timeout = '60s'") +
      (read_only_ ? "; SET default_transaction_read_only = on" : "");
  PGresult* settings = PQexec(connection_, session.c_str());
  const bool ok = PQresultStatus(settings) == PGRES_COMMAND_OK;
  const std::string why = trimmed(PQresultErrorMessage(settings));
  PQclear(settings);
  if (!ok) return Status(ErrorCode::kUnavailable, fmt::format("store {}: session settings: {}", display_, why));
  return {};
}

Status PostgresConnection::run(std::string_view sql, const std::vector<SqlValue>& params, SqlRows* rows,
                               int64_t* changed) {
  last_sqlstate_.clear();
  if (!connection_ || PQstatus(connection_) != CONNECTION_OK) {
    connection_lost_ = true;
    return Status(ErrorCode::kUnavailable, fmt::format("store {}: not connected", display_));
  }
  const std::string expanded = dialect_.expand(sql);
  std::vector<std::string> texts(params.size());
  std::vector<const char*> values(params.size(), nullptr);
  for (size_t i = 0; i < params.size(); ++i) {
    const SqlValue& value = params[i];
    if (const auto* integer = std::get_if<int64_t>(&value)) {
      texts[i] = std::to_string(*integer);
    } else if (const auto* real = std::get_if<double>(&value)) {
      texts[i] = fmt::format("{}", *real);  // shortest text that reads back exactly
    } else if (const auto* text = std::get_if<std::string>(&value)) {
      texts[i] = *text;
    } else {
      continue;  // NULL
    }
    values[i] = texts[i].c_str();
  }
  PGresult* result = PQexecParams(connection_, expanded.c_str(), static_cast<int>(params.size()), nullptr,
                                  values.data(), nullptr, nullptr, 0);
  const ExecStatusType status = PQresultStatus(result);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
    last_sqlstate_ = state ? state : "";
    const std::string why = trimmed(result ? PQresultErrorMessage(result) : PQerrorMessage(connection_));
    PQclear(result);
    if (PQstatus(connection_) != CONNECTION_OK || last_sqlstate_.empty() || last_sqlstate_.rfind("08", 0) == 0) {
      connection_lost_ = true;
    }
    return Status(transient() ? ErrorCode::kUnavailable : ErrorCode::kInternal,
                  fmt::format("store {}: {}", display_, why.empty() ? "the connection was lost" : why));
  }
  if (rows) {
    const int count = PQntuples(result), columns = PQnfields(result);
    rows->clear();
    rows->reserve(static_cast<size_t>(count));
    for (int r = 0; r < count; ++r) {
      std::vector<SqlValue> cells;
      cells.reserve(static_cast<size_t>(columns));
      for (int c = 0; c < columns; ++c) {
        if (PQgetisnull(result, r, c)) {
          cells.emplace_back(std::monostate{});
        } else {
          cells.emplace_back(std::string(PQgetvalue(result, r, c), static_cast<size_t>(PQgetlength(result, r, c))));
        }
      }
      rows->emplace_back(std::move(cells));
    }
  }
  if (changed) {
    const char* tuples = PQcmdTuples(result);
    *changed = tuples && *tuples ? std::strtoll(tuples, nullptr, 10) : 0;
  }
  PQclear(result);
  return {};
}

bool PostgresConnection::transient() const {
  // 40001 serialization_failure, 40P01 deadlock, 55P03 lock_not_available,
  // 57P01-57P03 the server shutting down or starting, 08* connection exceptions.
  return connection_lost_ || last_sqlstate_ == "40001" || last_sqlstate_ == "40P01" || last_sqlstate_ == "55P03" ||
         last_sqlstate_.rfind("57P0", 0) == 0 || last_sqlstate_.rfind("08", 0) == 0;
}

Result<SqlRows> PostgresConnection::query(std::string_view sql, const std::vector<SqlValue>& params) {
  SqlRows rows;
  KENNEL_RETURN_IF_ERROR(run(sql, params, &rows, nullptr));
  return rows;
}

Result<int64_t> PostgresConnection::execute(std::string_view sql, const std::vector<SqlValue>& params) {
  int64_t changed = 0;
  KENNEL_RETURN_IF_ERROR(run(sql, params, nullptr, &changed));
  return changed;
}

Status PostgresConnection::with_retries(const std::function<Status()>& attempt) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(retry_seconds_);
  double backoff = 0.1;
  std::mt19937 jitter(std::random_device{}());
  for (int tries = 1;; ++tries) {
    Status status;
    if (connection_lost_ || !connection_ || PQstatus(connection_) != CONNECTION_OK) status = connect();
    if (status.ok()) status = attempt();
    if (status.ok() || status.code() != ErrorCode::kUnavailable) return status;
    if (std::chrono::steady_clock::now() + std::chrono::duration<double>(backoff) > deadline) {
      return Status(ErrorCode::kUnavailable,
                    fmt::format("{} (gave up after {} tries in {:.0f} s)", status.message(), tries, retry_seconds_));
    }
    spdlog::debug("store {}: {}; retrying in {:.1f} s", display_, status.message(), backoff);
    std::this_thread::sleep_for(
        std::chrono::duration<double>(backoff * std::uniform_real_distribution<double>(0.5, 1.0)(jitter)));
    backoff = std::min(backoff * 2, 2.0);
  }
}

Status PostgresConnection::transaction(const std::function<Status()>& body, bool write) {
  if (in_transaction_) return body();
  return with_retries([&]() -> Status {
    Status status = run("BEGIN", {}, nullptr, nullptr);
    if (!status.ok()) return status;
    in_transaction_ = true;
    status = body();
    in_transaction_ = false;
    if (status.ok()) status = run("COMMIT", {}, nullptr, nullptr);
    // A failed statement aborts the transaction; ROLLBACK ends it (and fails harmlessly on a lost connection).
    if (!status.ok() && !connection_lost_) (void)run("ROLLBACK", {}, nullptr, nullptr);
    return status;
  });
}

Status PostgresConnection::retried(const std::function<Status()>& body) {
  if (in_transaction_) return body();
  return with_retries(body);  // one statement: atomic on its own (autocommit)
}

}  // namespace kennel::store::detail

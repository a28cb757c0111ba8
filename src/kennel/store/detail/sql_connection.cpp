#include "kennel/store/detail/sql_connection.h"

#include <charconv>
#include <cstdlib>

#include <fmt/format.h>

namespace kennel::store::detail {

namespace {

std::string replace_all(std::string text, std::string_view from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

}  // namespace

bool SqlRow::is_null(size_t column) const {
  return column >= cells_.size() || std::holds_alternative<std::monostate>(cells_[column]);
}

std::string SqlRow::text(size_t column) const {
  if (column >= cells_.size()) return "";
  const SqlValue& cell = cells_[column];
  if (const auto* text = std::get_if<std::string>(&cell)) return *text;
  if (const auto* integer = std::get_if<int64_t>(&cell)) return std::to_string(*integer);
  if (const auto* real = std::get_if<double>(&cell)) return fmt::format("{}", *real);
  return "";
}

double SqlRow::real(size_t column) const {
  if (column >= cells_.size()) return 0;
  const SqlValue& cell = cells_[column];
  if (const auto* real = std::get_if<double>(&cell)) return *real;
  if (const auto* integer = std::get_if<int64_t>(&cell)) return static_cast<double>(*integer);
  if (const auto* text = std::get_if<std::string>(&cell)) return std::strtod(text->c_str(), nullptr);
  return 0;
}

int64_t SqlRow::integer(size_t column) const {
  if (column >= cells_.size()) return 0;
  const SqlValue& cell = cells_[column];
  if (const auto* integer = std::get_if<int64_t>(&cell)) return *integer;
  if (const auto* real = std::get_if<double>(&cell)) return static_cast<int64_t>(*real);
  if (const auto* text = std::get_if<std::string>(&cell)) {
    if (*text == "t") return 1;  // PostgreSQL's boolean text
    if (*text == "f") return 0;
    return std::strtoll(text->c_str(), nullptr, 10);
  }
  return 0;
}

std::string SqlDialect::expand(std::string_view sql) const {
  std::string out(sql);
  out = replace_all(std::move(out), "{jobs}", jobs_table);
  out = replace_all(std::move(out), "{studies}", studies_table);
  out = replace_all(std::move(out), "{trials}", trials_table);
  out = replace_all(std::move(out), "{now}", now_expression);
  out = replace_all(std::move(out), "{for_update}", lock_study);
  return out;
}

Result<SqlRows> SqlConnection::query_retried(std::string_view sql, const std::vector<SqlValue>& params) {
  SqlRows rows;
  KENNEL_RETURN_IF_ERROR(retried([&]() -> Status {
    auto result = query(sql, params);
    if (!result.ok()) return result.status();
    rows = std::move(*result);
    return {};
  }));
  return rows;
}

Result<int64_t> SqlConnection::execute_retried(std::string_view sql, const std::vector<SqlValue>& params) {
  int64_t changed = 0;
  KENNEL_RETURN_IF_ERROR(retried([&]() -> Status {
    auto result = execute(sql, params);
    if (!result.ok()) return result.status();
    changed = *result;
    return {};
  }));
  return changed;
}

}  // namespace kennel::store::detail

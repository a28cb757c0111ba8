// The store's logic on a SqlConnection, written once for both backends: the
// job registry (sql_store.cpp), studies and trials (sql_store_studies.cpp),
// and the schema with its migrations (each backend's DDL, one version table).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kennel/store/detail/sql_connection.h"
#include "kennel/store/store.h"

namespace kennel::store::detail {

// One schema version: the statements that bring the previous version to it.
struct Migration {
  int version;
  std::vector<std::string> statements;
};

struct Schema {
  std::string version_table;    // "schema_version" (SQLite), "kennel_schema_version"
  std::string lock_statement;   // taken first in the migrating transaction ("" for SQLite)
  std::string table_exists;     // a query: 1 when the table named $1 exists, else 0
  std::vector<Migration> migrations;
  int latest() const { return migrations.empty() ? 0 : migrations.back().version; }
};
const Schema& sqlite_schema();
const Schema& postgres_schema();

class SqlStore final : public Store {
 public:
  // Brings the schema up to date (refusing a newer one) and returns the store.
  static Result<std::unique_ptr<SqlStore>> open(StoreLocation location, std::unique_ptr<SqlConnection> connection,
                                                const Schema& schema);
  // The store as it is, for reading only (open_store_read_only): the schema is
  // checked, never changed (kNotFound when it has no Kennel tables yet, a newer
  // one refused); writes answer kFailedPrecondition.
  static Result<std::unique_ptr<SqlStore>> open_read_only(StoreLocation location,
                                                          std::unique_ptr<SqlConnection> connection,
                                                          const Schema& schema);

  // JobRegistry
  Status create_job(const JobRecord& record) override;
  Status replace_job(const JobRecord& record) override;
  Status set_status(const std::string& name, JobStatus status, const std::string& reason) override;
  Status reopen_job(const std::string& name) override;
  Status heartbeat(const std::string& name) override;
  Status set_final_metrics(const std::string& name, const std::string& metrics_json) override;
  Status set_artifacts(const std::string& name, const std::string& artifacts_json) override;
  Result<JobRecord> get_job(const std::string& name) override;
  Result<std::vector<JobRecord>> list_jobs(const JobFilter& filter) override;
  std::string describe() const override;

  // StudyStore
  Status create_study(const StudyRecord& study, const JobRecord& job) override;
  Result<StudyRecord> get_study(const std::string& name) override;
  Result<std::vector<TrialRecord>> list_trials(const std::string& study) override;
  Result<ClaimResult> claim_trial(const ClaimRequest& request) override;
  Result<bool> renew_lease(const Lease& lease) override;
  Result<bool> report_progress(const Lease& lease, const std::vector<double>& intermediate, int64_t epochs_run,
                               const std::string& launch_id) override;
  Result<bool> finish_trial(const Lease& lease, const TrialOutcome& outcome) override;
  Status import_study(const StudyRecord& study) override;
  Status put_trial(const std::string& study, const TrialRecord& trial) override;
  Result<double> now() override;

 private:
  SqlStore(StoreLocation location, std::unique_ptr<SqlConnection> connection, bool read_only)
      : Store(std::move(location), read_only), db_(std::move(connection)) {}
  Status migrate(const Schema& schema);
  Status check_schema(const Schema& schema);
  Status check_writable() const;
  // Why an InProgress row's process is gone (silent for `silent_seconds` by
  // the store's clock), or empty while it may be alive. The one stale rule:
  // writers record it (mark_stale_jobs), read-only stores report it (settle_stale).
  std::string stale_reason(const std::string& host, int64_t pid, double silent_seconds) const;
  Status mark_stale_jobs();
  // A read-only store's view of a row read with its silence: Failed when stale, in memory only.
  void settle_stale(JobRecord& record, double silent_seconds) const;
  Status insert_job(const JobRecord& record);
  Status insert_study(const StudyRecord& study);
  Result<std::vector<TrialRecord>> read_trials(const std::string& study);
  Status write_trial(const std::string& study, const TrialRecord& trial);

  std::unique_ptr<SqlConnection> db_;
  int schema_version_ = 0;  // as found (read-only) or after migration
};

}  // namespace kennel::store::detail

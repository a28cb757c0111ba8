// The studies-and-trials half of SqlStore: creation, the claim transaction
// (claim_plan.h's rule applied under the study's lock), and the fenced writes.
#include <unistd.h>

#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kennel/store/claim_plan.h"
#include "kennel/store/detail/sql_store.h"

namespace kennel::store::detail {

namespace {

using nlohmann::json;

constexpr const char* kTrialColumns =
    "idx, name, hyperparameters_json, source, state, early_stopped, reason, objective, intermediate_json, "
    "epochs_run, attempts, token, worker, host, launch_id, lease_expires_at, heartbeat_at, started_at, ended_at";

constexpr const char* kStudyColumns =
    "name, spec_json, max_jobs, max_parallel_jobs, max_retries, lease_seconds, requeue_grace_seconds, exhausted, "
    "created_at";

json parse_or(const std::string& text, json fallback) {
  try {
    return json::parse(text);
  } catch (const json::exception&) {
    return fallback;
  }
}

TrialRecord read_trial(const SqlRow& row) {
  TrialRecord trial;
  trial.index = row.integer(0);
  trial.name = row.text(1);
  trial.hyperparameters = parse_or(row.text(2), json::object());
  trial.source = row.text(3);
  trial.state = row.text(4);
  trial.early_stopped = row.integer(5) != 0;
  trial.reason = row.text(6);
  if (!row.is_null(7)) trial.objective = row.real(7);
  for (const auto& value : parse_or(row.text(8), json::array())) {
    if (value.is_number()) trial.intermediate.push_back(value.get<double>());
  }
  trial.epochs_run = row.integer(9);
  trial.attempts = row.integer(10);
  trial.token = row.text(11);
  trial.worker = row.text(12);
  trial.host = row.text(13);
  trial.launch_id = row.text(14);
  trial.lease_expires_at = row.real(15);
  trial.heartbeat_at = row.real(16);
  trial.started_at = row.real(17);
  trial.ended_at = row.real(18);
  return trial;
}

StudyRecord read_study(const SqlRow& row) {
  StudyRecord study;
  study.name = row.text(0);
  study.spec_json = row.text(1);
  study.max_jobs = row.integer(2);
  study.max_parallel_jobs = row.integer(3);
  study.max_retries = row.integer(4);
  study.lease_seconds = row.real(5);
  study.requeue_grace_seconds = row.real(6);
  study.exhausted = row.integer(7) != 0;
  study.created_at = row.real(8);
  return study;
}

SqlValue objective_value(const std::optional<double>& objective) {
  if (objective) return *objective;
  return std::monostate{};
}

std::string new_token() {
  static thread_local std::mt19937_64 random(std::random_device{}() ^ static_cast<uint64_t>(::getpid()) << 32);
  return fmt::format("{:016x}{:016x}", random(), random());
}

}  // namespace

Status SqlStore::insert_study(const StudyRecord& study) {
    auto inserted = db_->execute(
        "INSERT INTO {studies}(name, spec_json, max_jobs, max_parallel_jobs, max_retries, lease_seconds, "
        "requeue_grace_seconds, exhausted, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, {now})",
        {study.name, study.spec_json, study.max_jobs, study.max_parallel_jobs, study.max_retries, study.lease_seconds,
         study.requeue_grace_seconds});
    if (!inserted.ok() && db_->last_error_was_unique_violation()) {
      return Status(ErrorCode::kAlreadyExists, "");
    }
    return inserted.status();
}

Status SqlStore::import_study(const StudyRecord& study) {
  KENNEL_RETURN_IF_ERROR(check_writable());
  return db_->transaction([&] { return insert_study(study); });
}

Status SqlStore::create_study(const StudyRecord& study, const JobRecord& job) {
  KENNEL_RETURN_IF_ERROR(check_writable());
  Status created = db_->transaction([&]() -> Status {
    KENNEL_RETURN_IF_ERROR(insert_job(job));
    return insert_study(study);
  });
  if (created.code() == ErrorCode::kAlreadyExists) {
    return Status(ErrorCode::kAlreadyExists,
                  fmt::format("a study or job named '{}' already exists in the store {}: choose another --name "
                              "(join it with `kennel tune worker --study {}`, continue it with `kennel tune resume {}`)",
                              study.name, describe(), study.name, study.name));
  }
  return created;
}

Result<StudyRecord> SqlStore::get_study(const std::string& name) {
  // A version 1 store (read-only: not migrated) has no studies table; its studies are files.
  if (schema_version_ < 2) return not_found("no study named '{}' in the store {} (version {})", name, describe(),
                                            schema_version_);
  auto rows = db_->query_retried(fmt::format("SELECT {} FROM {{studies}} WHERE name = $1", kStudyColumns), {name});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) {
    return not_found("no study named '{}' in the store {} (`kennel jobs list --store ...` shows the tuning jobs)", name,
                     describe());
  }
  return read_study(rows->front());
}

Result<std::vector<TrialRecord>> SqlStore::read_trials(const std::string& study) {
  auto rows = db_->query(fmt::format("SELECT {} FROM {{trials}} WHERE study = $1 ORDER BY idx", kTrialColumns), {study});
  if (!rows.ok()) return rows.status();
  std::vector<TrialRecord> trials;
  trials.reserve(rows->size());
  for (const auto& row : *rows) trials.push_back(read_trial(row));
  return trials;
}

Result<std::vector<TrialRecord>> SqlStore::list_trials(const std::string& study) {
  std::vector<TrialRecord> trials;
  if (schema_version_ < 2) return trials;
  KENNEL_RETURN_IF_ERROR(db_->transaction(
      [&]() -> Status {
        auto read = read_trials(study);
        if (!read.ok()) return read.status();
        trials = std::move(*read);
        return {};
      },
      /*write=*/false));
  return trials;
}

Status SqlStore::write_trial(const std::string& study, const TrialRecord& trial) {
  return db_
      ->execute(
          "INSERT INTO {trials}(study, idx, name, hyperparameters_json, source, state, early_stopped, reason, "
          "objective, intermediate_json, epochs_run, attempts, token, worker, host, launch_id, lease_expires_at, "
          "heartbeat_at, started_at, ended_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, "
          "$15, $16, $17, $18, $19, $20) ON CONFLICT (study, idx) DO UPDATE SET name = excluded.name, "
          "hyperparameters_json = excluded.hyperparameters_json, source = excluded.source, state = excluded.state, "
          "early_stopped = excluded.early_stopped, reason = excluded.reason, objective = excluded.objective, "
          "intermediate_json = excluded.intermediate_json, epochs_run = excluded.epochs_run, "
          "attempts = excluded.attempts, token = excluded.token, worker = excluded.worker, host = excluded.host, "
          "launch_id = excluded.launch_id, lease_expires_at = excluded.lease_expires_at, "
          "heartbeat_at = excluded.heartbeat_at, started_at = excluded.started_at, ended_at = excluded.ended_at",
          {study, trial.index, trial.name, trial.hyperparameters.dump(), trial.source, trial.state,
           static_cast<int64_t>(trial.early_stopped), trial.reason, objective_value(trial.objective),
           json(trial.intermediate).dump(), trial.epochs_run, trial.attempts, trial.token, trial.worker, trial.host,
           trial.launch_id, trial.lease_expires_at, trial.heartbeat_at, trial.started_at, trial.ended_at})
      .status();
}

Result<ClaimResult> SqlStore::claim_trial(const ClaimRequest& request) {
  KENNEL_RETURN_IF_ERROR(check_writable());
  ClaimResult result;
  KENNEL_RETURN_IF_ERROR(db_->transaction([&]() -> Status {
    // The study's lock first: every claim of this study waits here, which is what
    // makes max_jobs and max_parallel_jobs exact across workers. The study's
    // status and the store's clock come in the same round trip.
    auto studies = db_->query(
        fmt::format("SELECT {}, (SELECT status FROM {{jobs}} WHERE {{jobs}}.name = $1), {{now}} FROM {{studies}} "
                    "WHERE name = $1{{for_update}}",
                    kStudyColumns),
        {request.study});
    if (!studies.ok()) return studies.status();
    if (studies->empty()) return not_found("no study named '{}' in the store {}", request.study, describe());
    const StudyRecord study = read_study(studies->front());
    const bool in_progress = studies->front().text(9) == "InProgress";
    const double now = studies->front().real(10);
    // A cheap look first: a worker that asks while every slot is taken (or
    // nothing is left) must not read the whole study every time.
    auto counts = db_->query(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN state = 'running' THEN 1 ELSE 0 END), 0), "
        "COALESCE(SUM(CASE WHEN state = 'running' AND lease_expires_at > 0 AND lease_expires_at < $2 THEN 1 ELSE 0 "
        "END), 0), COALESCE(SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), 0) FROM {trials} WHERE study = $1",
        {request.study, now - study.requeue_grace_seconds});
    if (!counts.ok()) return counts.status();
    const int64_t total = counts->front().integer(0), running = counts->front().integer(1),
                  expired = counts->front().integer(2), pending = counts->front().integer(3);
    const bool all_created = study.exhausted || total >= study.max_jobs;
    if (in_progress && expired == 0 && running > 0) {
      if (running >= study.max_parallel_jobs) {
        result.kind = ClaimResult::Kind::kBusy;
        result.detail = fmt::format("{} trials run already (max_parallel_jobs {})", running, study.max_parallel_jobs);
        return {};
      }
      if (all_created && pending == 0) {
        result.kind = ClaimResult::Kind::kNothingLeft;
        result.detail = "every trial is claimed; waiting for those still running";
        return {};
      }
    }
    // Trial rows are read without row locks: renewals do not take the study's
    // lock, so a re-queue below re-checks the expiry it decided on.
    auto trials = read_trials(request.study);
    if (!trials.ok()) return trials.status();

    ClaimPlan plan = plan_claim(study, in_progress, std::move(*trials), now, request, new_token());
    for (const auto& [trial, old_token] : plan.requeued) {
      auto updated = db_->execute(
          "UPDATE {trials} SET state = $3, reason = $4, token = '', lease_expires_at = 0, ended_at = $5 "
          "WHERE study = $1 AND idx = $2 AND token = $6 AND state = 'running' AND lease_expires_at < $7",
          {request.study, trial.index, trial.state, trial.reason, trial.ended_at, old_token,
           now - study.requeue_grace_seconds});
      if (!updated.ok()) return updated.status();
      if (*updated != 1) {
        // Renewed (or finished) since it was read: plan again on fresh rows.
        return Status(ErrorCode::kUnavailable, fmt::format("trial {} of '{}' changed during the claim: retrying",
                                                           trial.index, request.study));
      }
      if (trial.state == kTrialFailed) {
        // The trial's registry row, if a worker kept one here, says so too.
        auto job = db_->execute(
            "UPDATE {jobs} SET status = 'Failed', failure_reason = $2, ended_at = {now} "
            "WHERE name = $1 AND parent = $3 AND status = 'InProgress'",
            {trial.name, trial.reason, request.study});
        if (!job.ok()) return job.status();
      }
    }
    if (plan.exhausted_now) {
      auto updated = db_->execute("UPDATE {studies} SET exhausted = 1 WHERE name = $1", {request.study});
      if (!updated.ok()) return updated.status();
    }
    if (plan.claimed) {
      const TrialRecord& trial = *plan.claimed;
      auto updated = db_->execute(
          "UPDATE {trials} SET state = 'running', token = $3, attempts = $4, worker = $5, host = $6, launch_id = '', "
          "early_stopped = 0, lease_expires_at = $7, heartbeat_at = $8, started_at = $9, ended_at = 0 "
          "WHERE study = $1 AND idx = $2 AND state = 'pending'",
          {request.study, trial.index, trial.token, trial.attempts, trial.worker, trial.host, trial.lease_expires_at,
           trial.heartbeat_at, trial.started_at});
      if (!updated.ok()) return updated.status();
      if (*updated != 1) return internal_error("claiming trial {} of '{}': it changed under the study lock",
                                               trial.index, request.study);
    }
    if (plan.created) KENNEL_RETURN_IF_ERROR(write_trial(request.study, *plan.created));

    result.kind = plan.kind;
    result.detail = plan.detail;
    for (const auto& [trial, old_token] : plan.requeued) result.requeued.push_back(trial);
    const std::optional<TrialRecord>& mine = plan.claimed ? plan.claimed : plan.created;
    if (mine) {
      result.trial = *mine;
      result.lease = {request.study, mine->index, mine->token};
    }
    result.snapshot = std::move(plan.snapshot);
    return {};
  }));
  return result;
}

Result<bool> SqlStore::renew_lease(const Lease& lease) {
  KENNEL_RETURN_IF_ERROR(check_writable());
  auto updated = db_->execute_retried(
      "UPDATE {trials} SET lease_expires_at = {now} + (SELECT lease_seconds FROM {studies} WHERE name = $1), "
      "heartbeat_at = {now} WHERE study = $1 AND idx = $2 AND token = $3 AND state = 'running'",
      {lease.study, lease.index, lease.token});
  if (!updated.ok()) return updated.status();
  return *updated == 1;
}

Result<bool> SqlStore::report_progress(const Lease& lease, const std::vector<double>& intermediate,
                                       int64_t epochs_run, const std::string& launch_id) {
  KENNEL_RETURN_IF_ERROR(check_writable());
  auto updated = db_->execute_retried(
      "UPDATE {trials} SET intermediate_json = $4, epochs_run = $5, launch_id = $6, heartbeat_at = {now}, "
      "lease_expires_at = {now} + (SELECT lease_seconds FROM {studies} WHERE name = $1) "
      "WHERE study = $1 AND idx = $2 AND token = $3 AND state = 'running'",
      {lease.study, lease.index, lease.token, json(intermediate).dump(), epochs_run, launch_id});
  if (!updated.ok()) return updated.status();
  return *updated == 1;
}

Result<bool> SqlStore::finish_trial(const Lease& lease, const TrialOutcome& outcome) {
  KENNEL_RETURN_IF_ERROR(check_writable());
  const bool again = outcome.state == kTrialPending;
  // Fenced by the token alone (not the state), so a retry after a lost COMMIT
  // reply writes the same outcome again instead of reporting a lost lease.
  auto updated = db_->execute_retried(
      again ? "UPDATE {trials} SET state = $4, early_stopped = $5, reason = $6, objective = $7, "
              "intermediate_json = $8, epochs_run = $9, token = '', lease_expires_at = 0, ended_at = 0 "
              "WHERE study = $1 AND idx = $2 AND token = $3 AND $3 <> ''"
            : "UPDATE {trials} SET state = $4, early_stopped = $5, reason = $6, objective = $7, "
              "intermediate_json = $8, epochs_run = $9, lease_expires_at = 0, "
              "ended_at = CASE WHEN state = 'running' THEN {now} ELSE ended_at END "
              "WHERE study = $1 AND idx = $2 AND token = $3 AND $3 <> ''",
      {lease.study, lease.index, lease.token, outcome.state, static_cast<int64_t>(outcome.early_stopped),
       outcome.reason, objective_value(outcome.objective), json(outcome.intermediate).dump(), outcome.epochs_run});
  if (!updated.ok()) return updated.status();
  return *updated == 1;
}

Status SqlStore::put_trial(const std::string& study, const TrialRecord& trial) {
  KENNEL_RETURN_IF_ERROR(check_writable());
  return db_->transaction([&] { return write_trial(study, trial); });
}

Result<double> SqlStore::now() {
  auto rows = db_->query_retried("SELECT {now}");
  if (!rows.ok()) return rows.status();
  return rows->front().real(0);
}

}  // namespace kennel::store::detail

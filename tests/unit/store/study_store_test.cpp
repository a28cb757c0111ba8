// The study store: claims, leases and their fencing, re-queue after expiry,
// exact budgets under concurrent claimers (processes), the schema migration
// from the v1 registry, and --store parsing. Every StudyStoreTest runs on
// SQLite, and on PostgreSQL when KENNEL_TEST_POSTGRES_URL names a scratch
// database (tests/integration/test_tune_store.py starts a server and runs
// this binary so; its tables are dropped before each test).
#include "kennel/store/store.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "unit/test_util.h"

namespace kennel::store {
namespace {

using nlohmann::json;

const char* postgres_url() { return std::getenv("KENNEL_TEST_POSTGRES_URL"); }

class StudyStoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() != "postgres") return;
    PGconn* connection = PQconnectdb(postgres_url());
    ASSERT_EQ(PQstatus(connection), CONNECTION_OK) << PQerrorMessage(connection);
    PQsetNoticeProcessor(connection, [](void*, const char*) {}, nullptr);  // "does not exist, skipping"
    PGresult* dropped = PQexec(connection,
                               "DROP TABLE IF EXISTS kennel_trials, kennel_studies, kennel_jobs, kennel_schema_version");
    EXPECT_EQ(PQresultStatus(dropped), PGRES_COMMAND_OK) << PQerrorMessage(connection);
    PQclear(dropped);
    PQfinish(connection);
  }
  StoreLocation location() const {
    if (GetParam() == "postgres") return parse_store_location(postgres_url(), dir_.path()).value();
    StoreLocation where;
    where.kind = StoreLocation::Kind::kSqlite;
    where.sqlite_path = dir_ / "kennel.db";
    return where;
  }
  std::unique_ptr<Store> open() {
    auto store = open_store(location());
    EXPECT_TRUE(store.ok()) << store.status().to_string();
    return std::move(store).value();
  }
  void create(Store& store, const std::string& name, int64_t max_jobs, int64_t parallel, double lease = 60,
              double grace = 0, int64_t retries = 1) {
    StudyRecord study;
    study.name = name;
    study.spec_json = "{}";
    study.max_jobs = max_jobs;
    study.max_parallel_jobs = parallel;
    study.max_retries = retries;
    study.lease_seconds = lease;
    study.requeue_grace_seconds = grace;
    JobRecord job;
    job.name = name;
    job.kind = "tuning";
    job.pid = JobRecord::kNoOwner;
    ASSERT_TRUE(store.create_study(study, job).ok());
  }
  static ClaimRequest request(const std::string& study, const std::string& worker = "test:1") {
    ClaimRequest claim;
    claim.study = study;
    claim.worker = worker;
    claim.host = "test";
    claim.decide = [study](const StudyRecord&, const std::vector<TrialRecord>&, int64_t index) {
      NewTrialDecision decision;
      decision.kind = NewTrialDecision::Kind::kCreate;
      decision.name = study + "-" + std::to_string(index + 1);
      decision.hyperparameters = {{"x", index}};
      decision.source = "random";
      return decision;
    };
    return claim;
  }
  static TrialOutcome completed(double value) {
    TrialOutcome outcome;
    outcome.state = kTrialCompleted;
    outcome.objective = value;
    outcome.intermediate = {value / 2, value};
    outcome.epochs_run = 2;
    return outcome;
  }
  testing::TempDir dir_;
};

TEST_P(StudyStoreTest, ClaimsCreateTrialsInOrderUpToTheBudgetAndTheParallelism) {
  auto store = open();
  create(*store, "s", 3, 2);
  auto first = store->claim_trial(request("s"));
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  EXPECT_EQ(first->kind, ClaimResult::Kind::kClaimed);
  EXPECT_EQ(first->trial.index, 0);
  EXPECT_EQ(first->trial.attempts, 1);
  EXPECT_EQ(first->trial.state, kTrialRunning);
  EXPECT_FALSE(first->lease.token.empty());
  auto second = store->claim_trial(request("s"));
  EXPECT_EQ(second->trial.index, 1);
  EXPECT_NE(second->lease.token, first->lease.token);
  // Two run: the study's parallelism is reached.
  EXPECT_EQ(store->claim_trial(request("s"))->kind, ClaimResult::Kind::kBusy);
  ASSERT_TRUE(*store->finish_trial(first->lease, completed(0.5)));
  auto third = store->claim_trial(request("s"));
  EXPECT_EQ(third->trial.index, 2);
  EXPECT_EQ(third->snapshot.size(), 3u);
  ASSERT_TRUE(*store->finish_trial(third->lease, completed(0.7)));
  // Every trial created, one still running: nothing left to claim, the study is not over.
  EXPECT_EQ(store->claim_trial(request("s"))->kind, ClaimResult::Kind::kNothingLeft);
  ASSERT_TRUE(*store->finish_trial(second->lease, completed(0.6)));
  EXPECT_EQ(store->claim_trial(request("s"))->kind, ClaimResult::Kind::kStudyOver);

  auto trials = store->list_trials("s");
  ASSERT_TRUE(trials.ok());
  ASSERT_EQ(trials->size(), 3u);
  EXPECT_EQ((*trials)[0].state, kTrialCompleted);
  EXPECT_DOUBLE_EQ(*(*trials)[0].objective, 0.5);
  EXPECT_EQ((*trials)[0].intermediate, (std::vector<double>{0.25, 0.5}));
  EXPECT_EQ((*trials)[1].hyperparameters, json({{"x", 1}}));
  EXPECT_EQ((*trials)[1].source, "random");
  EXPECT_GT((*trials)[2].ended_at, 0);
}

TEST_P(StudyStoreTest, TheDecidersWaitAndExhaustionAreHonoured) {
  auto store = open();
  create(*store, "g", 10, 4);
  auto waiting = request("g");
  waiting.decide = [](const StudyRecord&, const std::vector<TrialRecord>& trials, int64_t index) {
    NewTrialDecision decision;
    if (index == 2) {
      decision.kind = NewTrialDecision::Kind::kExhausted;
    } else if (index == 1 && !trials[0].finished()) {
      decision.kind = NewTrialDecision::Kind::kWait;
      decision.why = "trial 0 first";
    } else {
      decision.kind = NewTrialDecision::Kind::kCreate;
      decision.name = "g-" + std::to_string(index + 1);
    }
    return decision;
  };
  auto first = store->claim_trial(waiting);
  ASSERT_EQ(first->kind, ClaimResult::Kind::kClaimed);
  auto wait = store->claim_trial(waiting);
  EXPECT_EQ(wait->kind, ClaimResult::Kind::kWait);
  EXPECT_EQ(wait->detail, "trial 0 first");
  ASSERT_TRUE(*store->finish_trial(first->lease, completed(1)));
  auto second = store->claim_trial(waiting);
  ASSERT_EQ(second->kind, ClaimResult::Kind::kClaimed);
  EXPECT_EQ(second->trial.index, 1);
  EXPECT_EQ(store->claim_trial(waiting)->kind, ClaimResult::Kind::kNothingLeft);  // exhausted, one running
  EXPECT_TRUE(store->get_study("g")->exhausted);
  ASSERT_TRUE(*store->finish_trial(second->lease, completed(2)));
  EXPECT_EQ(store->claim_trial(waiting)->kind, ClaimResult::Kind::kStudyOver);
}

TEST_P(StudyStoreTest, AnExpiredLeaseIsRequeuedAndTheOldHolderIsFencedOff) {
  auto store = open();
  create(*store, "lease", 1, 1, /*lease=*/1.0, /*grace=*/0.2);
  auto old = store->claim_trial(request("lease", "a:1"));
  ASSERT_EQ(old->kind, ClaimResult::Kind::kClaimed);
  EXPECT_TRUE(*store->renew_lease(old->lease));
  EXPECT_TRUE(*store->report_progress(old->lease, {0.1}, 1, "pid 7"));
  // Before expiry + grace nobody may take it.
  EXPECT_EQ(store->claim_trial(request("lease", "b:2"))->kind, ClaimResult::Kind::kBusy);
  std::this_thread::sleep_for(std::chrono::milliseconds(1400));
  auto again = store->claim_trial(request("lease", "b:2"));
  ASSERT_EQ(again->kind, ClaimResult::Kind::kClaimed) << again->detail;
  EXPECT_EQ(again->trial.index, 0);
  EXPECT_EQ(again->trial.attempts, 2);
  EXPECT_EQ(again->trial.worker, "b:2");
  ASSERT_EQ(again->requeued.size(), 1u);
  EXPECT_NE(again->requeued[0].reason.find("a:1"), std::string::npos) << again->requeued[0].reason;
  // The first holder, back from a freeze: every write is refused.
  EXPECT_FALSE(*store->renew_lease(old->lease));
  EXPECT_FALSE(*store->report_progress(old->lease, {0.9}, 1, "pid 7"));
  EXPECT_FALSE(*store->finish_trial(old->lease, completed(0.99)));
  ASSERT_TRUE(*store->finish_trial(again->lease, completed(0.4)));
  // A late write of the old holder cannot overwrite the re-run's result either.
  EXPECT_FALSE(*store->finish_trial(old->lease, completed(0.99)));
  const auto trial = store->list_trials("lease")->front();
  EXPECT_EQ(trial.state, kTrialCompleted);
  EXPECT_DOUBLE_EQ(*trial.objective, 0.4);
  EXPECT_EQ(trial.worker, "b:2");
}

TEST_P(StudyStoreTest, ALeaseLostMoreOftenThanTheRetriesAllowFailsTheTrial) {
  auto store = open();
  create(*store, "lost", 1, 1, /*lease=*/1.0, /*grace=*/0.0, /*retries=*/0);
  ASSERT_EQ(store->claim_trial(request("lost"))->kind, ClaimResult::Kind::kClaimed);
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  auto over = store->claim_trial(request("lost"));
  EXPECT_EQ(over->kind, ClaimResult::Kind::kStudyOver);
  ASSERT_EQ(over->requeued.size(), 1u);
  EXPECT_EQ(over->requeued[0].state, kTrialFailed);
  EXPECT_NE(over->requeued[0].reason.find("lost after 1 attempt"), std::string::npos);
}

TEST_P(StudyStoreTest, APendingOutcomeGoesBackForTheNextClaimWithItsHistory) {
  auto store = open();
  create(*store, "retry", 2, 1);
  auto first = store->claim_trial(request("retry"));
  TrialOutcome crashed;
  crashed.state = kTrialPending;
  crashed.reason = "killed by SIGKILL";
  ASSERT_TRUE(*store->finish_trial(first->lease, crashed));
  auto again = store->claim_trial(request("retry"));
  ASSERT_EQ(again->kind, ClaimResult::Kind::kClaimed);
  EXPECT_EQ(again->trial.index, 0);  // the pending trial before a new one
  EXPECT_EQ(again->trial.attempts, 2);
  EXPECT_DOUBLE_EQ(again->trial.started_at, first->trial.started_at);
  // The released lease is dead too.
  EXPECT_FALSE(*store->renew_lease(first->lease));
}

TEST_P(StudyStoreTest, TwoStudiesOfOneNameAreRefused) {
  auto store = open();
  create(*store, "twice", 1, 1);
  StudyRecord study;
  study.name = "twice";
  study.spec_json = "{}";
  JobRecord job;
  job.name = "twice";
  job.kind = "tuning";
  Status again = store->create_study(study, job);
  EXPECT_EQ(again.code(), ErrorCode::kAlreadyExists);
  EXPECT_NE(again.message().find("twice"), std::string::npos);
}

// max_jobs holds exactly when many processes claim at once.
TEST_P(StudyStoreTest, ConcurrentClaimersNeverExceedTheBudgetOrClaimATrialTwice) {
  {
    auto store = open();
    create(*store, "race", 60, 8);
  }
  constexpr int kWorkers = 6;
  std::vector<pid_t> children;
  for (int w = 0; w < kWorkers; ++w) {
    const pid_t child = ::fork();
    if (child == 0) {
      auto store = open_store(location());
      if (!store.ok()) ::_exit(1);
      // A deadline, not a count of claims: at the study's end a worker sees kNothingLeft until the
      // last trial's holder, maybe descheduled (6 processes on 2 cores), finishes it.
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      while (std::chrono::steady_clock::now() < deadline) {
        auto claim = (*store)->claim_trial(request("race", "w:" + std::to_string(w)));
        if (!claim.ok()) ::_exit(2);
        if (claim->kind == ClaimResult::Kind::kStudyOver) ::_exit(0);
        if (claim->kind != ClaimResult::Kind::kClaimed) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
          continue;
        }
        auto done = (*store)->finish_trial(claim->lease, completed(static_cast<double>(claim->trial.index)));
        if (!done.ok() || !*done) ::_exit(3);
      }
      ::_exit(4);
    }
    children.push_back(child);
  }
  for (pid_t child : children) {
    int status = 0;
    ::waitpid(child, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "worker exit " << WEXITSTATUS(status);
  }
  auto trials = open()->list_trials("race");
  ASSERT_TRUE(trials.ok());
  ASSERT_EQ(trials->size(), 60u);
  for (size_t i = 0; i < trials->size(); ++i) {
    EXPECT_EQ((*trials)[i].index, static_cast<int64_t>(i));
    EXPECT_EQ((*trials)[i].attempts, 1) << "trial " << i << " was claimed twice";
    EXPECT_EQ((*trials)[i].state, kTrialCompleted);
  }
}

// The v1 registry was SQLite only.
class SqliteMigrationTest : public StudyStoreTest {};

TEST_P(SqliteMigrationTest, AVersion1RegistryIsMigratedAndANewerOneRefused) {
  // The registry as kennel wrote it before studies lived in it.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ / "kennel.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (1);"
                         "CREATE TABLE jobs (name TEXT PRIMARY KEY, kind TEXT NOT NULL, parent TEXT NOT NULL DEFAULT '',"
                         " status TEXT NOT NULL, failure_reason TEXT NOT NULL DEFAULT '', spec_json TEXT NOT NULL "
                         "DEFAULT '{}', job_dir TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL, started_at REAL NOT "
                         "NULL DEFAULT 0, ended_at REAL NOT NULL DEFAULT 0, heartbeat_at REAL NOT NULL DEFAULT 0, pid "
                         "INTEGER NOT NULL DEFAULT 0, host TEXT NOT NULL DEFAULT '', final_metrics_json TEXT NOT NULL "
                         "DEFAULT '{}', artifacts_json TEXT NOT NULL DEFAULT '{}');"
                         "INSERT INTO jobs(name, kind, status, created_at) VALUES ('old-job', 'training', 'Completed', 1);",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  {
    auto store = open();
    EXPECT_EQ(store->get_job("old-job")->status, JobStatus::kCompleted);
    create(*store, "new-study", 1, 1);
    EXPECT_TRUE(store->get_study("new-study").ok());
  }
  ASSERT_EQ(sqlite3_open((dir_ / "kennel.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "INSERT INTO schema_version VALUES (99)", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto newer = open_store(location());
  ASSERT_FALSE(newer.ok());
  EXPECT_NE(newer.status().message().find("upgrade kennel"), std::string::npos) << newer.status().message();
}

TEST_P(StudyStoreTest, PutTrialOverwritesForAResume) {
  auto store = open();
  create(*store, "resume", 2, 1);
  auto claim = store->claim_trial(request("resume"));
  TrialRecord trial = claim->trial;
  trial.state = kTrialPending;
  trial.token.clear();
  ASSERT_TRUE(store->put_trial("resume", trial).ok());
  EXPECT_FALSE(*store->renew_lease(claim->lease));
  EXPECT_EQ(store->list_trials("resume")->front().state, kTrialPending);
}

TEST_P(StudyStoreTest, AReadOnlyStoreReadsEverythingAndWritesNothing) {
  // Before any writer: no tables (PostgreSQL) or no file (SQLite) is "nothing here yet".
  EXPECT_EQ(open_store_read_only(location()).status().code(), ErrorCode::kNotFound);
  auto writer = open();
  create(*writer, "watched", 2, 1);
  auto claim = writer->claim_trial(request("watched"));
  ASSERT_TRUE(claim.ok()) << claim.status().to_string();
  JobRecord gone;
  gone.name = "gone";
  gone.host = "another-host";  // only its heartbeat can tell
  ASSERT_TRUE(writer->create_job(gone).ok());

  auto opened = open_store_read_only(location());
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  Store& reader = **opened;
  EXPECT_TRUE(reader.read_only());
  EXPECT_EQ(reader.get_study("watched")->max_jobs, 2);
  EXPECT_EQ(reader.list_trials("watched")->size(), 1u);
  EXPECT_EQ(reader.get_job("gone")->status, JobStatus::kInProgress);

  // Every write is refused, before it reaches the database.
  JobRecord other;
  other.name = "other";
  EXPECT_EQ(reader.create_job(other).code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(reader.set_status("gone", JobStatus::kStopped).code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(reader.heartbeat("gone").code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(reader.claim_trial(request("watched")).status().code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(reader.renew_lease(claim->lease).status().code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(reader.put_trial("watched", claim->trial).code(), ErrorCode::kFailedPrecondition);

  // A dead job is reported Failed by the writer's rule, and the status filter sees that...
  reader.set_stale_after_seconds(-1);
  const JobRecord seen = reader.get_job("gone").value();
  EXPECT_EQ(seen.status, JobStatus::kFailed);
  EXPECT_NE(seen.failure_reason.find("heartbeat"), std::string::npos) << seen.failure_reason;
  JobFilter failed;
  failed.status = JobStatus::kFailed;
  failed.limit = 1;
  auto failed_jobs = reader.list_jobs(failed);
  ASSERT_EQ(failed_jobs->size(), 1u);
  EXPECT_EQ(failed_jobs->front().name, "gone");
  JobFilter running;
  running.status = JobStatus::kInProgress;
  // ...while the study's row (pid 0: no owning process) never goes stale.
  auto running_jobs = reader.list_jobs(running);
  ASSERT_EQ(running_jobs->size(), 1u);
  EXPECT_EQ(running_jobs->front().name, "watched");
  // ...and nothing was written: the writer (default limit) still sees it running.
  EXPECT_EQ(writer->get_job("gone")->status, JobStatus::kInProgress);
  // The writer's changes show up in the reader's next read.
  ASSERT_TRUE(writer->set_status("gone", JobStatus::kCompleted).ok());
  EXPECT_EQ(reader.get_job("gone")->status, JobStatus::kCompleted);
}

TEST_P(SqliteMigrationTest, AReadOnlyStoreNeverMigratesAndRefusesWhatIsNotAStore) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ / "kennel.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (1);"
                         "CREATE TABLE jobs (name TEXT PRIMARY KEY, kind TEXT NOT NULL, parent TEXT NOT NULL DEFAULT '',"
                         " status TEXT NOT NULL, failure_reason TEXT NOT NULL DEFAULT '', spec_json TEXT NOT NULL "
                         "DEFAULT '{}', job_dir TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL, started_at REAL NOT "
                         "NULL DEFAULT 0, ended_at REAL NOT NULL DEFAULT 0, heartbeat_at REAL NOT NULL DEFAULT 0, pid "
                         "INTEGER NOT NULL DEFAULT 0, host TEXT NOT NULL DEFAULT '', final_metrics_json TEXT NOT NULL "
                         "DEFAULT '{}', artifacts_json TEXT NOT NULL DEFAULT '{}');"
                         "INSERT INTO jobs(name, kind, status, created_at) VALUES ('old-study', 'tuning', 'Completed', 1);",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  {
    auto reader = open_store_read_only(location());
    ASSERT_TRUE(reader.ok()) << reader.status().to_string();
    EXPECT_EQ((*reader)->get_job("old-study")->status, JobStatus::kCompleted);
    // A version 1 store keeps its studies in files: none in the store.
    EXPECT_EQ((*reader)->get_study("old-study").status().code(), ErrorCode::kNotFound);
    EXPECT_TRUE((*reader)->list_trials("old-study")->empty());
  }
  ASSERT_EQ(sqlite3_open((dir_ / "kennel.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* version = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT MAX(version) FROM schema_version", -1, &version, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(version), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(version, 0), 1) << "a reader migrated the store";
  sqlite3_finalize(version);
  ASSERT_EQ(sqlite3_exec(db, "INSERT INTO schema_version VALUES (99)", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto newer = open_store_read_only(location());
  ASSERT_FALSE(newer.ok());
  EXPECT_NE(newer.status().message().find("upgrade kennel"), std::string::npos) << newer.status().message();

  std::filesystem::remove(dir_ / "kennel.db");
  { std::ofstream(dir_ / "kennel.db") << "not a database at all, just some text that is long enough"; }
  auto text = open_store_read_only(location());
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.status().code(), ErrorCode::kDataLoss) << text.status().to_string();
  EXPECT_NE(text.status().message().find("kennel.db"), std::string::npos) << text.status().message();
}

// PostgreSQL only when a scratch database is given, so a plain run has nothing to skip.
std::vector<std::string> backends() {
  std::vector<std::string> names = {"sqlite"};
  if (postgres_url() && *postgres_url()) names.push_back("postgres");
  return names;
}

INSTANTIATE_TEST_SUITE_P(Backends, StudyStoreTest, ::testing::ValuesIn(backends()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });
INSTANTIATE_TEST_SUITE_P(Sqlite, SqliteMigrationTest, ::testing::Values("sqlite"));

TEST(StoreLocationTest, ParsesEveryFormAndNamesTheBadOne) {
  auto embedded = parse_store_location("", "/home/k");
  ASSERT_TRUE(embedded.ok());
  EXPECT_EQ(embedded->kind, StoreLocation::Kind::kEmbedded);
  EXPECT_EQ(embedded->sqlite_path, "/home/k/kennel.db");
  EXPECT_EQ(parse_store_location("embedded", "/h")->kind, StoreLocation::Kind::kEmbedded);
  EXPECT_EQ(parse_store_location("sqlite:/srv/k.db", "/h")->sqlite_path, "/srv/k.db");
  EXPECT_EQ(parse_store_location("sqlite:///srv/k.db", "/h")->sqlite_path, "/srv/k.db");
  auto pg = parse_store_location("postgresql://kennel:secret@db.example:5432/tuning", "/h");
  ASSERT_TRUE(pg.ok());
  EXPECT_TRUE(pg->shared());
  EXPECT_EQ(pg->display(), "postgresql://kennel@db.example:5432/tuning");
  EXPECT_EQ(pg->argument(), "postgresql://kennel:secret@db.example:5432/tuning");
  EXPECT_TRUE(parse_store_location("postgres://h/db", "/h")->shared());
  auto bad = parse_store_location("mysql://h/db", "/h");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("mysql://h/db"), std::string::npos);
  EXPECT_NE(bad.status().message().find("postgresql://"), std::string::npos);
  EXPECT_FALSE(parse_store_location("sqlite:", "/h").ok());
}

TEST(StoreLocationTest, AnUnreachablePostgresIsUnavailableNamingTheServer) {
  // Port 1 on loopback: nothing listens; the connection is refused at once.
  auto location = parse_store_location("postgresql://kennel:pw@127.0.0.1:1/none", "/h");
  auto store = open_store(*location);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), ErrorCode::kUnavailable);
  EXPECT_NE(store.status().message().find("127.0.0.1:1/none"), std::string::npos) << store.status().message();
  EXPECT_EQ(store.status().message().find("pw"), std::string::npos) << "the password leaked";
}

}  // namespace
}  // namespace kennel::store

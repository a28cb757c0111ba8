// Store benchmark: claims per second when N worker processes claim and finish
// trials of one study at once — the protocol of store/study_store.h, without
// trials (each claim is followed at once by its fenced finish), so the store
// is all that is measured. Also checks the result: exactly max_jobs trials,
// each claimed once.
//
//   store_bench --store URL [--workers 16] [--trials 2000] [--json]
//     --store    sqlite:PATH or postgresql://... (a fresh study is created in it)
//     --workers  claiming processes (forked; each opens its own connection)
//     --trials   the study's max_jobs (max_parallel_jobs = workers)
//
// Prints claims/s (claim + finish pairs per second over the whole run) and the
// p50/p99 latency of one claim transaction. Exit 1 when the check fails.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kennel/store/store.h"

using namespace kennel;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string store;
  int workers = 16;
  int64_t trials = 2000;
  bool json_output = false;
};

store::ClaimRequest request(const std::string& study, int worker) {
  store::ClaimRequest claim;
  claim.study = study;
  claim.worker = fmt::format("bench:{}", worker);
  claim.host = "bench";
  claim.decide = [study](const store::StudyRecord&, const std::vector<store::TrialRecord>&, int64_t index) {
    store::NewTrialDecision decision;
    decision.kind = store::NewTrialDecision::Kind::kCreate;
    decision.name = fmt::format("{}-{:05d}", study, index + 1);
    decision.hyperparameters = {{"x", index}};
    decision.source = "random";
    return decision;
  };
  return claim;
}

// One worker: claim, finish, again, until the study is over. Writes its claim latencies (ms) to `out`.
int run_worker(const store::StoreLocation& location, const std::string& study, int worker, const std::string& out) {
  auto opened = store::open_store(location);
  if (!opened.ok()) {
    std::fprintf(stderr, "worker %d: %s\n", worker, opened.status().message().c_str());
    return 2;
  }
  auto& db = **opened;
  std::ofstream latencies(out);
  store::TrialOutcome done;
  done.state = store::kTrialCompleted;
  done.objective = 0.5;
  done.intermediate = {0.5};
  done.epochs_run = 1;
  for (;;) {
    const auto started = Clock::now();
    auto claim = db.claim_trial(request(study, worker));
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
    if (!claim.ok()) {
      std::fprintf(stderr, "worker %d: %s\n", worker, claim.status().message().c_str());
      return 3;
    }
    if (claim->kind == store::ClaimResult::Kind::kStudyOver) return 0;
    if (claim->kind != store::ClaimResult::Kind::kClaimed) continue;  // busy: every slot taken for an instant
    latencies << ms << "\n";
    auto finished = db.finish_trial(claim->lease, done);
    if (!finished.ok() || !*finished) return 4;
  }
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[static_cast<size_t>(p * static_cast<double>(values.size() - 1))];
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", flag.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (flag == "--store") options.store = value();
    else if (flag == "--workers") options.workers = std::stoi(value());
    else if (flag == "--trials") options.trials = std::stoll(value());
    else if (flag == "--json") options.json_output = true;
    else {
      std::fprintf(stderr, "usage: store_bench --store URL [--workers N] [--trials N] [--json]\n");
      return 2;
    }
  }
  auto location = store::parse_store_location(options.store, ".");
  if (options.store.empty() || !location.ok()) {
    std::fprintf(stderr, "--store: %s\n", location.ok() ? "required" : location.status().message().c_str());
    return 2;
  }
  const std::string study = fmt::format("bench-{}", ::getpid());
  {
    auto db = store::open_store(*location);
    if (!db.ok()) {
      std::fprintf(stderr, "%s\n", db.status().message().c_str());
      return 2;
    }
    store::StudyRecord record;
    record.name = study;
    record.spec_json = "{}";
    record.max_jobs = options.trials;
    record.max_parallel_jobs = options.workers;
    store::JobRecord job;
    job.name = study;
    job.kind = "tuning";
    job.pid = store::JobRecord::kNoOwner;
    if (auto created = (*db)->create_study(record, job); !created.ok()) {
      std::fprintf(stderr, "%s\n", created.message().c_str());
      return 2;
    }
  }
  char scratch[] = "/tmp/store-bench-XXXXXX";
  if (!::mkdtemp(scratch)) return 2;
  const auto started = Clock::now();
  std::vector<pid_t> children;
  for (int w = 0; w < options.workers; ++w) {
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(run_worker(*location, study, w, fmt::format("{}/worker-{}.txt", scratch, w)));
    children.push_back(pid);
  }
  int failures = 0;
  for (pid_t child : children) {
    int status = 0;
    ::waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failures;
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  std::vector<double> latencies;
  for (int w = 0; w < options.workers; ++w) {
    const std::string path = fmt::format("{}/worker-{}.txt", scratch, w);
    std::ifstream in(path);
    double ms;
    while (in >> ms) latencies.push_back(ms);
    std::remove(path.c_str());
  }
  ::rmdir(scratch);

  auto db = store::open_store(*location);
  auto trials = (*db)->list_trials(study);
  bool exact = trials.ok() && static_cast<int64_t>(trials->size()) == options.trials;
  if (trials.ok()) {
    for (const auto& trial : *trials) exact = exact && trial.attempts == 1 && trial.state == store::kTrialCompleted;
  }
  const json result = {{"store", location->kind == store::StoreLocation::Kind::kPostgres ? "postgresql" : "sqlite"},
                       {"workers", options.workers},
                       {"trials", options.trials},
                       {"seconds", seconds},
                       {"claims_per_second", static_cast<double>(latencies.size()) / seconds},
                       {"claim_ms_p50", percentile(latencies, 0.5)},
                       {"claim_ms_p99", percentile(latencies, 0.99)},
                       {"each_trial_claimed_once", exact},
                       {"failed_workers", failures}};
  if (options.json_output) {
    std::cout << result.dump() << "\n";
  } else {
    std::cout << fmt::format("{}: {} workers, {} trials in {:.2f} s: {:.0f} claims/s, claim p50 {:.2f} ms p99 {:.2f} ms, "
                             "each trial claimed once: {}\n",
                             result["store"].get<std::string>(), options.workers, options.trials, seconds,
                             result["claims_per_second"].get<double>(), result["claim_ms_p50"].get<double>(),
                             result["claim_ms_p99"].get<double>(), exact ? "yes" : "NO");
  }
  return exact && failures == 0 ? 0 : 1;
}

// `kennel jobs list|describe|logs|stop`: the registry, as a person or a script sees it.
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <thread>

#include <nlohmann/json.hpp>

#include "kennel/cli/command.h"
#include "kennel/store/job_registry.h"
#include "kennel/store/layout.h"

namespace kennel::cli {

namespace {

using nlohmann::json;
using store::JobRecord;

std::string format_time(double unix_seconds) {
  if (unix_seconds <= 0) return "-";
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%S", std::localtime(&t));
  return text;
}

json parse_or_empty(const std::string& text) {
  try {
    return json::parse(text);
  } catch (const std::exception&) {
    return json::object();
  }
}

json record_to_json(const JobRecord& job) {
  return {{"name", job.name},
          {"kind", job.kind},
          {"parent", job.parent},
          {"status", store::job_status_name(job.status)},
          {"failure_reason", job.failure_reason},
          {"job_dir", job.job_dir},
          {"created_at", job.created_at},
          {"started_at", job.started_at},
          {"ended_at", job.ended_at},
          {"duration_seconds", job.duration_seconds(store::unix_now())},
          {"pid", job.pid},
          {"host", job.host},
          {"final_metrics", parse_or_empty(job.final_metrics_json)},
          {"artifacts", parse_or_empty(job.artifacts_json)},
          {"spec", parse_or_empty(job.spec_json)}};
}

std::unique_ptr<store::Store> open_registry(const CommandContext& context) {
  const auto location = context.global.store_location();
  std::error_code error;
  if (!location.shared() && !std::filesystem::exists(location.sqlite_path, error)) {
    throw Error(not_found("no job registry at '{}': no job has run with this --home yet",
                          location.sqlite_path.string()));
  }
  return context.global.open_store();
}

struct ListFlags {
  bool json = false;
  std::string status;
  std::string parent;
  std::string contains;
  int64_t limit = 0;
};

void register_list(CLI::App& jobs, CommandContext& context) {
  auto flags = std::make_shared<ListFlags>();
  auto* list = jobs.add_subcommand("list", "List jobs, newest first");
  list->add_flag("--json", flags->json, "Print JSON");
  list->add_option("--status", flags->status, "Only InProgress, Completed, Failed or Stopped");
  list->add_option("--parent", flags->parent, "Only the trials of this tuning job");
  list->add_option("--name-contains", flags->contains, "Only names containing this text");
  list->add_option("--limit", flags->limit, "At most this many (0 = all)")->capture_default_str();
  list->callback([flags, &context] {
    store::JobFilter filter;
    if (!flags->status.empty()) {
      filter.status = store::parse_job_status(flags->status);
      if (!filter.status) {
        throw Error(invalid_argument("--status '{}': use InProgress, Completed, Failed or Stopped", flags->status));
      }
    }
    filter.parent = flags->parent;
    filter.name_contains = flags->contains;
    filter.limit = flags->limit;
    const auto jobs = open_registry(context)->list_jobs(filter).value();
    if (flags->json) {
      json out = json::array();
      for (const auto& job : jobs) out.push_back(record_to_json(job));
      std::cout << out.dump(2) << "\n";
      return;
    }
    std::cout << fmt::format("{:<32} {:<10} {:<10} {:<19} {:>9} {:>10}  {}\n", "NAME", "KIND", "STATUS",
                             "CREATED", "DURATION", "VALID_ACC", "REASON");
    const double now = store::unix_now();
    for (const auto& job : jobs) {
      const json metrics = parse_or_empty(job.final_metrics_json);
      const std::string accuracy = metrics.contains("valid_accuracy") && metrics["valid_accuracy"].is_number()
                                       ? fmt::format("{:.4f}", metrics["valid_accuracy"].get<double>())
                                       : "-";
      std::cout << fmt::format("{:<32} {:<10} {:<10} {:<19} {:>9} {:>10}  {}\n", job.name, job.kind,
                               store::job_status_name(job.status), format_time(job.created_at),
                               format_duration(job.duration_seconds(now)), accuracy, job.failure_reason);
    }
  });
}

void register_describe(CLI::App& jobs, CommandContext& context) {
  auto name = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  auto* describe = jobs.add_subcommand("describe", "Everything the registry knows about one job");
  describe->add_option("name", *name, "Job name")->required();
  describe->add_flag("--json", *as_json, "Print JSON");
  describe->callback([name, as_json, &context] {
    const auto job = open_registry(context)->get_job(*name).value();
    const json out = record_to_json(job);
    if (*as_json) {
      std::cout << out.dump(2) << "\n";
      return;
    }
    std::cout << fmt::format("name:        {}\nkind:        {}\nstatus:      {}\n", job.name, job.kind,
                             store::job_status_name(job.status));
    if (!job.failure_reason.empty()) std::cout << fmt::format("reason:      {}\n", job.failure_reason);
    if (!job.parent.empty()) std::cout << fmt::format("parent:      {}\n", job.parent);
    std::cout << fmt::format("started:     {}\nended:       {}\nduration:    {}\njob dir:     {}\n",
                             format_time(job.started_at), format_time(job.ended_at),
                             format_duration(job.duration_seconds(store::unix_now())), job.job_dir);
    std::cout << "final metrics:\n";
    for (const auto& [key, value] : out["final_metrics"].items()) std::cout << fmt::format("  {}: {}\n", key, value.dump());
    std::cout << "artifacts:\n";
    for (const auto& [key, value] : out["artifacts"].items()) std::cout << fmt::format("  {}: {}\n", key, value.dump());
    std::cout << "spec:\n";
    for (const auto& [key, value] : out["spec"].items()) std::cout << fmt::format("  {}: {}\n", key, value.dump());
  });
}

void register_logs(CLI::App& jobs, CommandContext& context) {
  auto name = std::make_shared<std::string>();
  auto follow = std::make_shared<bool>(false);
  auto* logs = jobs.add_subcommand("logs", "Print a job's log (log.txt)");
  logs->add_option("name", *name, "Job name")->required();
  logs->add_flag("-f,--follow", *follow, "Keep printing until the job ends");
  logs->callback([name, follow, &context] {
    auto registry = open_registry(context);
    auto job = registry->get_job(*name).value();
    if (!job.host.empty() && job.host != store::this_host()) {
      throw Error(failed_precondition("job '{}' ran on host '{}': its log is there ({})", *name, job.host,
                                      store::JobPaths{job.job_dir}.log().string()));
    }
    const auto path = store::JobPaths{job.job_dir}.log();
    std::ifstream in(path);
    if (!in) throw Error(not_found("job '{}' has no log at '{}' yet", *name, path.string()));
    std::string line;
    while (true) {
      while (std::getline(in, line)) std::cout << line << "\n";
      std::cout.flush();
      if (!*follow) break;
      job = registry->get_job(*name).value();
      if (job.status != store::JobStatus::kInProgress) {
        in.clear();
        while (std::getline(in, line)) std::cout << line << "\n";
        break;
      }
      in.clear();
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  });
}

void register_stop(CLI::App& jobs, CommandContext& context) {
  auto name = std::make_shared<std::string>();
  auto* stop = jobs.add_subcommand(
      "stop", "Stop a running job: it writes a checkpoint and ends Stopped (resume with --resume)");
  stop->add_option("name", *name, "Job name")->required();
  stop->callback([name, &context] {
    const auto job = open_registry(context)->get_job(*name).value();
    if (Status stopped = store::request_stop(job); !stopped.ok()) throw Error(stopped);
    std::cout << fmt::format("sent SIGTERM to job '{}' (pid {}); it checkpoints and ends Stopped\n", *name, job.pid);
  });
}

}  // namespace

void register_jobs_commands(CLI::App& app, CommandContext& context) {
  auto* jobs = app.add_subcommand("jobs", "Training and tuning jobs: list, describe, logs, stop");
  jobs->require_subcommand(1);
  register_list(*jobs, context);
  register_describe(*jobs, context);
  register_logs(*jobs, context);
  register_stop(*jobs, context);
}

}  // namespace kennel::cli

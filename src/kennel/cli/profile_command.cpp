// `kennel profile JOB [--json]`: the profiler's summary of a training job
// (initialisation / loop / finalisation time, step statistics, time by phase,
// the rules that fired with their recommendations) and where its report and
// trace are. Reads profile/summary.json, written when the job finished.
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kennel/cli/command.h"
#include "kennel/store/layout.h"
#include "kennel/util/fs.h"
#include "kennel/util/status.h"

namespace kennel::cli {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string seconds_text(const json& value) {
  return value.is_number() ? format_duration(value.get<double>()) : "-";
}

std::string number_text(const json& value, const char* format = "{:.1f}") {
  return value.is_number() ? fmt::format(fmt::runtime(format), value.get<double>()) : "-";
}

}  // namespace

void register_profile_command(CLI::App& app, CommandContext& context) {
  struct Flags {
    std::string job;
    bool json_output = false;
  };
  auto flags = std::make_shared<Flags>();
  auto* profile = app.add_subcommand("profile", "The profiler's summary of a job and where its report is");
  profile->add_option("job", flags->job, "Job name")->required();
  profile->add_flag("--json", flags->json_output, "The whole summary as JSON");
  profile->callback([flags, &context] {
    const fs::path dir = store::JobPaths{job_dir_of(context, flags->job)}.profile();
    auto text = read_file_text(dir / "summary.json");
    if (!text.ok()) {
      throw Error(not_found("job '{}' has no profile ({} is missing): train with --profiler default, and the "
                            "profile is written when the job ends",
                            flags->job, (dir / "summary.json").string()));
    }
    json summary = json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (summary.is_discarded() || !summary.is_object()) {
      throw Error(Status(ErrorCode::kDataLoss, fmt::format("'{}' is not valid JSON: the job may have been killed "
                                                           "while writing it",
                                                           (dir / "summary.json").string())));
    }
    summary["report"] = (dir / "report.html").string();
    if (flags->json_output) {
      std::cout << summary.dump(2) << "\n";
      return;
    }
    const json job = summary.value("job", json::object());
    const json steps = summary.value("steps", json::object());
    std::cout << fmt::format("job {} on {} ({} cores, {} decode / {} compute threads)\n", flags->job,
                             job.value("device", std::string("?")), number_text(job.value("cores", json()), "{:.0f}"),
                             number_text(job.value("decode_threads", json()), "{:.0f}"),
                             number_text(job.value("compute_threads", json()), "{:.0f}"));
    std::cout << fmt::format("  initialisation {}   training loop {}   finalisation {}\n",
                             seconds_text(job.value("init_seconds", json())),
                             seconds_text(job.value("loop_seconds", json())),
                             seconds_text(job.value("finalisation_seconds", json())));
    std::cout << fmt::format("  steps {}: mean {} ms, p50 {} ms, p95 {} ms, max {} ms, {} outliers\n",
                             number_text(steps.value("count", json()), "{:.0f}"),
                             number_text(steps.value("mean_ms", json())), number_text(steps.value("p50_ms", json())),
                             number_text(steps.value("p95_ms", json())), number_text(steps.value("max_ms", json())),
                             number_text(steps.value("outlier_count", json()), "{:.0f}"));
    std::string phases;
    for (const auto& phase : summary.value("phases", json::array())) {
      const double share = phase.value("share", 0.0);
      if (share < 0.005) continue;
      phases += fmt::format("{}{} {:.0f}%", phases.empty() ? "" : ", ", phase.value("phase", std::string("?")),
                            share * 100);
    }
    std::cout << "  time by phase: " << (phases.empty() ? "-" : phases) << "\n";
    std::cout << "rules:\n";
    for (const auto& rule : summary.value("rules", json::array())) {
      const bool triggered = rule.value("triggered", false);
      std::cout << fmt::format("  {:<24} {:<10} {}\n", rule.value("rule", std::string("?")),
                               triggered ? "TRIGGERED" : "ok", rule.value("message", std::string()));
      if (triggered && !rule.value("recommendation", std::string()).empty()) {
        std::cout << fmt::format("  {:<24} {:<10} -> {}\n", "", "", rule.value("recommendation", std::string()));
      }
    }
    std::cout << "report: " << summary["report"].get<std::string>() << "\n";
    if (summary.contains("trace")) std::cout << "trace:  " << summary["trace"].get<std::string>() << "\n";
  });
}

}  // namespace kennel::cli

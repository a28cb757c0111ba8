// `kennel debug JOB`: the debugger's rule table of a job; `kennel debug
// tensors JOB` the recorded tensor summaries; `--plot` a chart of the losses.
#include <algorithm>
#include <cctype>
#include <iostream>
#include <regex>

#include <nlohmann/json.hpp>

#include "kennel/cli/command.h"
#include "kennel/debug/tensor_store.h"
#include "kennel/report/html.h"
#include "kennel/report/png_chart.h"
#include "kennel/report/svg_chart.h"
#include "kennel/store/job_registry.h"
#include "kennel/store/layout.h"
#include "kennel/util/fs.h"

namespace kennel::cli {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

struct DebugFlags {
  std::string job;
  bool json_output = false;
  std::string plot;
  std::string name_regex;
  std::optional<int64_t> step;
};

fs::path debug_dir_of(const CommandContext& context, const std::string& job) {
  return store::JobPaths{job_dir_of(context, job)}.debug();
}

std::regex compile(const std::string& pattern) {
  try {
    return std::regex(pattern.empty() ? ".*" : pattern);
  } catch (const std::regex_error& error) {
    throw Error(invalid_argument("--name '{}' is not a valid regex: {}", pattern, error.what()));
  }
}

// The summaries whose name matches (and step, when given), in index order.
std::vector<json> select(const fs::path& dir, const std::string& pattern, std::optional<int64_t> step) {
  auto index = debug::read_index(dir);
  if (!index.ok()) throw Error(index.status());
  const std::regex regex = compile(pattern);
  std::vector<json> out;
  for (const auto& entry : *index) {
    if (step && entry.step != *step) continue;
    if (!std::regex_search(entry.name, regex)) continue;
    auto summary = debug::read_summary(dir, entry);
    if (!summary.ok()) throw Error(summary.status());
    out.push_back(std::move(*summary));
  }
  return out;
}

double number(const json& value) {
  if (value.is_number()) return value.get<double>();
  return std::nan("");
}

void write_plot(const fs::path& dir, const std::string& job, const std::string& pattern, const fs::path& out) {
  std::vector<report::Chart> charts;
  std::vector<report::Series> series;
  auto add = [&](const std::string& name, const std::string& label) {
    report::Series line;
    line.name = label;
    for (const auto& summary : select(dir, "^" + name + "$", std::nullopt)) {
      line.x.push_back(static_cast<double>(summary["step"].get<int64_t>()));
      line.y.push_back(summary.contains("values") ? number(summary["values"][0]) : number(summary["mean"]));
    }
    if (!line.x.empty()) series.push_back(std::move(line));
  };
  add("losses/train_loss", "train loss");
  add("losses/valid_loss", "valid loss");
  report::ChartOptions losses;
  losses.title = "Loss over steps";
  losses.x_label = "step";
  losses.y_label = "loss";
  charts.emplace_back(losses, std::move(series));
  if (!pattern.empty()) {
    std::map<std::string, report::Series> by_name;
    for (const auto& summary : select(dir, pattern, std::nullopt)) {
      auto& line = by_name[summary["name"].get<std::string>() + " (" + summary["mode"].get<std::string>() + ")"];
      line.name = summary["name"].get<std::string>();
      line.x.push_back(static_cast<double>(summary["step"].get<int64_t>()));
      line.y.push_back(number(summary["mean"]));
    }
    std::vector<report::Series> tensors;
    for (auto& [unused, line] : by_name) tensors.push_back(std::move(line));
    report::ChartOptions means;
    means.title = "Mean of " + pattern;
    means.x_label = "step";
    means.y_label = "mean";
    charts.emplace_back(means, std::move(tensors));
  }
  std::string extension = out.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(), [](unsigned char c) { return std::tolower(c); });
  Status written;
  if (extension == ".png") {
    written = report::write_png_charts(out, charts);
  } else {
    std::string body = "<h1>Debugger: " + report::html_escape(job) + "</h1>";
    for (const auto& [options, lines] : charts) body += report::render_svg_chart(options, lines);
    written = write_file_atomic(out, report::html_page("Debugger — " + job, body));
  }
  if (!written.ok()) throw Error(written);
}

std::string cell(const json& value) {
  if (value.is_null()) return "-";
  if (value.is_string()) return value.get<std::string>();
  return value.dump();
}

}  // namespace

void register_debug_commands(CLI::App& app, CommandContext& context) {
  auto flags = std::make_shared<DebugFlags>();
  auto* debug = app.add_subcommand("debug", "The debugger's findings for a job: rule statuses, recorded tensors, plots");
  debug->require_subcommand(0, 1);
  debug->fallthrough();
  debug->add_option("job", flags->job, "Job name");
  debug->add_flag("--json", flags->json_output, "Rule results as JSON");
  debug->add_option("--plot", flags->plot, "Write a chart of train vs valid loss (and --name tensors) to this file: .png, else HTML");
  debug->add_option("--name", flags->name_regex, "With --plot: also chart the tensors whose name matches this regex");
  debug->callback([flags, debug, &context] {
    if (!debug->get_subcommands().empty()) return;
    if (flags->job.empty()) throw Error(invalid_argument("kennel debug: name the job (`kennel debug JOB`)"));
    const fs::path dir = debug_dir_of(context, flags->job);
    auto text = read_file_text(dir / "rules.json");
    if (!text.ok()) {
      throw Error(not_found("job '{}' ran without the debugger (no {}): train with --debugger default", flags->job,
                            (dir / "rules.json").string()));
    }
    json rules;
    try {
      rules = json::parse(*text).at("rules");
    } catch (const std::exception& error) {
      throw Error(Status(ErrorCode::kDataLoss, fmt::format("'{}': {}", (dir / "rules.json").string(), error.what())));
    }
    if (!flags->plot.empty()) {
      write_plot(dir, flags->job, flags->name_regex, flags->plot);
      std::cerr << "plot: " << flags->plot << "\n";
    }
    if (flags->json_output) {
      std::cout << json{{"job", flags->job}, {"debug_dir", dir.string()}, {"rules", rules}}.dump(2) << "\n";
      return;
    }
    std::cout << fmt::format("{:<26} {:<14} {:>6}  {}\n", "RULE", "STATUS", "STEP", "MESSAGE");
    for (const auto& rule : rules) {
      std::cout << fmt::format("{:<26} {:<14} {:>6}  {}\n", cell(rule.value("rule", json())),
                               cell(rule.value("status", json())), cell(rule.value("step", json())),
                               cell(rule.value("message", json())));
    }
    int issues = 0;
    for (const auto& rule : rules) issues += rule.value("status", std::string()) == "IssuesFound";
    if (issues > 0) context.exit_code = 1;
  });

  auto tensor_flags = std::make_shared<DebugFlags>();
  auto* tensors = debug->add_subcommand("tensors", "Recorded tensor summaries (one seek per tensor through the index)");
  tensors->add_option("job", tensor_flags->job, "Job name")->required();
  tensors->add_option("--name", tensor_flags->name_regex, "Only tensors whose name matches this regex");
  tensors->add_option("--step", tensor_flags->step, "Only this step");
  tensors->add_flag("--json", tensor_flags->json_output, "As JSON lines");
  tensors->callback([tensor_flags, &context] {
    const fs::path dir = debug_dir_of(context, tensor_flags->job);
    const auto summaries = select(dir, tensor_flags->name_regex, tensor_flags->step);
    if (tensor_flags->json_output) {
      for (const auto& summary : summaries) std::cout << summary.dump() << "\n";
      return;
    }
    std::cout << fmt::format("{:>6} {:<5} {:<52} {:>12} {:>12} {:>12} {:>12}\n", "STEP", "MODE", "NAME", "MIN", "MEAN",
                             "MAX", "L2");
    for (const auto& s : summaries) {
      auto n = [&](const char* key) {
        const json& v = s[key];
        return v.is_number() ? fmt::format("{:.5g}", v.get<double>()) : cell(v);
      };
      std::cout << fmt::format("{:>6} {:<5} {:<52} {:>12} {:>12} {:>12} {:>12}\n", s["step"].get<int64_t>(),
                               s["mode"].get<std::string>(), s["name"].get<std::string>(), n("min"), n("mean"), n("max"),
                               n("l2"));
    }
  });
}

}  // namespace kennel::cli

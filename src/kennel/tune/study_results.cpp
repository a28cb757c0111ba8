// Reading a study back: load_study, the best trial, the summary `kennel tune
// describe` prints and the HTML report draws (declared in tuning_job.h).
#include <algorithm>
#include <fstream>

#include <fmt/format.h>

#include "kennel/store/layout.h"
#include "kennel/report/tuning_report.h"
#include "kennel/tune/tuning_job.h"
#include "kennel/util/fs.h"

namespace kennel::tune {

namespace fs = std::filesystem;
using nlohmann::json;

Result<StudyState> load_study(const fs::path& home, const std::string& name) {
  auto registry = store::JobRegistry::open(store::HomeLayout(home).registry());
  if (!registry.ok()) return registry.status();
  auto record = (*registry)->get_job(name);
  if (!record.ok()) {
    return not_found("no tuning job named '{}' in {} (`kennel jobs list` shows the jobs)", name,
                     store::HomeLayout(home).registry().string());
  }
  return load_study_files(*record, store::HomeLayout(home).study(name));
}

Result<StudyState> load_study_files(const store::JobRecord& record, const store::StudyPaths& study) {
  if (record.kind != "tuning") {
    return invalid_argument("'{}' is a {} job, not a tuning job", record.name, record.kind);
  }
  StudyState state;
  state.record = record;
  auto study_text = read_file_text(study.study());
  if (!study_text.ok()) return study_text.status();
  try {
    auto spec = study_spec_from_json(json::parse(*study_text));
    if (!spec.ok()) return spec.status().with_context((study.study()).string());
    state.spec = std::move(*spec);
  } catch (const json::exception& error) {
    return Status(ErrorCode::kDataLoss, fmt::format("'{}' is not valid JSON: {}", (study.study()).string(), error.what()));
  }
  std::error_code exists_error;
  if (fs::exists(study.trials(), exists_error)) {
    auto trials_text = read_file_text(study.trials());
    if (!trials_text.ok()) return trials_text.status();
    try {
      const json trials = json::parse(*trials_text);
      for (const auto& trial : trials.value("trials", json::array())) state.trials.push_back(Trial::from_json(trial));
    } catch (const json::exception& error) {
      return Status(ErrorCode::kDataLoss,
                    fmt::format("'{}' is not valid JSON: {}", (study.trials()).string(), error.what()));
    }
  }
  return state;
}

std::optional<size_t> best_trial(const StudyState& state) {
  // A completed trial beats any stopped one: only a completed trial has a model to use.
  std::optional<size_t> best;
  auto rank = [&](const Trial& trial) { return trial.state == "Completed" ? 0 : 1; };
  for (size_t i = 0; i < state.trials.size(); ++i) {
    const Trial& trial = state.trials[i];
    if (!trial.finished() || !trial.objective || trial.state == "Failed") continue;
    if (!best) {
      best = i;
      continue;
    }
    const Trial& current = state.trials[*best];
    if (rank(trial) != rank(current)) {
      if (rank(trial) < rank(current)) best = i;
      continue;
    }
    const bool better = state.spec.objective.maximize() ? *trial.objective > *current.objective
                                                        : *trial.objective < *current.objective;
    if (better) best = i;
  }
  return best;
}

json best_trial_json(const fs::path& home, const StudyState& state) {
  const auto best = best_trial(state);
  if (!best) return nullptr;
  const Trial& trial = state.trials[*best];
  const store::JobPaths job = store::HomeLayout(home).job(trial.name);
  json out = {{"name", trial.name},
              {"tuning_job", state.spec.name},
              {"status", trial.state},
              {"objective",
               {{"metric", state.spec.objective.metric},
                {"goal", state.spec.objective.goal},
                {"at", state.spec.objective.at},
                {"value", *trial.objective}}},
              {"hyperparameters", trial.hyperparameters},
              {"epochs_run", trial.epochs_run},
              {"job_dir", job.dir.string()},
              {"model", nullptr}};
  std::error_code error;
  if (trial.state == "Completed" && fs::exists(job.model() / "model.json", error)) {
    out["model"] = job.model().string();
  }
  if (state.spec.command.empty()) {
    // The trial's full training spec, ready for `kennel train --spec`: its own name
    // and the per-trial thread split are dropped.
    json spec = state.spec.training;
    if (auto text = read_file_text(job.spec()); text.ok()) {
      try {
        spec = json::parse(*text);
      } catch (const json::exception&) {
      }
    }
    for (const auto& [key, value] : trial.hyperparameters.items()) spec[key] = value;
    spec.erase("name");
    if (!state.spec.space.find("threads")) {
      spec["threads"] = state.spec.training.contains("threads") ? state.spec.training["threads"] : json(0);
    }
    out["spec"] = spec;
  } else {
    out["command"] = state.spec.command;
  }
  return out;
}

json study_summary_json(const fs::path& home, const StudyState& state) {
  json counts = json::object();
  json trials = json::array();
  for (const auto& trial : state.trials) {
    std::string status = trial.state;
    if (status == "pending-retry") status = "pending";
    double end = trial.ended_at > 0 ? trial.ended_at : (trial.started_at > 0 ? store::unix_now() : 0);
    // A study that is not running has no running trials: they were interrupted with it and re-run on resume.
    const bool study_running = state.record.status == store::JobStatus::kInProgress;
    if (!study_running && (status == "running" || status == "pending")) {
      status = "Interrupted";
      if (state.record.ended_at > 0) end = std::min(end, state.record.ended_at);
    }
    counts[status] = counts.value(status, 0) + 1;
    trials.push_back({{"index", trial.index},
                      {"name", trial.name},
                      {"status", status},
                      {"early_stopped", trial.early_stopped},
                      {"objective", trial.objective ? json(*trial.objective) : json(nullptr)},
                      {"hyperparameters", trial.hyperparameters},
                      {"epochs_run", trial.epochs_run},
                      {"attempts", trial.attempts},
                      {"started_at", trial.started_at},
                      {"ended_at", trial.ended_at},
                      {"duration_seconds", trial.started_at > 0 ? end - trial.started_at : 0.0},
                      {"reason", trial.reason}});
  }
  // Sorted by objective, best first; trials without one last, by index.
  const bool maximize = state.spec.objective.maximize();
  std::stable_sort(trials.begin(), trials.end(), [&](const json& a, const json& b) {
    const bool a_has = a["objective"].is_number(), b_has = b["objective"].is_number();
    if (a_has != b_has) return a_has;
    if (!a_has) return a["index"].get<int64_t>() < b["index"].get<int64_t>();
    const double x = a["objective"].get<double>(), y = b["objective"].get<double>();
    return maximize ? x > y : x < y;
  });
  json best = best_trial_json(home, state);
  if (!best.is_null()) {
    json curve = json::array();
    std::ifstream in(store::HomeLayout(home).job(best["name"].get<std::string>()).metrics());
    std::string line;
    while (std::getline(in, line)) {
      try {
        json record = json::parse(line);
        if (record.value("type", std::string()) == "epoch") {
          record.erase("type");
          curve.push_back(record);
        }
      } catch (const json::exception&) {
      }
    }
    best["curve"] = curve;
    best["objective_value"] = best["objective"]["value"];
  }
  json report_best = best.is_null() ? json(nullptr)
                                    : json{{"name", best["name"]},
                                           {"objective", best["objective"]["value"]},
                                           {"hyperparameters", best["hyperparameters"]},
                                           {"model", best["model"]},
                                           {"curve", best["curve"]}};
  return {{"name", state.spec.name},
          {"status", store::job_status_name(state.record.status)},
          {"reason", state.record.failure_reason},
          {"strategy", state.spec.strategy},
          {"early_stopping", state.spec.early_stopping.kind},
          {"objective",
           {{"metric", state.spec.objective.metric}, {"goal", state.spec.objective.goal}, {"at", state.spec.objective.at}}},
          {"parameters", state.spec.space.to_json()},
          {"max_jobs", state.spec.max_jobs},
          {"max_parallel_jobs", state.spec.max_parallel_jobs},
          {"seed", state.spec.seed},
          {"counts", counts},
          {"tuning_dir", store::HomeLayout(home).study(state.spec.name).dir.string()},
          {"trials", trials},
          {"best", report_best}};
}

Result<fs::path> write_tuning_report(const fs::path& home, const StudyState& state) {
  const fs::path path = store::HomeLayout(home).study(state.spec.name).report();
  KENNEL_RETURN_IF_ERROR(write_file_atomic(path, report::render_tuning_report(study_summary_json(home, state))));
  return path;
}

}  // namespace kennel::tune

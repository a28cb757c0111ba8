// Reading a study back: load_study (from the store, any host), the best
// trial, the summary `kennel tune describe` prints and the HTML report draws
// (declared in tuning_job.h). A study an older kennel ran with files only
// (study.json + trials.json, no rows in the store) is imported on first read
// (a read-only store reads the files instead).
#include <algorithm>
#include <fstream>

#include <fmt/format.h>

#include "kennel/report/tuning_report.h"
#include "kennel/store/layout.h"
#include "kennel/tune/model_retention.h"
#include "kennel/tune/tuning_job.h"
#include "kennel/util/fs.h"

namespace kennel::tune {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct FileStudy {
  StudySpec spec;
  std::vector<Trial> trials;
};

// A study from before the store held them: study.json and trials.json.
Result<FileStudy> read_file_study(const store::StudyPaths& files) {
  auto study_text = read_file_text(files.study());
  if (!study_text.ok()) return study_text.status();
  FileStudy study;
  try {
    auto parsed = study_spec_from_json(json::parse(*study_text));
    if (!parsed.ok()) return parsed.status().with_context(files.study().string());
    study.spec = std::move(*parsed);
  } catch (const json::exception& error) {
    return Status(ErrorCode::kDataLoss, fmt::format("'{}' is not valid JSON: {}", files.study().string(), error.what()));
  }
  if (auto text = read_file_text(files.trials()); text.ok()) {
    try {
      for (const auto& trial : json::parse(*text).value("trials", json::array())) {
        Trial imported = Trial::from_json(trial);
        if (imported.state == "pending-retry") imported.state = store::kTrialPending;
        study.trials.push_back(std::move(imported));
      }
    } catch (const json::exception& error) {
      return Status(ErrorCode::kDataLoss, fmt::format("'{}' is not valid JSON: {}", files.trials().string(), error.what()));
    }
  }
  return study;
}

// Its files become rows, once.
Status import_file_study(store::Store& store, const store::JobRecord& record, const store::StudyPaths& files) {
  auto read = read_file_study(files);
  if (!read.ok()) return read.status();
  const StudySpec& spec = read->spec;
  store::StudyRecord study;
  study.name = record.name;
  study.spec_json = to_json(spec).dump();
  study.max_jobs = spec.max_jobs;
  study.max_parallel_jobs = spec.max_parallel_jobs;
  study.max_retries = spec.max_retries;
  study.lease_seconds = spec.lease_seconds;
  study.requeue_grace_seconds = spec.requeue_grace_seconds;
  // The registry row exists already: only the study row and the trials are new.
  KENNEL_RETURN_IF_ERROR(store.import_study(study));
  for (auto& trial : read->trials) {
    if (trial.state == store::kTrialRunning) trial.state = store::kTrialPending;  // its tuner is gone
    KENNEL_RETURN_IF_ERROR(store.put_trial(record.name, trial));
  }
  return {};
}

}  // namespace

Result<StudyState> load_study(store::Store& store, const std::string& name) {
  auto record = store.get_job(name);
  if (!record.ok()) {
    return not_found("no tuning job named '{}' in the store {} (`kennel jobs list` shows the jobs)", name,
                     store.describe());
  }
  return load_study(store, *record, store::StudyPaths{record->job_dir});
}

Result<StudyState> load_study(store::Store& store, const store::JobRecord& record, const store::StudyPaths& files) {
  const std::string& name = record.name;
  if (record.kind != "tuning") return invalid_argument("'{}' is a {} job, not a tuning job", name, record.kind);
  StudyState state;
  state.record = record;
  state.store = store.describe();
  auto study = store.get_study(name);
  if (!study.ok() && study.status().code() == ErrorCode::kNotFound && !store.location().shared()) {
    if (store.read_only()) {
      // A reader leaves the import to the next writer and reads the files as they are.
      auto read = read_file_study(files);
      if (!read.ok()) return read.status().with_context(fmt::format("reading study '{}'", name));
      state.spec = std::move(read->spec);
      state.trials = std::move(read->trials);
      return state;
    }
    KENNEL_RETURN_IF_ERROR(import_file_study(store, record, files).with_context(fmt::format("importing study '{}'", name)));
    study = store.get_study(name);
  }
  if (!study.ok()) return study.status();
  try {
    auto spec = study_spec_from_json(json::parse(study->spec_json));
    if (!spec.ok()) return spec.status().with_context(fmt::format("the spec of study '{}'", name));
    state.spec = std::move(*spec);
  } catch (const json::exception& error) {
    return Status(ErrorCode::kDataLoss, fmt::format("the spec of study '{}' is not valid JSON: {}", name, error.what()));
  }
  auto trials = store.list_trials(name);
  if (!trials.ok()) return trials.status();
  state.trials = std::move(*trials);
  return state;
}

Result<StudyState> load_study(const TuneOptions& options, const std::string& name) {
  auto store = store::open_store(options.store);
  if (!store.ok()) return store.status();
  return load_study(**store, name);
}

std::optional<size_t> best_trial(const StudyState& state) { return best_trial_index(state.trials, state.spec.objective); }

json best_trial_json(const fs::path& home, const StudyState& state) {
  const auto best = best_trial(state);
  if (!best) return nullptr;
  const Trial& trial = state.trials[*best];
  const store::JobPaths job = store::HomeLayout(home).job(trial.name);
  const bool here = trial.host.empty() || trial.host == store::this_host();
  json out = {{"name", trial.name},
              {"tuning_job", state.spec.name},
              {"status", trial.state},
              {"objective",
               {{"metric", state.spec.objective.metric},
                {"goal", state.spec.objective.goal},
                {"at", state.spec.objective.at},
                {"value", *trial.objective}}},
              {"hyperparameters", trial.hyperparameters},
              {"source", trial.source},
              {"epochs_run", trial.epochs_run},
              {"host", trial.host},
              {"job_dir", job.dir.string()},
              {"model", nullptr}};
  std::error_code error;
  if (trial.state == store::kTrialCompleted && here && fs::exists(job.model() / "model.json", error)) {
    out["model"] = job.model().string();
  }
  if (state.spec.command.empty()) {
    // The trial's full training spec, ready for `kennel train --spec`: its own
    // name and the per-trial thread split are dropped.
    json spec = state.spec.training;
    if (auto text = here ? read_file_text(job.spec()) : Result<std::string>(not_found("elsewhere")); text.ok()) {
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
  json counts = json::object(), chosen_by = json::object();
  json trials = json::array();
  const bool study_running = state.record.status == store::JobStatus::kInProgress;
  for (const auto& trial : state.trials) {
    std::string status = trial.state;
    double end = trial.ended_at > 0 ? trial.ended_at : (trial.started_at > 0 ? store::unix_now() : 0);
    // A study that is not running has no running trials: they were interrupted with it and re-run on resume.
    if (!study_running && (status == store::kTrialRunning || status == store::kTrialPending)) {
      status = "Interrupted";
      if (state.record.ended_at > 0) end = std::min(end, state.record.ended_at);
    }
    counts[status] = counts.value(status, 0) + 1;
    if (!trial.source.empty()) chosen_by[trial.source] = chosen_by.value(trial.source, 0) + 1;
    trials.push_back({{"index", trial.index},
                      {"name", trial.name},
                      {"status", status},
                      {"early_stopped", trial.early_stopped},
                      {"objective", trial.objective ? json(*trial.objective) : json(nullptr)},
                      {"hyperparameters", trial.hyperparameters},
                      {"source", trial.source},
                      {"epochs_run", trial.epochs_run},
                      {"attempts", trial.attempts},
                      {"host", trial.host},
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
    if (curve.empty()) {
      // It ran on another host: the store has its objective per epoch.
      const Trial& trial = state.trials[*best_trial(state)];
      for (size_t epoch = 0; epoch < trial.intermediate.size(); ++epoch) {
        curve.push_back({{"epoch", epoch}, {state.spec.objective.metric, trial.intermediate[epoch]}});
      }
    }
    best["curve"] = curve;
  }
  json report_best = best.is_null() ? json(nullptr)
                                    : json{{"name", best["name"]},
                                           {"objective", best["objective"]["value"]},
                                           {"hyperparameters", best["hyperparameters"]},
                                           {"model", best["model"]},
                                           {"host", best["host"]},
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
          {"startup_trials", state.spec.sampler.startup_trials},
          {"save_models", state.spec.save_models},
          {"seed", state.spec.seed},
          {"store", state.store},
          {"counts", counts},
          {"chosen_by", chosen_by},
          {"tuning_dir", store::HomeLayout(home).study(state.spec.name).dir.string()},
          {"trials", trials},
          {"best", report_best}};
}

Result<fs::path> write_tuning_report(const fs::path& home, const StudyState& state) {
  const fs::path path = store::HomeLayout(home).study(state.spec.name).report();
  KENNEL_RETURN_IF_ERROR(kennel::create_directories(path.parent_path()));
  KENNEL_RETURN_IF_ERROR(write_file_atomic(path, report::render_tuning_report(study_summary_json(home, state))));
  return path;
}

}  // namespace kennel::tune

// The layout of a Kennel home, in one place: where the registry, every
// training job's directory, every tuning study's directory and the shared
// caches live, and the names of the files inside them. Everything that reads
// or writes a job's files asks this header for the path; no other file spells
// "metrics.jsonl" or "jobs/<name>".
//
//   <home>/kennel.db                      the embedded registry (SQLite)
//   <home>/jobs/<name>/                   one training job (JobPaths)
//   <home>/tuning/<name>/                 one tuning study (StudyPaths)
//   <home>/cache/features/                feature caches shared by jobs
//   <home>/cache/s3/                      objects synced from S3 (S3CachePaths)
//   <home>/endpoints/<host>-<pid>.json    one running `kennel serve` (store/endpoint_registry.h)
//
// What is inside debug/ and profile/ belongs to the debugger and the profiler;
// what is inside model/ belongs to models/model_dir. Values only; no I/O.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace kennel::store {

// One training job's directory.
struct JobPaths {
  std::filesystem::path dir;

  std::filesystem::path spec() const { return dir / "spec.json"; }        // the resolved spec
  std::filesystem::path log() const { return dir / "log.txt"; }           // human log lines
  std::filesystem::path metrics() const { return dir / "metrics.jsonl"; }  // one JSON record per line
  std::filesystem::path events() const { return dir / "events"; }         // TensorBoard event files
  std::filesystem::path checkpoints() const { return dir / "checkpoints"; }
  std::filesystem::path model() const { return dir / "model"; }  // model.safetensors + model.json
  std::filesystem::path evaluation() const { return dir / "evaluation"; }
  std::filesystem::path debug() const { return dir / "debug"; }      // the debugger's records and rules.json
  std::filesystem::path profile() const { return dir / "profile"; }  // the profiler's records and report
};

// One tuning study's directory.
struct StudyPaths {
  std::filesystem::path dir;

  std::filesystem::path study() const { return dir / "study.json"; }  // the resolved study spec
  std::filesystem::path trials() const { return dir / "trials.json"; }  // the trials table
  std::filesystem::path best() const { return dir / "best.json"; }
  std::filesystem::path best_spec() const { return dir / "best-spec.json"; }  // retrain with `--spec`
  std::filesystem::path log() const { return dir / "log.txt"; }
  std::filesystem::path report() const { return dir / "report.html"; }
  std::filesystem::path trial_files() const { return dir / "trials"; }  // per-trial specs and logs
  std::filesystem::path trial_log(const std::string& trial) const { return trial_files() / (trial + ".log"); }
  std::filesystem::path trial_spec(const std::string& trial) const {
    return trial_files() / (trial + ".spec.json");
  }
};

// Objects synced from S3 (data/s3_dataset.h): each object version is stored
// once under objects/, named by a hash of (bucket, key, ETag); a dataset is a
// view of hard links to them under datasets/, named by a hash of its URI; a
// model directory is a view under models/ the same way.
struct S3CachePaths {
  std::filesystem::path dir;

  std::filesystem::path objects() const { return dir / "objects"; }  // inside: data/s3_sync.h's
  std::filesystem::path datasets() const { return dir / "datasets"; }
  std::filesystem::path dataset(const std::string& id) const { return datasets() / id; }
  std::filesystem::path models() const { return dir / "models"; }
  std::filesystem::path model(const std::string& id) const { return models() / id; }
  // Held while a view is being brought up to date (concurrent trials share one).
  std::filesystem::path view_lock(const std::filesystem::path& view) const {
    return view.parent_path() / (view.filename().string() + ".lock");
  }
};

class HomeLayout {
 public:
  explicit HomeLayout(std::filesystem::path home) : home_(std::move(home)) {}

  const std::filesystem::path& home() const { return home_; }
  std::filesystem::path registry() const { return home_ / "kennel.db"; }
  std::filesystem::path jobs() const { return home_ / "jobs"; }
  std::filesystem::path studies() const { return home_ / "tuning"; }
  std::filesystem::path feature_cache() const { return home_ / "cache" / "features"; }
  S3CachePaths s3_cache() const { return {home_ / "cache" / "s3"}; }
  std::filesystem::path endpoints() const { return home_ / "endpoints"; }
  std::filesystem::path endpoint(const std::string& host, int64_t pid) const {
    return endpoints() / (host + "-" + std::to_string(pid) + ".json");
  }

  JobPaths job(const std::string& name) const { return {jobs() / name}; }
  StudyPaths study(const std::string& name) const { return {studies() / name}; }

 private:
  std::filesystem::path home_;
};

}  // namespace kennel::store

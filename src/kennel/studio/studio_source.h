// Where Studio reads jobs, studies and endpoints from: the narrow interface
// the web pages need (tests put their own behind the same pages).
//
// HomeSource reads a Kennel home and its store (the home's embedded SQLite
// file, or --store: another SQLite file or a shared PostgreSQL): the store
// opened read-only for each call (store.h, open_store_read_only: a short
// busy timeout, a few statements per read, so a dashboard never holds a lock
// a trainer waits for and never writes to the store), the job and study
// folders on this host (store/layout.h), and the endpoint files
// (store/endpoint_registry.h).
//
// Thread-safety: implementations are safe to call from several threads at once.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kennel/store/endpoint_registry.h"
#include "kennel/store/job_registry.h"
#include "kennel/store/layout.h"
#include "kennel/store/store.h"
#include "kennel/util/status.h"

namespace kennel::studio {

class StudioSource {
 public:
  virtual ~StudioSource() = default;

  // Newest first. A home where no job has run yet is an empty list, not an error.
  virtual Result<std::vector<store::JobRecord>> list_jobs(const store::JobFilter& filter) = 0;
  // kNotFound naming the job when there is none.
  virtual Result<store::JobRecord> get_job(const std::string& name) = 0;
  // A tuning job's study in the shape of tune::study_summary_json (trials,
  // parameters, objective, best with its learning curve). kNotFound when there
  // is no such tuning job; kDataLoss naming the file when its files are corrupt.
  virtual Result<nlohmann::json> study_summary(const std::string& name) = 0;
  // The folder of a study's files (report.html, best-spec.json, trial logs).
  virtual store::StudyPaths study_paths(const std::string& name) const = 0;
  // Running `kennel serve` processes of this home (dead ones left out).
  virtual std::vector<store::EndpointRecord> endpoints() = 0;
  // What is being read, for people: "home /path (store /path/kennel.db, read-only)".
  virtual std::string describe() const = 0;
};

// Reads a Kennel home and its store (`location`, store::parse_store_location).
// `busy_timeout_seconds`: how long one SQLite read waits for a writer's lock
// before the request answers 503.
std::unique_ptr<StudioSource> make_home_source(const std::filesystem::path& home,
                                               const store::StoreLocation& location,
                                               double busy_timeout_seconds = 2);

}  // namespace kennel::studio

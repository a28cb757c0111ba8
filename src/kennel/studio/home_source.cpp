// HomeSource: StudioSource over a Kennel home (see studio_source.h).
#include <fmt/format.h>

#include "kennel/store/store.h"
#include "kennel/studio/studio_source.h"
#include "kennel/tune/tuning_job.h"

namespace kennel::studio {

namespace {

class HomeSource : public StudioSource {
 public:
  HomeSource(const std::filesystem::path& home, store::StoreLocation location, double busy_timeout_seconds)
      : home_(std::filesystem::absolute(home)),
        layout_(home_),
        location_(std::move(location)),
        busy_timeout_seconds_(busy_timeout_seconds) {}

  Result<std::vector<store::JobRecord>> list_jobs(const store::JobFilter& filter) override {
    auto registry = open();
    if (!registry.ok()) {
      if (registry.status().code() == ErrorCode::kNotFound) return std::vector<store::JobRecord>{};
      return registry.status();
    }
    auto records = (*registry)->list_jobs(filter);
    if (records.ok()) {
      for (auto& record : *records) locate(record);
    }
    return records;
  }

  Result<store::JobRecord> get_job(const std::string& name) override {
    auto registry = open();
    if (!registry.ok()) {
      if (registry.status().code() == ErrorCode::kNotFound)
        return not_found("no job named '{}'", name);
      return registry.status();
    }
    auto record = (*registry)->get_job(name);
    if (record.ok()) locate(*record);
    return record;
  }

  Result<nlohmann::json> study_summary(const std::string& name) override {
    auto registry = open();
    if (!registry.ok()) {
      if (registry.status().code() == ErrorCode::kNotFound) return not_found("no job named '{}'", name);
      return registry.status();
    }
    auto record = (*registry)->get_job(name);
    if (!record.ok()) return record.status();
    locate(*record);
    if (record->kind != "tuning")
      return not_found("'{}' is a {} job, not a tuning study", name, record->kind);
    auto state = tune::load_study(**registry, *record, layout_.study(name));
    if (!state.ok()) return state.status();
    return tune::study_summary_json(home_, *state);
  }

  store::StudyPaths study_paths(const std::string& name) const override {
    return layout_.study(name);
  }

  std::vector<store::EndpointRecord> endpoints() override { return store::list_endpoints(home_); }

  std::string describe() const override {
    return fmt::format("home {} (store {}, read-only)", home_.string(), location_.display());
  }

 private:
  // One connection per call: it holds no lock between calls, and a writer's
  // checkpoint never waits on a reader that keeps a read transaction open.
  Result<std::unique_ptr<store::Store>> open() const {
    return store::open_store_read_only(location_, busy_timeout_seconds_);
  }

  // A job started with a relative --home recorded its folder relative to its own working
  // directory: when that path does not lead to it from here, the home's layout does.
  void locate(store::JobRecord& record) const {
    std::error_code error;
    const std::filesystem::path recorded(record.job_dir);
    if (!record.job_dir.empty() && recorded.is_absolute()) return;
    if (!record.job_dir.empty() && std::filesystem::exists(recorded, error)) {
      record.job_dir = std::filesystem::absolute(recorded, error).string();
      return;
    }
    const std::filesystem::path laid_out =
        record.kind == "tuning" ? layout_.study(record.name).dir : layout_.job(record.name).dir;
    if (std::filesystem::exists(laid_out, error))
      record.job_dir = std::filesystem::absolute(laid_out, error).string();
  }

  std::filesystem::path home_;
  store::HomeLayout layout_;
  store::StoreLocation location_;
  double busy_timeout_seconds_;
};

}  // namespace

std::unique_ptr<StudioSource> make_home_source(const std::filesystem::path& home,
                                               const store::StoreLocation& location,
                                               double busy_timeout_seconds) {
  return std::make_unique<HomeSource>(home, location, busy_timeout_seconds);
}

}  // namespace kennel::studio

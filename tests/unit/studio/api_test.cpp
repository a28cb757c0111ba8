#include "kennel/studio/api.h"

#include <fstream>

#include <gtest/gtest.h>

#include "kennel/store/job_registry.h"
#include "kennel/store/layout.h"
#include "kennel/store/store.h"
#include "unit/test_util.h"

namespace kennel::studio {
namespace {

using nlohmann::json;

store::StoreLocation embedded_store(const std::filesystem::path& home) {
  return store::parse_store_location("", home).value();
}

class StudioApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_ = store::JobRegistry::open(layout_.registry()).value();
    add_job("good", R"({"arch": "resnet18", "data": "/data/dogs", "precision": "bf16"})");
    const store::JobPaths good = layout_.job("good");
    write(good.spec(),
          R"({"arch": "resnet18", "data": "/data/dogs", "precision": "bf16", "lr": 0.1})");
    write(good.metrics(), R"({"type":"step","step":1,"train_loss":2.0})"
                          "\n"
                          R"({"type":"step","step":2,"train_loss":1.5})"
                          "\n"
                          R"({"type":"epoch","step":2,"valid_accuracy":0.5})"
                          "\n");
    write(good.log(), "line one\nepoch=0 step=2 train_loss=1.5\n");
    write(
        good.debug() / "rules.json",
        R"({"rules": [{"rule": "LossNotDecreasing", "status": "IssuesFound", "step": 2, "tensor": "losses/train_loss"}]})");
    write(good.model() / "model.json", R"({"arch": "resnet18", "classes": ["a", "b", "c"]})");
    write(good.model() / "model.safetensors", "weights");
    ASSERT_TRUE(registry_->set_status("good", store::JobStatus::kCompleted).ok());

    add_job("damaged", "{not json");
    write(layout_.job("damaged").metrics(), "garbage\n");
    add_job("gone", "{}");
    std::filesystem::remove_all(layout_.job("gone").dir);
  }

  void add_job(const std::string& name, const std::string& spec) {
    store::JobRecord record;
    record.name = name;
    record.spec_json = spec;
    record.job_dir = layout_.job(name).dir.string();
    std::filesystem::create_directories(record.job_dir);
    ASSERT_TRUE(registry_->create_job(record).ok());
  }

  static void write(const std::filesystem::path& path, const std::string& text) {
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path) << text;
  }

  json row(const json& jobs, const std::string& name) {
    for (const auto& job : jobs["jobs"]) {
      if (job["name"] == name) return job;
    }
    return nullptr;
  }

  testing::TempDir dir_;
  store::HomeLayout layout_{dir_.path()};
  std::unique_ptr<store::JobRegistry> registry_;
  std::unique_ptr<StudioSource> source_ = make_home_source(dir_.path(), embedded_store(dir_.path()));
  StudioApi api_{*source_};
};

TEST_F(StudioApiTest, RowsCarryTheRegistryAndWhatIsWrongWithTheFolder) {
  const json jobs = api_.jobs().value();
  ASSERT_EQ(jobs["jobs"].size(), 3u);
  const json good = row(jobs, "good");
  EXPECT_EQ(good["status"], "Completed");
  EXPECT_EQ(good["arch"], "resnet18");
  EXPECT_EQ(good["dataset"], "/data/dogs");
  EXPECT_EQ(good["precision"], "bf16");
  EXPECT_EQ(good["kind"], "training");
  EXPECT_EQ(good["world_size"], 1);
  EXPECT_TRUE(good["problems"].empty());
  const json damaged = row(jobs, "damaged");
  ASSERT_EQ(damaged["problems"].size(), 2u)
      << damaged.dump();  // the registry's spec, the missing spec.json
  EXPECT_NE(damaged["problems"][0].get<std::string>().find("not"), std::string::npos);
  const json gone = row(jobs, "gone");
  EXPECT_NE(gone["problems"][0].get<std::string>().find("missing"), std::string::npos);
}

TEST_F(StudioApiTest, AJobPageHasEverySection) {
  const json job = api_.job("good").value();
  EXPECT_EQ(job["spec"]["lr"], 0.1);  // the folder's spec.json, not the registry's copy
  EXPECT_EQ(job["log"]["lines"].back(), "epoch=0 step=2 train_loss=1.5");
  EXPECT_EQ(job["log_url"], "/files/jobs/good/log.txt");
  const json rule = job["debugger"]["rules"][0];
  EXPECT_EQ(rule["tensor_url"], "/api/jobs/good/tensors?tensor=losses%2Ftrain_loss&step=2");
  EXPECT_TRUE(job["profiler"].is_null());
  EXPECT_EQ(job["model"]["info"]["num_classes"], 3);
  EXPECT_FALSE(job["model"]["info"].contains("classes"));
  EXPECT_EQ(job["model"]["files"].size(), 2u);
  EXPECT_TRUE(job["problems"].empty()) << job["problems"].dump();
}

TEST_F(StudioApiTest, ADamagedJobIsAPageWithItsProblems) {
  const json job = api_.job("damaged").value();
  std::string problems = job["problems"].dump();
  EXPECT_NE(problems.find("spec.json"), std::string::npos);
  EXPECT_NE(problems.find("not JSON records"), std::string::npos);
  EXPECT_TRUE(job["log"]["missing"].get<bool>());
  EXPECT_TRUE(api_.job("gone").ok());
  EXPECT_EQ(api_.job("nope").status().code(), ErrorCode::kNotFound);
}

TEST_F(StudioApiTest, MetricsAreServedFromACursor) {
  json all = api_.metrics("good", -1).value();
  EXPECT_TRUE(all["finished"].get<bool>());
  EXPECT_EQ(all["records"].size(), 3u);
  EXPECT_EQ(all["next"], 2);
  EXPECT_TRUE(api_.metrics("good", 2).value()["records"].empty());
  EXPECT_EQ(api_.metrics("nope", -1).status().code(), ErrorCode::kNotFound);
}

TEST_F(StudioApiTest, StopRefusesAJobThatIsNotRunning) {
  EXPECT_EQ(api_.stop("good").status().code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(api_.study("good").status().code(), ErrorCode::kNotFound);
}

TEST_F(StudioApiTest, AHomeWithoutARegistryIsEmpty) {
  testing::TempDir empty;
  auto source = make_home_source(empty.path(), embedded_store(empty.path()));
  StudioApi api(*source);
  EXPECT_TRUE(api.jobs().value()["jobs"].empty());
  EXPECT_TRUE(api.studies().value()["studies"].empty());
  EXPECT_EQ(api.job("x").status().code(), ErrorCode::kNotFound);
}

TEST(StudioUrlTest, NamesAndPathsAreEscaped) {
  EXPECT_EQ(job_file_url("a b/c", "profile/report.html"),
            "/files/jobs/a%20b%2Fc/profile/report.html");
  EXPECT_EQ(study_file_url("s", "x y.json"), "/files/studies/s/x%20y.json");
}

}  // namespace
}  // namespace kennel::studio

// The spec key table: parsing from files and flags, defaults, and errors that name the key.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "kennel/job/train_spec.h"
#include "kennel/util/cpu_features.h"
#include "unit/test_util.h"

namespace kennel::job {
namespace {

using nlohmann::json;
using kennel::testing::TempDir;

TrainSpec with_data(const TempDir& dir) {
  TrainSpec spec;
  spec.data = dir.path().string();
  return spec;
}

std::string resolve_error(TrainSpec spec) {
  auto resolved = resolve_train_spec(std::move(spec));
  EXPECT_FALSE(resolved.ok());
  return resolved.ok() ? "" : resolved.status().message();
}

TEST(TrainSpecTest, FlagStringsAndTypedFileValuesBothApply) {
  TrainSpec spec;
  ASSERT_TRUE(apply_spec_json(spec,
                              {{"lr", "0.01"}, {"batch_size", "64"}, {"augment", "true"}, {"head", "[256, 128]"},
                               {"epochs", 7}, {"arch", "resnet18"}, {"export_pth", true}},
                              "test")
                  .ok());
  EXPECT_DOUBLE_EQ(spec.lr, 0.01);
  EXPECT_EQ(spec.batch_size, 64);
  EXPECT_TRUE(spec.augment);
  EXPECT_EQ(spec.head, (std::vector<int64_t>{256, 128}));
  EXPECT_EQ(spec.epochs, 7);
  EXPECT_EQ(spec.arch, "resnet18");
  EXPECT_TRUE(spec.export_pth);
  ASSERT_TRUE(apply_spec_json(spec, {{"head", ""}}, "test").ok());
  EXPECT_TRUE(spec.head.empty());
}

TEST(TrainSpecTest, UnknownKeySuggestsTheClosestAndNamesTheOrigin) {
  TrainSpec spec;
  const Status status = apply_spec_json(spec, {{"batchsize", 3}}, "spec.yaml");
  EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(status.message().find("spec.yaml"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("'batchsize'"), std::string::npos);
  EXPECT_NE(status.message().find("did you mean 'batch_size'"), std::string::npos);
  EXPECT_FALSE(apply_spec_json(spec, json::array({1, 2}), "x").ok());
}

TEST(TrainSpecTest, WrongTypesNameTheKeyAndTheValue) {
  TrainSpec spec;
  for (const auto& [key, value] : std::vector<std::pair<std::string, json>>{
           {"epochs", "many"}, {"epochs", 2.5}, {"lr", "fast"}, {"augment", "maybe"}, {"head", "[a]"}}) {
    const Status status = apply_spec_json(spec, {{key, value}}, "flags");
    EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument) << key;
    EXPECT_NE(status.message().find("'" + key + "'"), std::string::npos) << status.message();
  }
}

TEST(TrainSpecTest, ResolveFillsDependentDefaults) {
  TempDir dir;
  TrainSpec spec = with_data(dir);
  spec.input_size = 112;
  spec.epochs = 9;
  auto resolved = resolve_train_spec(spec);
  ASSERT_TRUE(resolved.ok()) << resolved.status().to_string();
  EXPECT_EQ(resolved->resize, 128);
  EXPECT_EQ(resolved->lr_step_epochs, 3);
  EXPECT_EQ(resolved->name.rfind("resnet50-", 0), 0u) << resolved->name;
  const json saved = to_json(*resolved);
  EXPECT_EQ(saved["resize"], 128);
  // The saved spec reads back to the same spec.
  TrainSpec reread;
  ASSERT_TRUE(apply_spec_json(reread, saved, "spec.json").ok());
  EXPECT_EQ(to_json(reread), saved);
}

TEST(TrainSpecTest, OutOfRangeValuesNameTheKey) {
  TempDir dir;
  const std::vector<std::pair<std::string, std::function<void(TrainSpec&)>>> cases = {
      {"'lr'", [](TrainSpec& s) { s.lr = 0; }},
      {"'lr'", [](TrainSpec& s) { s.lr = -1; }},
      {"'lr'", [](TrainSpec& s) { s.lr = std::nan(""); }},
      {"'batch_size'", [](TrainSpec& s) { s.batch_size = 0; }},
      {"'epochs'", [](TrainSpec& s) { s.epochs = 0; }},
      {"'optimizer'", [](TrainSpec& s) { s.optimizer = "rmsprop"; }},
      {"'momentum'", [](TrainSpec& s) { s.momentum = 1; }},
      {"'lr_schedule'", [](TrainSpec& s) { s.lr_schedule = "linear"; }},
      {"'label_smoothing'", [](TrainSpec& s) { s.label_smoothing = 1; }},
      {"'augment_scale'", [](TrainSpec& s) { s.augment_scale = 0; }},
      {"'lr_min'", [](TrainSpec& s) { s.lr_min = -1; }},
      {"'lr_min'", [](TrainSpec& s) { s.lr_min = 1; }},
      {"'augment_scale'", [](TrainSpec& s) { s.augment_scale = 1.5; }},
      {"'dropout'", [](TrainSpec& s) { s.dropout = -0.1; }},
      {"'head'", [](TrainSpec& s) { s.head = {0}; }},
      {"'input_size'", [](TrainSpec& s) { s.input_size = 8; }},
      {"'resize'", [](TrainSpec& s) { s.resize = 100; }},
      {"'normalize'", [](TrainSpec& s) { s.normalize = "0.5,0.5/0.5,0.5,0.5"; }},
      {"'normalize'", [](TrainSpec& s) { s.normalize = "0.5,0.5,0.5/0.5,0,0.5"; }},
      {"'normalize'", [](TrainSpec& s) { s.normalize = "zscore"; }},
      {"'debugger'", [](TrainSpec& s) { s.debugger = "/nonexistent/debugger.yaml"; }},
      {"'profiler'", [](TrainSpec& s) { s.profiler = "/nonexistent/profiler.yaml"; }},
      {"'device'", [](TrainSpec& s) { s.device = "tpu"; }},
      {"'precision'", [](TrainSpec& s) { s.precision = "int8"; }},
      {"'freeze'", [](TrainSpec& s) { s.freeze = "half"; }},
      {"'name'", [](TrainSpec& s) { s.name = "../escape"; }},
      {"'name'", [](TrainSpec& s) { s.name = ".."; }},  // regression: resolved to the home itself
      {"'valid_ratio'", [](TrainSpec& s) { s.valid_ratio = 1; }},
  };
  for (const auto& [key, mutate] : cases) {
    TrainSpec spec = with_data(dir);
    mutate(spec);
    EXPECT_NE(resolve_error(spec).find(key), std::string::npos) << key;
  }
  TrainSpec missing;
  EXPECT_NE(resolve_error(missing).find("'data'"), std::string::npos);
  missing.data = (dir / "nope").string();
  EXPECT_NE(resolve_error(missing).find("nope"), std::string::npos);
}

TEST(TrainSpecTest, ReadsYamlAndJsonFilesAndNamesABrokenOne) {
  TempDir dir;
  std::ofstream(dir / "spec.yaml") << "lr: 0.5\nhead: [32]\naugment: true\nname: 'x1'\n";
  auto yaml = read_spec_file(dir / "spec.yaml");
  ASSERT_TRUE(yaml.ok()) << yaml.status().to_string();
  EXPECT_DOUBLE_EQ((*yaml)["lr"].get<double>(), 0.5);
  EXPECT_EQ((*yaml)["head"], json::array({32}));
  EXPECT_EQ((*yaml)["augment"], true);
  std::ofstream(dir / "spec.json") << R"({"epochs": 3})";
  EXPECT_EQ((*read_spec_file(dir / "spec.json"))["epochs"], 3);
  std::ofstream(dir / "broken.json") << "{epochs: ";
  auto broken = read_spec_file(dir / "broken.json");
  EXPECT_EQ(broken.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(broken.status().message().find("broken.json"), std::string::npos);
  EXPECT_FALSE(read_spec_file(dir / "missing.yaml").ok());
}

TEST(TrainSpecTest, EveryKeyHasHelpAndAUniqueName) {
  std::set<std::string> names;
  for (const auto& key : train_spec_keys()) {
    EXPECT_FALSE(key.help.empty()) << key.name;
    EXPECT_TRUE(names.insert(key.name).second) << "duplicate key " << key.name;
  }
}


TEST(TrainSpecTest, NormalizeTakesPresetsOrExplicitMeanAndStd) {
  auto imagenet = parse_normalization("imagenet");
  ASSERT_TRUE(imagenet.ok());
  EXPECT_FLOAT_EQ(imagenet->mean[0], 0.485f);
  EXPECT_FLOAT_EQ(imagenet->std[2], 0.225f);
  auto none = parse_normalization("none");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->mean, (std::array<float, 3>{0, 0, 0}));
  EXPECT_EQ(none->std, (std::array<float, 3>{1, 1, 1}));
  auto explicit_values = parse_normalization("0.5,0.25,0/1,2,0.5");
  ASSERT_TRUE(explicit_values.ok());
  EXPECT_EQ(explicit_values->mean, (std::array<float, 3>{0.5f, 0.25f, 0}));
  EXPECT_EQ(explicit_values->std, (std::array<float, 3>{1, 2, 0.5f}));
  for (const char* bad : {"", "0.5,0.5,0.5", "1,2,3/4,5,6,7", "a,b,c/1,1,1", "0,0,0/1,1,-1"}) {
    auto parsed = parse_normalization(bad);
    EXPECT_FALSE(parsed.ok()) << bad;
    if (!parsed.ok()) {
      EXPECT_NE(parsed.status().message().find("normalize"), std::string::npos);
    }
  }
}

TEST(TrainSpecTest, AutoPrecisionIsTheDefaultAndResolvesOnceFromTheCpu) {
  const TempDir dir;
  EXPECT_EQ(TrainSpec().precision, "auto");
  auto resolved = resolve_train_spec(with_data(dir));
  ASSERT_TRUE(resolved.ok()) << resolved.status().to_string();
  EXPECT_EQ(resolved->precision, host_cpu_features().native_bf16() ? "bf16" : "fp32");
  EXPECT_TRUE(resolved->precision_auto);
  EXPECT_NE(resolved->precision_reason.find("auto:"), std::string::npos) << resolved->precision_reason;
  // What spec.json records is explicit: applying it again and resolving changes nothing.
  TrainSpec again;
  ASSERT_TRUE(apply_spec_json(again, to_json(*resolved), "spec.json").ok());
  EXPECT_EQ(resolve_train_spec(again)->precision, resolved->precision);
  // spec.json's record of the choice is skipped by readers, not an unknown key.
  json record = to_json(*resolved);
  record[kPrecisionRecordKey] = {{"requested", "auto"}};
  EXPECT_TRUE(apply_spec_json(again, record, "spec.json").ok());
  TrainSpec pinned = with_data(dir);
  pinned.precision = "fp32";
  EXPECT_EQ(resolve_train_spec(pinned)->precision, "fp32");
  EXPECT_FALSE(resolve_train_spec(pinned)->precision_auto);
}

}  // namespace
}  // namespace kennel::job

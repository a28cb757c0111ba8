// The tuning spec: applying a spec file's object, resolving defaults, every
// error resolve must raise before a trial runs, and the saved study.json form.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "kennel/tune/study_spec.h"
#include "unit/test_util.h"
#include "unit/tune/tune_test_util.h"

namespace kennel::tune {
namespace {

using test_helpers::has;

using nlohmann::json;
using kennel::testing::TempDir;


// A tiny ImageFolder dataset: root/train/<class>/<file>.
std::string make_dataset(const TempDir& dir) {
  const auto root = dir / "data";
  for (const std::string label : {"a", "b"}) {
    std::filesystem::create_directories(root / "train" / label);
    testing::write_bytes(root / "train" / label / "x.png", {0x89, 'P', 'N', 'G'});
  }
  return root.string();
}

// A minimal valid spec object plus `extra` keys (merged one level deep into training/hyperparameters).
json spec_object(const std::string& data, const json& extra = json::object()) {
  json object = {{"training", {{"data", data}}},
                 {"hyperparameters", {{"lr", {{"min", 1e-4}, {"max", 1e-1}, {"scale", "log"}}}}}};
  for (const auto& [key, value] : extra.items()) {
    if ((key == "training" || key == "hyperparameters") && value.is_object()) {
      for (const auto& [name, item] : value.items()) object[key][name] = item;
    } else {
      object[key] = value;
    }
  }
  return object;
}

Result<StudySpec> resolve(const json& object) {
  StudySpec spec;
  Status applied = apply_study_json(spec, object, "study.yaml");
  if (!applied.ok()) return applied;
  return resolve_study_spec(spec);
}

StudySpec resolve_ok(const json& object) {
  auto resolved = resolve(object);
  EXPECT_TRUE(resolved.ok()) << object.dump() << ": " << resolved.status().to_string();
  return resolved.ok() ? *resolved : StudySpec{};
}

std::string resolve_error(const json& object) {
  auto resolved = resolve(object);
  EXPECT_FALSE(resolved.ok()) << object.dump() << " resolved";
  return resolved.ok() ? "" : resolved.status().message();
}

// An external-command spec (no training keys).
json command_object(const std::string& command, const json& metrics) {
  return {{"command", command},
          {"metrics", metrics},
          {"hyperparameters", {{"lr", {{"min", 1e-4}, {"max", 1e-1}, {"scale", "log"}}}}}};
}

TEST(StudySpecTest, MinimalSpecResolvesWithDefaults) {
  TempDir dir;
  const std::string data = make_dataset(dir);
  const StudySpec spec = resolve_ok(spec_object(data));
  EXPECT_EQ(spec.name.rfind("tune-", 0), 0u) << spec.name;
  EXPECT_EQ(spec.objective.metric, "valid_accuracy");
  EXPECT_EQ(spec.objective.goal, "maximize");
  EXPECT_TRUE(spec.objective.maximize());
  EXPECT_EQ(spec.objective.at, "final");
  EXPECT_EQ(spec.strategy, "bayesian");
  EXPECT_EQ(spec.sampler.kind, "bayesian");
  EXPECT_EQ(spec.early_stopping.kind, "off");
  EXPECT_EQ(spec.max_jobs, 10);
  EXPECT_EQ(spec.max_parallel_jobs, 1);
  ASSERT_EQ(spec.space.parameters.size(), 1u);
  EXPECT_EQ(spec.space.parameters[0].type, ParamType::kContinuous);
  EXPECT_EQ(spec.space.parameters[0].scale, Scale::kLog);
  // The data path is made absolute so trials find it from anywhere.
  EXPECT_TRUE(std::filesystem::path(spec.training["data"].get<std::string>()).is_absolute());
}

TEST(StudySpecTest, LossObjectivesAreMinimized) {
  TempDir dir;
  const std::string data = make_dataset(dir);
  EXPECT_EQ(resolve_ok(spec_object(data, {{"objective", "valid_loss"}})).objective.goal, "minimize");
  EXPECT_EQ(resolve_ok(spec_object(data, {{"objective", "train_loss"}})).objective.goal, "minimize");
  EXPECT_EQ(resolve_ok(spec_object(data, {{"objective", "train_accuracy"}})).objective.goal, "maximize");
  // An explicit goal wins; short forms are accepted.
  const StudySpec odd = resolve_ok(spec_object(data, {{"objective", {{"metric", "valid_loss"}, {"goal", "max"}}}}));
  EXPECT_EQ(odd.objective.goal, "maximize");
  const StudySpec best = resolve_ok(spec_object(data, {{"objective", {{"metric", "valid_accuracy"}, {"at", "best"}}}}));
  EXPECT_EQ(best.objective.at, "best");
  EXPECT_TRUE(has(resolve_error(spec_object(data, {{"objective", {{"goal", "sideways"}}}})), "sideways"));
  EXPECT_TRUE(has(resolve_error(spec_object(data, {{"objective", {{"at", "middle"}}}})), "middle"));
}

TEST(StudySpecTest, UnknownHyperparameterIsNamedWithASuggestion) {
  TempDir dir;
  const std::string message = resolve_error(spec_object(make_dataset(dir), {{"hyperparameters", {{"batchsize", {16, 32}}}}}));
  EXPECT_TRUE(has(message, "'batchsize'")) << message;
  EXPECT_TRUE(has(message, "did you mean 'batch_size'")) << message;
}

TEST(StudySpecTest, NameAndDataCannotBeTuned) {
  TempDir dir;
  const std::string data = make_dataset(dir);
  std::string message = resolve_error(spec_object(data, {{"hyperparameters", {{"name", {"a", "b"}}}}}));
  EXPECT_TRUE(has(message, "'name'")) << message;
  message = resolve_error(spec_object(data, {{"hyperparameters", {{"data", {"x", "y"}}}}}));
  EXPECT_TRUE(has(message, "'data'")) << message;
  message = resolve_error(spec_object(data, {{"training", {{"name", "fixed"}}}}));
  EXPECT_TRUE(has(message, "'name'")) << message;
}

TEST(StudySpecTest, NoHyperparametersIsAnError) {
  TempDir dir;
  json object = spec_object(make_dataset(dir));
  object.erase("hyperparameters");
  EXPECT_TRUE(has(resolve_error(object), "no hyperparameters")) << resolve_error(object);
  object["hyperparameters"] = json::object();
  EXPECT_TRUE(has(resolve_error(object), "no hyperparameters"));
}

TEST(StudySpecTest, ObjectiveMustBeAKennelMetric) {
  TempDir dir;
  const std::string message = resolve_error(spec_object(make_dataset(dir), {{"objective", "valid_f1"}}));
  EXPECT_TRUE(has(message, "'valid_f1'")) << message;
  EXPECT_TRUE(has(message, "valid_accuracy")) << message;  // lists what is reported
}

TEST(StudySpecTest, UnknownStrategyAndStoppingAreErrors) {
  TempDir dir;
  const std::string data = make_dataset(dir);
  std::string message = resolve_error(spec_object(data, {{"strategy", "annealing"}}));
  EXPECT_TRUE(has(message, "'annealing'")) << message;
  message = resolve_error(spec_object(data, {{"early_stopping", "patience"}}));
  EXPECT_TRUE(has(message, "'patience'")) << message;
  // "tpe" is another name for bayesian.
  EXPECT_EQ(resolve_ok(spec_object(data, {{"strategy", "tpe"}})).sampler.kind, "bayesian");
  EXPECT_EQ(resolve_ok(spec_object(data, {{"strategy", "grid"}})).sampler.kind, "grid");
  // early_stopping: false (YAML) is off.
  EXPECT_EQ(resolve_ok(spec_object(data, {{"early_stopping", false}})).early_stopping.kind, "off");
}

TEST(StudySpecTest, StrategyOptions) {
  TempDir dir;
  const std::string data = make_dataset(dir);
  EXPECT_TRUE(resolve_ok(spec_object(data)).sampler.multivariate);  // the default
  const StudySpec independent =
      resolve_ok(spec_object(data, {{"strategy", {{"type", "bayesian"}, {"multivariate", false}}}}));
  EXPECT_FALSE(independent.sampler.multivariate);
  std::string message = resolve_error(spec_object(data, {{"strategy", {{"type", "bayesian"}, {"multivariate", "no"}}}}));
  EXPECT_TRUE(has(message, "multivariate")) << message;
  const StudySpec grid = resolve_ok(spec_object(data, {{"strategy", {{"type", "grid"}, {"grid_points", 5}}}}));
  EXPECT_EQ(grid.sampler.kind, "grid");
  EXPECT_EQ(grid.sampler.grid_points, 5);
  message = resolve_error(spec_object(data, {{"strategy", {{"type", "grid"}, {"grid_points", 0}}}}));
  EXPECT_TRUE(has(message, "grid_points")) << message;
  message = resolve_error(spec_object(data, {{"strategy", {{"type", "bayesian"}, {"candidates", 0}}}}));
  EXPECT_TRUE(has(message, "candidates")) << message;
}

TEST(StudySpecTest, BudgetMustBePositive) {
  TempDir dir;
  const std::string data = make_dataset(dir);
  EXPECT_TRUE(has(resolve_error(spec_object(data, {{"max_jobs", 0}})), "max_jobs"));
  EXPECT_TRUE(has(resolve_error(spec_object(data, {{"max_parallel_jobs", 0}})), "max_parallel_jobs"));
  EXPECT_TRUE(has(resolve_error(spec_object(data, {{"max_retries", -1}})), "max_retries"));
  EXPECT_TRUE(has(resolve_error(spec_object(data, {{"threads", -2}})), "threads"));
  EXPECT_TRUE(has(resolve_error(spec_object(data, {{"max_jobs", "many"}})), "max_jobs"));
}

TEST(StudySpecTest, UnknownFieldsAndBadShapesAreNamed) {
  TempDir dir;
  const std::string data = make_dataset(dir);
  std::string message = resolve_error(spec_object(data, {{"max_trials", 5}}));
  EXPECT_TRUE(has(message, "'max_trials'")) << message;
  EXPECT_TRUE(has(message, "study.yaml")) << message;
  message = resolve_error(spec_object(data, {{"strategy", {{"type", "bayesian"}, {"warmup", 3}}}}));
  EXPECT_TRUE(has(message, "'warmup'")) << message;
  message = resolve_error(spec_object(data, {{"hyperparameters", {{"lr", {{"min", 0.1}, {"max", 0.1}}}}}}));
  EXPECT_TRUE(has(message, "'lr'")) << message;
  EXPECT_TRUE(has(message, "study.yaml")) << message;
  StudySpec spec;
  EXPECT_FALSE(apply_study_json(spec, json::array(), "x").ok());
}

TEST(StudySpecTest, MissingDatasetIsAnError) {
  TempDir dir;
  json object = spec_object((dir / "nowhere").string());
  EXPECT_TRUE(has(resolve_error(object), "nowhere")) << resolve_error(object);
  object["training"].erase("data");
  EXPECT_TRUE(has(resolve_error(object), "dataset")) << resolve_error(object);
}

TEST(StudySpecTest, HyperbandCannotTuneEpochs) {
  TempDir dir;
  const std::string data = make_dataset(dir);
  const std::string message = resolve_error(
      spec_object(data, {{"strategy", "hyperband"}, {"hyperparameters", {{"epochs", {{"min", 2}, {"max", 10}}}}}}));
  EXPECT_TRUE(has(message, "hyperband")) << message;
  EXPECT_TRUE(has(message, "epochs")) << message;
  // Hyperband takes its max resource from the base spec's epochs.
  const StudySpec spec =
      resolve_ok(spec_object(data, {{"strategy", "hyperband"}, {"training", {{"epochs", 9}}}}));
  EXPECT_EQ(spec.sampler.kind, "random");
  EXPECT_EQ(spec.early_stopping.kind, "hyperband");
  EXPECT_EQ(spec.early_stopping.max_resource, 9);
  // With another stopping rule it is a contradiction; with too few epochs there is no rung.
  EXPECT_TRUE(has(resolve_error(spec_object(data, {{"strategy", "hyperband"}, {"early_stopping", "median"}})),
                  "median"));
  EXPECT_FALSE(resolve(spec_object(data, {{"strategy", "hyperband"}, {"training", {{"epochs", 1}}}})).ok());
}

TEST(StudySpecTest, CommandNeedsAMetricDefinition) {
  const std::string message = resolve_error(command_object("python train.py --lr {lr}", json::object()));
  EXPECT_TRUE(has(message, "--metric")) << message;
  StudySpec spec;
  ASSERT_TRUE(apply_study_json(spec, command_object("python train.py --lr {lr}", json::object()), "x").ok());
  ASSERT_TRUE(add_metric_definition(spec, "valid_accuracy=acc=([0-9.]+)").ok());
  EXPECT_EQ(spec.metrics["valid_accuracy"], "acc=([0-9.]+)");
  auto resolved = resolve_study_spec(spec);
  ASSERT_TRUE(resolved.ok()) << resolved.status().to_string();
  EXPECT_EQ(resolved->objective.goal, "maximize");
  EXPECT_FALSE(add_metric_definition(spec, "no-equals").ok());
  EXPECT_FALSE(add_metric_definition(spec, "=x").ok());
  EXPECT_FALSE(add_metric_definition(spec, "x=").ok());
}

TEST(StudySpecTest, MetricRegexMustCompileAndCapture) {
  std::string message =
      resolve_error(command_object("run --lr {lr}", {{"valid_accuracy", "acc=[0-9.]+"}}));
  EXPECT_TRUE(has(message, "'valid_accuracy'")) << message;
  EXPECT_TRUE(has(message, "capture group")) << message;
  message = resolve_error(command_object("run --lr {lr}", {{"valid_accuracy", "acc=([0-9.]+"}}));
  EXPECT_TRUE(has(message, "'valid_accuracy'")) << message;
  EXPECT_TRUE(has(message, "compile")) << message;
  // The objective must be among the defined metrics.
  message = resolve_error(command_object("run --lr {lr}", {{"f1", "f1=([0-9.]+)"}}));
  EXPECT_TRUE(has(message, "valid_accuracy")) << message;
  EXPECT_TRUE(has(message, "f1")) << message;
  // A list of {name, regex} works too.
  resolve_ok(command_object("run --lr {lr}", json::array({{{"name", "valid_accuracy"}, {"regex", "a=(\\d+)"}}})));
}

TEST(StudySpecTest, CommandPlaceholdersMustBeHyperparameters) {
  const json metrics = {{"valid_accuracy", "acc=([0-9.]+)"}};
  const std::string message = resolve_error(command_object("run --lr {lr} --depth {foo}", metrics));
  EXPECT_TRUE(has(message, "{foo}")) << message;
  EXPECT_TRUE(has(message, "'foo'")) << message;
  // ${HOME} is the shell's, not a placeholder.
  resolve_ok(command_object("run --lr {lr} --out ${HOME}/x", metrics));
  // Command trials take no training keys, and their keys need not be Kennel's.
  json with_training = command_object("run --lr {lr}", metrics);
  with_training["training"] = {{"epochs", 3}};
  EXPECT_TRUE(has(resolve_error(with_training), "training"));
  json custom = command_object("run --depth {depth}", metrics);
  custom["hyperparameters"] = {{"depth", {{"min", 2}, {"max", 8}}}};
  const StudySpec spec = resolve_ok(custom);
  EXPECT_EQ(spec.space.find("depth")->type, ParamType::kInteger);
}

TEST(StudySpecTest, MetricsWithoutCommandAreAnError) {
  TempDir dir;
  const std::string message =
      resolve_error(spec_object(make_dataset(dir), {{"metrics", {{"valid_accuracy", "acc=([0-9.]+)"}}}}));
  EXPECT_TRUE(has(message, "--command")) << message;
}

TEST(StudySpecTest, InvalidCategoricalTrainingValueFailsUpFront) {
  TempDir dir;
  const std::string data = make_dataset(dir);
  std::string message = resolve_error(spec_object(data, {{"hyperparameters", {{"optimizer", {"adam", "bogus"}}}}}));
  EXPECT_TRUE(has(message, "'optimizer'")) << message;
  EXPECT_TRUE(has(message, "bogus")) << message;
  // A value of the wrong type for the key.
  message = resolve_error(spec_object(data, {{"hyperparameters", {{"batch_size", {16, "big"}}}}}));
  EXPECT_TRUE(has(message, "'batch_size'")) << message;
  // A range end outside what training accepts (dropout must be < 1).
  message = resolve_error(spec_object(data, {{"hyperparameters", {{"dropout", {{"min", 0}, {"max", 1}}}}}}));
  EXPECT_TRUE(has(message, "'dropout'")) << message;
  // A text key given a range.
  message = resolve_error(spec_object(data, {{"hyperparameters", {{"optimizer", {{"min", 1}, {"max", 3}}}}}}));
  EXPECT_TRUE(has(message, "'optimizer'")) << message;
  // Valid choices pass.
  const StudySpec ok = resolve_ok(spec_object(data, {{"hyperparameters", {{"optimizer", {"adam", "sgd", "adamw"}}}}}));
  EXPECT_EQ(ok.space.find("optimizer")->choices.size(), 3u);
}

TEST(StudySpecTest, RangesTakeTheTrainingKeysType) {
  TempDir dir;
  const std::string data = make_dataset(dir);
  // A float key with integer bounds is continuous...
  StudySpec spec = resolve_ok(spec_object(data, {{"hyperparameters", {{"weight_decay", {{"min", 0}, {"max", 1}}}}}}));
  ASSERT_NE(spec.space.find("weight_decay"), nullptr);
  EXPECT_EQ(spec.space.find("weight_decay")->type, ParamType::kContinuous);
  spec = resolve_ok(spec_object(data, {{"hyperparameters", {{"dropout", {{"min", 0}, {"max", 0.9}}}}}}));
  EXPECT_EQ(spec.space.find("dropout")->type, ParamType::kContinuous);
  spec = resolve_ok(spec_object(data, {{"hyperparameters", {{"warmup_epochs", {{"min", 0}, {"max", 3}}}}}}));
  EXPECT_EQ(spec.space.find("warmup_epochs")->type, ParamType::kContinuous);
  // ...an int key's range is integer, even with bounds written as floats.
  spec = resolve_ok(spec_object(data, {{"hyperparameters", {{"epochs", {{"min", 2}, {"max", 10}}}}}}));
  EXPECT_EQ(spec.space.find("epochs")->type, ParamType::kInteger);
  spec = resolve_ok(spec_object(data, {{"hyperparameters", {{"batch_size", {{"min", 8.0}, {"max", 64.0}}}}}}));
  EXPECT_EQ(spec.space.find("batch_size")->type, ParamType::kInteger);
  // ...and an int key refuses fractional bounds.
  const std::string message =
      resolve_error(spec_object(data, {{"hyperparameters", {{"batch_size", {{"min", 8.5}, {"max", 64}}}}}}));
  EXPECT_TRUE(has(message, "'batch_size'")) << message;
  EXPECT_TRUE(has(message, "integer")) << message;
}

TEST(StudySpecTest, HyperparametersLaterInTheFileReplaceEarlierOnes) {
  TempDir dir;
  StudySpec spec;
  ASSERT_TRUE(apply_study_json(spec, spec_object(make_dataset(dir)), "a").ok());
  ASSERT_TRUE(apply_study_json(spec, {{"hyperparameters", {{"lr", {{"min", 1e-3}, {"max", 1e-2}}}}}}, "b").ok());
  ASSERT_EQ(spec.space.parameters.size(), 1u);
  EXPECT_DOUBLE_EQ(spec.space.parameters[0].min, 1e-3);
  EXPECT_EQ(spec.space.parameters[0].scale, Scale::kLinear);
}

void expect_same(const StudySpec& a, const StudySpec& b) {
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.training, b.training);
  EXPECT_EQ(a.space.to_json(), b.space.to_json());
  ASSERT_EQ(a.space.parameters.size(), b.space.parameters.size());
  for (const auto& parameter : a.space.parameters) {
    const Parameter* other = b.space.find(parameter.name);
    ASSERT_NE(other, nullptr) << parameter.name;
    EXPECT_EQ(other->type, parameter.type) << parameter.name;
    EXPECT_EQ(other->scale, parameter.scale) << parameter.name;
    EXPECT_DOUBLE_EQ(other->min, parameter.min) << parameter.name;
    EXPECT_DOUBLE_EQ(other->max, parameter.max) << parameter.name;
    EXPECT_EQ(other->choices, parameter.choices) << parameter.name;
  }
  EXPECT_EQ(a.objective.metric, b.objective.metric);
  EXPECT_EQ(a.objective.goal, b.objective.goal);
  EXPECT_EQ(a.objective.at, b.objective.at);
  EXPECT_EQ(a.strategy, b.strategy);
  EXPECT_EQ(a.sampler.kind, b.sampler.kind);
  EXPECT_EQ(a.sampler.startup_trials, b.sampler.startup_trials);
  EXPECT_EQ(a.sampler.candidates, b.sampler.candidates);
  EXPECT_EQ(a.sampler.multivariate, b.sampler.multivariate);
  EXPECT_EQ(a.sampler.grid_points, b.sampler.grid_points);
  EXPECT_EQ(a.early_stopping.kind, b.early_stopping.kind);
  EXPECT_EQ(a.early_stopping.min_trials, b.early_stopping.min_trials);
  // study.json has one min_epochs: the median rule's, or hyperband's first rung.
  if (a.early_stopping.kind == "hyperband") {
    EXPECT_EQ(a.early_stopping.min_resource, b.early_stopping.min_resource);
    EXPECT_EQ(a.early_stopping.max_resource, b.early_stopping.max_resource);
  } else {
    EXPECT_EQ(a.early_stopping.min_epochs, b.early_stopping.min_epochs);
  }
  EXPECT_EQ(a.early_stopping.eta, b.early_stopping.eta);
  EXPECT_EQ(a.max_jobs, b.max_jobs);
  EXPECT_EQ(a.max_parallel_jobs, b.max_parallel_jobs);
  EXPECT_EQ(a.seed, b.seed);
  EXPECT_EQ(a.max_retries, b.max_retries);
  EXPECT_EQ(a.warm_start, b.warm_start);
  EXPECT_EQ(a.threads, b.threads);
  EXPECT_EQ(a.command, b.command);
  EXPECT_EQ(a.metrics, b.metrics);
}

// study.json is read back and resolved again when a study resumes.
StudySpec reread(const StudySpec& spec) {
  const json saved = json::parse(to_json(spec).dump());
  auto loaded = study_spec_from_json(saved);
  EXPECT_TRUE(loaded.ok()) << loaded.status().to_string();
  if (!loaded.ok()) return {};
  auto resolved = resolve_study_spec(*loaded);
  EXPECT_TRUE(resolved.ok()) << resolved.status().to_string();
  return resolved.ok() ? *resolved : StudySpec{};
}

TEST(StudySpecTest, JsonRoundTripPreservesTheStudy) {
  TempDir dir;
  const std::string data = make_dataset(dir);
  const StudySpec spec = resolve_ok(spec_object(
      data, {{"name", "sweep-1"},
             {"training", {{"epochs", 6}, {"arch", "resnet18"}}},
             {"hyperparameters",
              {{"epochs", {{"min", 2}, {"max", 5}}},
               {"weight_decay", {{"min", 0}, {"max", 1}}},
               {"momentum", {{"min", 0.9}, {"max", 0.999}, {"scale", "reverse-log"}}},
               {"batch_size", {16, 32}},
               {"optimizer", {"adam", "momentum"}}}},
             {"objective", {{"metric", "valid_loss"}, {"at", "best"}}},
             {"strategy", {{"type", "bayesian"}, {"startup_trials", 3}, {"candidates", 12}, {"multivariate", false}}},
             {"early_stopping", {{"type", "median"}, {"min_trials", 4}, {"min_epochs", 2}}},
             {"max_jobs", 20},
             {"max_parallel_jobs", 2},
             {"seed", 7},
             {"max_retries", 0},
             {"warm_start", {"old-sweep"}},
             {"threads", 4}}));
  EXPECT_EQ(spec.space.find("weight_decay")->type, ParamType::kContinuous);
  EXPECT_EQ(spec.space.find("epochs")->type, ParamType::kInteger);
  EXPECT_EQ(spec.objective.goal, "minimize");
  EXPECT_EQ(spec.sampler.startup_trials, 3);
  EXPECT_EQ(spec.sampler.candidates, 12);
  EXPECT_FALSE(spec.sampler.multivariate);
  EXPECT_EQ(spec.early_stopping.kind, "median");
  EXPECT_EQ(spec.early_stopping.min_trials, 4);
  EXPECT_EQ(spec.early_stopping.min_epochs, 2);
  expect_same(spec, reread(spec));
}

TEST(StudySpecTest, JsonRoundTripPreservesHyperband) {
  TempDir dir;
  const std::string data = make_dataset(dir);
  const StudySpec spec = resolve_ok(spec_object(
      data, {{"name", "hb"},
             {"training", {{"epochs", 27}}},
             {"strategy", {{"type", "hyperband"}, {"min_epochs", 3}, {"eta", 2}}}}));
  EXPECT_EQ(spec.early_stopping.kind, "hyperband");
  EXPECT_EQ(spec.early_stopping.min_resource, 3);
  EXPECT_EQ(spec.early_stopping.max_resource, 27);
  EXPECT_EQ(spec.early_stopping.eta, 2);
  const StudySpec back = reread(spec);
  expect_same(spec, back);
  EXPECT_EQ(back.early_stopping.min_resource, 3);
  EXPECT_EQ(back.early_stopping.max_resource, 27);
}

TEST(StudySpecTest, JsonRoundTripPreservesACommandStudy) {
  json object = command_object("run --lr {lr} --opt {opt}", {{"valid_loss", "loss=([0-9.]+)"}});
  object["hyperparameters"]["opt"] = {"adam", "sgd"};
  object["objective"] = "valid_loss";
  object["name"] = "cmd";
  const StudySpec spec = resolve_ok(object);
  expect_same(spec, reread(spec));
}

TEST(StudySpecTest, KennelEpochMetricsIncludeTheDefaults) {
  const auto& metrics = kennel_epoch_metrics();
  EXPECT_NE(std::find(metrics.begin(), metrics.end(), "valid_accuracy"), metrics.end());
  EXPECT_NE(std::find(metrics.begin(), metrics.end(), "valid_loss"), metrics.end());
}

}  // namespace
}  // namespace kennel::tune

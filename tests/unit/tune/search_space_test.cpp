// Search space: parsing ranges from spec entries and flags, the errors that
// name the parameter, the unit-interval map, and the saved form.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "kennel/tune/search_space.h"
#include "unit/tune/tune_test_util.h"

namespace kennel::tune {
namespace {

using test_helpers::has;

using nlohmann::json;

Parameter parse_ok(const std::string& name, const json& definition, ValueHint hint = ValueHint::kUnknown) {
  auto parsed = parse_parameter(name, definition, hint);
  EXPECT_TRUE(parsed.ok()) << name << " " << definition.dump() << ": " << parsed.status().to_string();
  return parsed.ok() ? *parsed : Parameter{};
}

// The error message of a definition that must be rejected.
std::string parse_error(const std::string& name, const json& definition, ValueHint hint = ValueHint::kUnknown) {
  auto parsed = parse_parameter(name, definition, hint);
  EXPECT_FALSE(parsed.ok()) << name << " " << definition.dump() << " parsed";
  if (parsed.ok()) return "";
  EXPECT_EQ(parsed.status().code(), ErrorCode::kInvalidArgument);
  return parsed.status().message();
}

Parameter flag_ok(const std::string& text, ValueHint hint = ValueHint::kUnknown) {
  auto parsed = parse_parameter_flag(text, [hint](const std::string&) { return hint; });
  EXPECT_TRUE(parsed.ok()) << text << ": " << parsed.status().to_string();
  return parsed.ok() ? *parsed : Parameter{};
}


// ---- parsing ---------------------------------------------------------------

TEST(SearchSpaceTest, ParsesContinuousScales) {
  const Parameter log = parse_ok("lr", {{"min", 1e-4}, {"max", 1e-1}, {"scale", "log"}});
  EXPECT_EQ(log.name, "lr");
  EXPECT_EQ(log.type, ParamType::kContinuous);
  EXPECT_EQ(log.scale, Scale::kLog);
  EXPECT_DOUBLE_EQ(log.min, 1e-4);
  EXPECT_DOUBLE_EQ(log.max, 1e-1);

  const Parameter linear = parse_ok("dropout", {{"min", 0.1}, {"max", 0.6}});
  EXPECT_EQ(linear.type, ParamType::kContinuous);
  EXPECT_EQ(linear.scale, Scale::kLinear);

  const Parameter reverse = parse_ok("momentum", {{"min", 0.9}, {"max", 0.999}, {"scale", "reverse-log"}});
  EXPECT_EQ(reverse.type, ParamType::kContinuous);
  EXPECT_EQ(reverse.scale, Scale::kReverseLog);

  // A float key with integer bounds is still continuous.
  const Parameter float_hint = parse_ok("weight_decay", {{"min", 0}, {"max", 1}}, ValueHint::kFloat);
  EXPECT_EQ(float_hint.type, ParamType::kContinuous);
  // Float-typed bounds without a hint: continuous.
  EXPECT_EQ(parse_ok("x", {{"min", 1.5}, {"max", 4.5}}).type, ParamType::kContinuous);
}

TEST(SearchSpaceTest, ParsesIntegerRanges) {
  const Parameter epochs = parse_ok("epochs", {{"min", 2}, {"max", 10}});  // integer bounds, no hint
  EXPECT_EQ(epochs.type, ParamType::kInteger);
  EXPECT_DOUBLE_EQ(epochs.min, 2);
  EXPECT_DOUBLE_EQ(epochs.max, 10);

  // An integer key: integer even with bounds written as floats.
  EXPECT_EQ(parse_ok("batch_size", {{"min", 16.0}, {"max", 64.0}}, ValueHint::kInteger).type, ParamType::kInteger);
  // Explicit type.
  EXPECT_EQ(parse_ok("n", {{"min", 1}, {"max", 5}, {"type", "integer"}}, ValueHint::kFloat).type,
            ParamType::kInteger);
  EXPECT_EQ(parse_ok("n", {{"min", 1}, {"max", 5}, {"type", "continuous"}}).type, ParamType::kContinuous);
  // Integers on a log scale.
  const Parameter log_int = parse_ok("batch_size", {{"min", 8}, {"max", 256}, {"scale", "log"}}, ValueHint::kInteger);
  EXPECT_EQ(log_int.type, ParamType::kInteger);
  EXPECT_EQ(log_int.scale, Scale::kLog);
}

TEST(SearchSpaceTest, ParsesCategoricalNumbersAndStrings) {
  const Parameter sizes = parse_ok("batch_size", json::array({32, 64, 128}), ValueHint::kInteger);
  EXPECT_EQ(sizes.type, ParamType::kCategorical);
  ASSERT_EQ(sizes.choices.size(), 3u);
  EXPECT_EQ(sizes.choices[1], 64);

  const Parameter optimizers = parse_ok("optimizer", json::array({"adam", "sgd"}), ValueHint::kText);
  EXPECT_EQ(optimizers.type, ParamType::kCategorical);
  EXPECT_EQ(optimizers.choices, (std::vector<json>{"adam", "sgd"}));
  EXPECT_EQ(optimizers.choice_index("sgd"), std::optional<size_t>(1));
  EXPECT_EQ(optimizers.choice_index("rmsprop"), std::nullopt);
  EXPECT_EQ(optimizers.choice_index(3), std::nullopt);

  // {choices: [...]} and {values: [...]} are lists too.
  EXPECT_EQ(parse_ok("o", {{"choices", {"a", "b"}}}).choices.size(), 2u);
  EXPECT_EQ(parse_ok("o", {{"values", {"a", "b", "c"}}}).choices.size(), 3u);
}

TEST(SearchSpaceTest, NumberAndNumericTextAreTheSameChoice) {
  const Parameter sizes = parse_ok("batch_size", json::array({16, 32, 64}));
  EXPECT_EQ(sizes.choice_index(32), std::optional<size_t>(1));
  EXPECT_EQ(sizes.choice_index("32"), std::optional<size_t>(1));
  EXPECT_EQ(sizes.choice_index(32.0), std::optional<size_t>(1));
  EXPECT_EQ(sizes.choice_index("33"), std::nullopt);
  EXPECT_TRUE(sizes.contains("64"));
  EXPECT_FALSE(sizes.contains(128));

  // Choices given as text (from a flag) compare equal to numbers from a spec, and vice versa.
  const Parameter text = parse_ok("batch_size", json::array({"16", "32"}), ValueHint::kText);
  EXPECT_EQ(text.choice_index(32), std::optional<size_t>(1));
  const Parameter from_flag = flag_ok("batch_size=16,32,64");
  ASSERT_EQ(from_flag.choices.size(), 3u);
  EXPECT_EQ(from_flag.choices[1], 32);  // typed as a number
  EXPECT_TRUE(from_flag.choices[1].is_number_integer());
  EXPECT_EQ(from_flag.choice_index(32), std::optional<size_t>(1));
  EXPECT_EQ(from_flag.choice_index("32"), std::optional<size_t>(1));
}

TEST(SearchSpaceTest, FlagForms) {
  const Parameter lr = flag_ok("lr=1e-4..1e-1:log", ValueHint::kFloat);
  EXPECT_EQ(lr.name, "lr");
  EXPECT_EQ(lr.type, ParamType::kContinuous);
  EXPECT_EQ(lr.scale, Scale::kLog);
  EXPECT_DOUBLE_EQ(lr.min, 1e-4);
  EXPECT_DOUBLE_EQ(lr.max, 1e-1);

  const Parameter epochs = flag_ok("epochs=2..10", ValueHint::kInteger);
  EXPECT_EQ(epochs.type, ParamType::kInteger);
  EXPECT_DOUBLE_EQ(epochs.min, 2);
  EXPECT_DOUBLE_EQ(epochs.max, 10);

  // An unknown key (an external command's flag) with integer text bounds is an integer range.
  EXPECT_EQ(flag_ok("layers=2..10").type, ParamType::kInteger);
  EXPECT_EQ(flag_ok("rate=0.1..0.5").type, ParamType::kContinuous);
  EXPECT_EQ(flag_ok("n=1..4:int").type, ParamType::kInteger);

  const Parameter momentum = flag_ok("momentum=0.9..0.999:reverse-log", ValueHint::kFloat);
  EXPECT_EQ(momentum.scale, Scale::kReverseLog);

  const Parameter optimizer = flag_ok("optimizer=adam,sgd", ValueHint::kText);
  EXPECT_EQ(optimizer.type, ParamType::kCategorical);
  EXPECT_EQ(optimizer.choices, (std::vector<json>{"adam", "sgd"}));

  const Parameter from_json = flag_ok(R"(lr={"min": 1e-5, "max": 1e-2, "scale": "log"})", ValueHint::kFloat);
  EXPECT_EQ(from_json.scale, Scale::kLog);
  EXPECT_DOUBLE_EQ(from_json.min, 1e-5);

  // The hint callback gets the parameter's name.
  std::string asked;
  auto parsed = parse_parameter_flag("epochs=1..3", [&](const std::string& name) {
    asked = name;
    return ValueHint::kInteger;
  });
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(asked, "epochs");
}

TEST(SearchSpaceTest, BadFlagsAreRejected) {
  const auto hint = [](const std::string&) { return ValueHint::kUnknown; };
  for (const std::string text : {"lr", "=1..2", "lr=", "opt=adam,,sgd", "lr={\"min\": 1", "lr=1..2:cubic"}) {
    auto parsed = parse_parameter_flag(text, hint);
    EXPECT_FALSE(parsed.ok()) << text;
  }
  auto empty = parse_parameter_flag("x=3..3", hint);
  ASSERT_FALSE(empty.ok());
  EXPECT_TRUE(has(empty.status().message(), "'x'")) << empty.status().message();
}

// ---- errors ----------------------------------------------------------------

TEST(SearchSpaceTest, EmptyRangeIsAnErrorNamingTheParameter) {
  const std::string message = parse_error("lr", {{"min", 0.01}, {"max", 0.01}});
  EXPECT_TRUE(has(message, "'lr'")) << message;
  EXPECT_TRUE(has(message, "empty")) << message;
  EXPECT_TRUE(has(parse_error("epochs", {{"min", 3}, {"max", 3}}), "'epochs'"));
}

TEST(SearchSpaceTest, MinAboveMaxIsAnError) {
  const std::string message = parse_error("dropout", {{"min", 0.6}, {"max", 0.1}});
  EXPECT_TRUE(has(message, "'dropout'")) << message;
  EXPECT_TRUE(has(message, "greater than")) << message;
}

TEST(SearchSpaceTest, LogScaleNeedsPositiveMin) {
  for (double min : {0.0, -1.0}) {
    const std::string message = parse_error("lr", {{"min", min}, {"max", 0.1}, {"scale", "log"}});
    EXPECT_TRUE(has(message, "'lr'")) << message;
    EXPECT_TRUE(has(message, "log")) << message;
    EXPECT_TRUE(has(message, "min > 0")) << message;
  }
}

TEST(SearchSpaceTest, ReverseLogNeedsUnitInterval) {
  for (const auto& [min, max] : std::vector<std::pair<double, double>>{{0.9, 1.0}, {0.5, 1.5}, {-0.1, 0.5}}) {
    const std::string message = parse_error("momentum", {{"min", min}, {"max", max}, {"scale", "reverse-log"}});
    EXPECT_TRUE(has(message, "'momentum'")) << message;
    EXPECT_TRUE(has(message, "reverse-log")) << message;
  }
  parse_ok("momentum", {{"min", 0.0}, {"max", 0.99}, {"scale", "reverse-log"}});
}

TEST(SearchSpaceTest, CategoricalNeedsDistinctValues) {
  std::string message = parse_error("optimizer", json::array());
  EXPECT_TRUE(has(message, "'optimizer'")) << message;
  EXPECT_TRUE(has(message, "at least one")) << message;
  EXPECT_TRUE(has(parse_error("optimizer", {{"choices", json::array()}}), "'optimizer'"));

  message = parse_error("optimizer", json::array({"adam", "sgd", "adam"}));
  EXPECT_TRUE(has(message, "'optimizer'")) << message;
  EXPECT_TRUE(has(message, "twice")) << message;
  EXPECT_TRUE(has(message, "adam")) << message;
  // 32 and "32" are the same choice.
  message = parse_error("batch_size", json::array({32, "32"}));
  EXPECT_TRUE(has(message, "twice")) << message;
  // Nested values are not choices.
  EXPECT_TRUE(has(parse_error("head", json::array({json::array({256})})), "'head'"));
}

TEST(SearchSpaceTest, UnknownFieldIsNamed) {
  const std::string message = parse_error("lr", {{"min", 1e-4}, {"max", 1e-1}, {"step", 0.1}});
  EXPECT_TRUE(has(message, "'lr'")) << message;
  EXPECT_TRUE(has(message, "'step'")) << message;
  EXPECT_TRUE(has(parse_error("lr", {{"min", 1e-4}}), "'lr'"));  // no max
  EXPECT_TRUE(has(parse_error("lr", {{"min", "low"}, {"max", 1}}), "'lr'"));
  EXPECT_TRUE(has(parse_error("lr", {{"min", 1e-4}, {"max", 1e-1}, {"scale", "cubic"}}), "cubic"));
  EXPECT_TRUE(has(parse_error("lr", {{"min", 1e-4}, {"max", 1e-1}, {"type", "categorical"}}), "'lr'"));
  EXPECT_TRUE(has(parse_error("lr", 0.01), "'lr'"));
}

TEST(SearchSpaceTest, IntegerHintNeedsIntegerBounds) {
  const std::string message = parse_error("epochs", {{"min", 1.5}, {"max", 10}}, ValueHint::kInteger);
  EXPECT_TRUE(has(message, "'epochs'")) << message;
  EXPECT_TRUE(has(message, "integer")) << message;
  EXPECT_TRUE(has(parse_error("n", {{"min", 1}, {"max", 2.5}, {"type", "integer"}}), "integer"));
}

TEST(SearchSpaceTest, TextHintRejectsARange) {
  const std::string message = parse_error("optimizer", {{"min", 1}, {"max", 3}}, ValueHint::kText);
  EXPECT_TRUE(has(message, "'optimizer'")) << message;
  EXPECT_TRUE(has(message, "list")) << message;
  // A list is fine for a text key.
  parse_ok("optimizer", json::array({"adam", "sgd"}), ValueHint::kText);
}

// ---- unit interval ---------------------------------------------------------

TEST(SearchSpaceTest, UnitRoundTripsForEveryScale) {
  const Parameter linear = parse_ok("x", {{"min", -2.0}, {"max", 6.0}});
  const Parameter log = parse_ok("lr", {{"min", 1e-5}, {"max", 1.0}, {"scale", "log"}});
  const Parameter reverse = parse_ok("m", {{"min", 0.5}, {"max", 0.9999}, {"scale", "reverse-log"}});
  for (const Parameter* parameter : {&linear, &log, &reverse}) {
    for (double unit : {0.0, 0.1, 0.25, 0.5, 0.77, 1.0}) {
      const double value = parameter->from_unit(unit).get<double>();
      EXPECT_GE(value, parameter->min) << parameter->name;
      EXPECT_LE(value, parameter->max) << parameter->name;
      EXPECT_NEAR(parameter->to_unit(value), unit, 1e-9) << parameter->name << " " << unit;
      EXPECT_TRUE(parameter->contains(value)) << parameter->name << " " << value;
    }
  }
  EXPECT_DOUBLE_EQ(linear.from_unit(0.5).get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(linear.to_unit(0.0), 0.25);
  // Out of the unit interval clamps to the range.
  EXPECT_DOUBLE_EQ(linear.from_unit(-1).get<double>(), -2.0);
  EXPECT_DOUBLE_EQ(linear.from_unit(2).get<double>(), 6.0);
  EXPECT_DOUBLE_EQ(linear.to_unit(100), 1.0);
  EXPECT_FALSE(linear.contains(6.5));
  EXPECT_TRUE(linear.contains("0.5"));
  EXPECT_FALSE(linear.contains("fast"));
}

TEST(SearchSpaceTest, LogScaleIsUniformInTheExponent) {
  const Parameter lr = parse_ok("lr", {{"min", 1e-4}, {"max", 1e-2}, {"scale", "log"}});
  EXPECT_NEAR(lr.from_unit(0.5).get<double>(), 1e-3, 1e-12);
  EXPECT_NEAR(lr.from_unit(0.0).get<double>(), 1e-4, 1e-15);
  EXPECT_NEAR(lr.from_unit(1.0).get<double>(), 1e-2, 1e-14);
  EXPECT_NEAR(lr.to_unit(1e-3), 0.5, 1e-12);
}

TEST(SearchSpaceTest, ReverseLogIsDenseNearOne) {
  const Parameter momentum = parse_ok("momentum", {{"min", 0.9}, {"max", 0.999}, {"scale", "reverse-log"}});
  // 1 - x is log-uniform in [0.001, 0.1]: the middle is 1 - 0.01.
  EXPECT_NEAR(momentum.from_unit(0.5).get<double>(), 0.99, 1e-12);
  EXPECT_NEAR(momentum.to_unit(0.99), 0.5, 1e-9);
}

TEST(SearchSpaceTest, IntegersRoundAndRoundTrip) {
  const Parameter epochs = parse_ok("epochs", {{"min", 2}, {"max", 10}});
  for (int64_t v = 2; v <= 10; ++v) {
    const json back = epochs.from_unit(epochs.to_unit(static_cast<double>(v)));
    EXPECT_TRUE(back.is_number_integer()) << back.dump();
    EXPECT_EQ(back, v);
  }
  EXPECT_EQ(epochs.from_unit(0.0), 2);
  EXPECT_EQ(epochs.from_unit(1.0), 10);
  EXPECT_TRUE(epochs.contains(7));
  EXPECT_TRUE(epochs.contains("7"));
  EXPECT_FALSE(epochs.contains(7.5));
  EXPECT_FALSE(epochs.contains(11));
  EXPECT_FALSE(epochs.contains(1));
}

TEST(SearchSpaceTest, IntegerEndsAreAsLikelyAsTheMiddle) {
  const Parameter small = parse_ok("n", {{"min", 2}, {"max", 4}});
  std::map<int64_t, int> counts;
  constexpr int kGrid = 3000;
  for (int i = 0; i < kGrid; ++i) {
    const json value = small.from_unit((i + 0.5) / kGrid);
    ASSERT_TRUE(value.is_number_integer());
    counts[value.get<int64_t>()]++;
  }
  ASSERT_EQ(counts.size(), 3u);
  for (int64_t v : {2, 3, 4}) {
    EXPECT_NEAR(counts[v], kGrid / 3, kGrid / 100) << "value " << v << " drew " << counts[v] << " of " << kGrid;
  }

  // Same on a wider range: each of 1..10 about a tenth.
  const Parameter wide = parse_ok("k", {{"min", 1}, {"max", 10}});
  std::map<int64_t, int> wide_counts;
  for (int i = 0; i < kGrid; ++i) wide_counts[wide.from_unit((i + 0.5) / kGrid).get<int64_t>()]++;
  ASSERT_EQ(wide_counts.size(), 10u);
  EXPECT_EQ(wide_counts.begin()->first, 1);
  EXPECT_EQ(wide_counts.rbegin()->first, 10);
  for (const auto& [v, count] : wide_counts) EXPECT_NEAR(count, kGrid / 10, kGrid / 100) << "value " << v;
}

// ---- saved form ------------------------------------------------------------

TEST(SearchSpaceTest, JsonRoundTripKeepsEveryParameter) {
  SearchSpace space;
  space.parameters.push_back(parse_ok("lr", {{"min", 1e-4}, {"max", 1e-1}, {"scale", "log"}}, ValueHint::kFloat));
  space.parameters.push_back(parse_ok("epochs", {{"min", 2}, {"max", 10}}, ValueHint::kInteger));
  space.parameters.push_back(parse_ok("weight_decay", {{"min", 0}, {"max", 1}}, ValueHint::kFloat));
  space.parameters.push_back(
      parse_ok("momentum", {{"min", 0.9}, {"max", 0.999}, {"scale", "reverse-log"}}, ValueHint::kFloat));
  space.parameters.push_back(parse_ok("batch_size", json::array({16, 32, 64}), ValueHint::kInteger));
  space.parameters.push_back(parse_ok("optimizer", json::array({"adam", "sgd"}), ValueHint::kText));
  space.parameters.push_back(parse_ok("tag", json::array({"1", "x"}), ValueHint::kText));  // "1" stays text

  const json saved = space.to_json();
  EXPECT_EQ(saved["lr"]["type"], "continuous");
  EXPECT_EQ(saved["lr"]["scale"], "log");
  EXPECT_EQ(saved["epochs"]["type"], "integer");
  EXPECT_EQ(saved["batch_size"]["type"], "categorical");
  // Through text, as study.json is.
  auto loaded = SearchSpace::from_json(json::parse(saved.dump()));
  ASSERT_TRUE(loaded.ok()) << loaded.status().to_string();
  ASSERT_EQ(loaded->parameters.size(), space.parameters.size());
  for (const auto& original : space.parameters) {
    const Parameter* back = loaded->find(original.name);
    ASSERT_NE(back, nullptr) << original.name;
    EXPECT_EQ(back->type, original.type) << original.name;
    EXPECT_EQ(back->scale, original.scale) << original.name;
    EXPECT_DOUBLE_EQ(back->min, original.min) << original.name;
    EXPECT_DOUBLE_EQ(back->max, original.max) << original.name;
    EXPECT_EQ(back->choices, original.choices) << original.name;
  }
  EXPECT_EQ(loaded->find("weight_decay")->type, ParamType::kContinuous);
  EXPECT_TRUE(loaded->find("tag")->choices[0].is_string());
  EXPECT_EQ(loaded->to_json(), saved);
  EXPECT_EQ(loaded->find("nope"), nullptr);

  EXPECT_FALSE(SearchSpace::from_json(json::array()).ok());
  auto bad = SearchSpace::from_json({{"lr", {{"type", "continuous"}, {"min", 1}, {"max", 1}}}});
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(has(bad.status().message(), "'lr'"));
}

TEST(SearchSpaceTest, TypeAndScaleNames) {
  EXPECT_STREQ(param_type_name(ParamType::kContinuous), "continuous");
  EXPECT_STREQ(param_type_name(ParamType::kInteger), "integer");
  EXPECT_STREQ(param_type_name(ParamType::kCategorical), "categorical");
  EXPECT_STREQ(scale_name(Scale::kLinear), "linear");
  EXPECT_STREQ(scale_name(Scale::kLog), "log");
  EXPECT_STREQ(scale_name(Scale::kReverseLog), "reverse-log");
}

}  // namespace
}  // namespace kennel::tune

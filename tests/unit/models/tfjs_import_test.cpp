// TF.js layers folders -> Kennel's MobileNetV2 names: layouts (HWIO -> OIHW,
// depthwise HWC1 -> C1HW, Dense transposed), dequantisation of uint8 / uint16 /
// float16 weights as TF.js does it, the head's order taken from the topology,
// and clean errors naming the file and layer.
#include "kennel/models/tfjs_import.h"

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "kennel/models/classifier.h"
#include "unit/test_util.h"

namespace kennel::models {
namespace {

using nlohmann::json;
using kennel::testing::TempDir;
using Bytes = std::vector<uint8_t>;

// A model.json + one shard, built weight by weight.
class FakeTfjsModel {
 public:
  FakeTfjsModel() {
    layer("InputLayer", "input_1", {{"batch_input_shape", {nullptr, 224, 224, 3}}});
  }

  void layer(const std::string& class_name, const std::string& name, json config = json::object()) {
    config["name"] = name;
    layers_.push_back({{"class_name", class_name}, {"name", name}, {"config", config}});
  }

  void add_float32(const std::string& name, std::vector<int64_t> shape,
                   const std::vector<float>& values) {
    Bytes bytes(values.size() * 4);
    std::memcpy(bytes.data(), values.data(), bytes.size());
    add(name, std::move(shape), json(), bytes);
  }
  void add_uint8(const std::string& name, std::vector<int64_t> shape, double min, double scale,
                 const Bytes& q) {
    add(name, std::move(shape), {{"dtype", "uint8"}, {"min", min}, {"scale", scale}}, q);
  }
  void add_uint16(const std::string& name, std::vector<int64_t> shape, double min, double scale,
                  const std::vector<uint16_t>& q) {
    Bytes bytes(q.size() * 2);
    std::memcpy(bytes.data(), q.data(), bytes.size());
    add(name, std::move(shape), {{"dtype", "uint16"}, {"min", min}, {"scale", scale}}, bytes);
  }
  void add_float16(const std::string& name, std::vector<int64_t> shape,
                   const std::vector<float>& values) {
    const at::Tensor half = at::tensor(values).to(at::kHalf);
    Bytes bytes(values.size() * 2);
    std::memcpy(bytes.data(), half.data_ptr(), bytes.size());
    add(name, std::move(shape), {{"dtype", "float16"}}, bytes);
  }

  json model_json(const std::string& shard = "group1-shard1of1.bin") const {
    return {{"format", "layers-model"},
            {"generatedBy", "keras v2.2.4"},
            {"modelTopology",
             {{"keras_version", "2.2.4"},
              {"model_config",
               {{"class_name", "Model"}, {"config", {{"name", "m"}, {"layers", layers_}}}}}}},
            {"weightsManifest", {{{"paths", {shard}}, {"weights", specs_}}}},
            {"kennel", {{"classes", {"a", "b", "c"}}}}};
  }
  void write(const std::filesystem::path& dir) const { write(dir, model_json(), data_); }
  static void write(const std::filesystem::path& dir, const json& model, const Bytes& shard) {
    const std::string text = model.dump();
    testing::write_bytes(dir / "model.json", Bytes(text.begin(), text.end()));
    testing::write_bytes(dir / "group1-shard1of1.bin", shard);
  }
  const Bytes& data() const { return data_; }

 private:
  void add(const std::string& name, std::vector<int64_t> shape, json quantization,
           const Bytes& bytes) {
    json spec = {{"name", name}, {"shape", shape}, {"dtype", "float32"}};
    if (!quantization.is_null()) spec["quantization"] = quantization;
    specs_.push_back(spec);
    data_.insert(data_.end(), bytes.begin(), bytes.end());
  }

  json layers_ = json::array();
  json specs_ = json::array();
  Bytes data_;
};

std::vector<float> ramp(size_t count, float start, float step) {
  std::vector<float> values(count);
  for (size_t i = 0; i < count; ++i) values[i] = start + step * static_cast<float>(i);
  return values;
}

const at::Tensor& find(const StateDict& state, const std::string& name) {
  for (const auto& named : state) {
    if (named.name == name) return named.tensor;
  }
  static const at::Tensor kNone;
  ADD_FAILURE() << "no " << name;
  return kNone;
}

// The stem conv (float32), its BatchNorm (every stored dtype), the first
// depthwise conv (uint8) and a two-layer head whose manifest order differs
// from its topology order — real MobileNetV2 shapes, so the result loads.
FakeTfjsModel stem_and_head() {
  FakeTfjsModel model;
  model.layer("Conv2D", "Conv1");
  model.layer("BatchNormalization", "bn_Conv1", {{"epsilon", 0.001}});
  model.layer("DepthwiseConv2D", "expanded_conv_depthwise");
  model.layer("Dense", "dense_9", {{"units", 2}, {"activation", "relu"}});
  model.layer("Dropout", "dropout_1", {{"rate", 0.5}});
  model.layer("Dense", "dense_10", {{"units", 3}, {"activation", "softmax"}});
  model.add_float32("Conv1/kernel", {3, 3, 3, 32}, ramp(3 * 3 * 3 * 32, -1.0f, 0.001f));
  Bytes gamma(32);
  for (size_t i = 0; i < gamma.size(); ++i) gamma[i] = static_cast<uint8_t>(i * 8);
  model.add_uint8("bn_Conv1/gamma", {32}, -0.5, 0.0123, gamma);
  model.add_float32("bn_Conv1/beta", {32}, ramp(32, 0.25f, 0.5f));
  std::vector<uint16_t> mean(32);
  for (size_t i = 0; i < mean.size(); ++i) mean[i] = static_cast<uint16_t>(i * 2000);
  model.add_uint16("bn_Conv1/moving_mean", {32}, -3.0, 0.0001, mean);
  model.add_float16("bn_Conv1/moving_variance", {32}, ramp(32, 0.5f, 0.25f));
  Bytes depthwise(3 * 3 * 32);
  for (size_t i = 0; i < depthwise.size(); ++i) depthwise[i] = static_cast<uint8_t>(i % 251);
  model.add_uint8("expanded_conv_depthwise/depthwise_kernel", {3, 3, 32, 1}, -1.0, 0.01, depthwise);
  model.add_float32("dense_10/kernel", {2, 3}, ramp(6, 1.0f, 1.0f));
  model.add_float32("dense_10/bias", {3}, {7.0f, 8.0f, 9.0f});
  model.add_float32("dense_9/kernel", {1280, 2}, ramp(1280 * 2, 0.0f, 0.5f));
  model.add_float32("dense_9/bias", {2}, {-1.0f, 1.0f});
  return model;
}

TEST(TfjsImportTest, TransposesLayoutsAndDequantisesAsTfjs) {
  TempDir dir;
  stem_and_head().write(dir.path());
  json info;
  auto imported = import_tfjs_mobilenet_v2(dir.path(), &info);
  ASSERT_TRUE(imported.ok()) << imported.status().to_string();
  const StateDict& state = *imported;

  // Conv2D: Keras HWIO [3, 3, 3, 32] -> OIHW [32, 3, 3, 3]; element (h, w, i, o) moves to (o, i, h,
  // w).
  const at::Tensor conv = find(state, "features.0.0.weight");
  ASSERT_EQ(conv.sizes(), at::IntArrayRef({32, 3, 3, 3}));
  const std::vector<float> kernel = ramp(3 * 3 * 3 * 32, -1.0f, 0.001f);
  for (int64_t o : {0, 5, 31}) {
    for (int64_t i = 0; i < 3; ++i) {
      for (int64_t h = 0; h < 3; ++h) {
        for (int64_t w = 0; w < 3; ++w) {
          EXPECT_EQ(conv[o][i][h][w].item<float>(), kernel[((h * 3 + w) * 3 + i) * 32 + o])
              << o << i << h << w;
        }
      }
    }
  }

  // BatchNorm: gamma/beta/moving_mean/moving_variance -> weight/bias/running_mean/running_var,
  // quantised values as float32(min + scale * q) (TF.js computes in double, stores float32).
  const at::Tensor gamma = find(state, "features.0.1.weight");
  const at::Tensor mean = find(state, "features.0.1.running_mean");
  for (int64_t c = 0; c < 32; ++c) {
    EXPECT_EQ(gamma[c].item<float>(),
              static_cast<float>(-0.5 + 0.0123 * static_cast<double>(c * 8)))
        << c;
    EXPECT_EQ(mean[c].item<float>(),
              static_cast<float>(-3.0 + 0.0001 * static_cast<double>(c * 2000)))
        << c;
  }
  EXPECT_TRUE(at::equal(find(state, "features.0.1.bias"), at::tensor(ramp(32, 0.25f, 0.5f))));
  EXPECT_TRUE(at::equal(find(state, "features.0.1.running_var"),
                        at::tensor(ramp(32, 0.5f, 0.25f))));  // exact in fp16
  const at::Tensor tracked = find(state, "features.0.1.num_batches_tracked");
  EXPECT_EQ(tracked.scalar_type(), at::kLong);
  EXPECT_EQ(tracked.dim(), 0);
  EXPECT_EQ(tracked.item<int64_t>(), 0);

  // DepthwiseConv2D: [3, 3, 32, 1] -> [32, 1, 3, 3]; element (h, w, c, 0) moves to (c, 0, h, w).
  const at::Tensor depthwise = find(state, "features.1.conv.0.0.weight");
  ASSERT_EQ(depthwise.sizes(), at::IntArrayRef({32, 1, 3, 3}));
  for (int64_t c : {0, 17, 31}) {
    for (int64_t h = 0; h < 3; ++h) {
      for (int64_t w = 0; w < 3; ++w) {
        const auto q = static_cast<double>(((h * 3 + w) * 32 + c) % 251);
        EXPECT_EQ(depthwise[c][0][h][w].item<float>(), static_cast<float>(-1.0 + 0.01 * q));
      }
    }
  }

  // Dense: (in, out) -> (out, in), numbered by topology order (dense_9 first), not by name.
  const at::Tensor hidden = find(state, "classifier.1.weight");
  ASSERT_EQ(hidden.sizes(), at::IntArrayRef({2, 1280}));
  EXPECT_EQ(hidden[1][3].item<float>(), 0.5f * (3 * 2 + 1));
  const at::Tensor out = find(state, "classifier.4.weight");
  ASSERT_EQ(out.sizes(), at::IntArrayRef({3, 2}));
  EXPECT_EQ(out[2][1].item<float>(), 1.0f + (1 * 3 + 2));
  EXPECT_TRUE(at::equal(find(state, "classifier.4.bias"), at::tensor(std::vector<float>{7, 8, 9})));

  EXPECT_EQ(info["spec"]["head_hidden"], json({2}));
  EXPECT_EQ(info["spec"]["num_classes"], 3);
  EXPECT_EQ(info["spec"]["keras_compat"], true);
  EXPECT_EQ(info["input_size"], json({224, 224}));
  EXPECT_EQ(info["weights"], 10);
  EXPECT_EQ(info["stored_dtypes"],
            json({{"float32", 6}, {"uint8", 2}, {"uint16", 1}, {"float16", 1}}));
  EXPECT_EQ(info["kennel"]["classes"], json({"a", "b", "c"}));
}

TEST(TfjsImportTest, ImportedNamesAndShapesLoadIntoAKerasCompatClassifier) {
  TempDir dir;
  stem_and_head().write(dir.path());
  json info;
  auto imported = import_tfjs_mobilenet_v2(dir.path(), &info);
  ASSERT_TRUE(imported.ok()) << imported.status().to_string();
  ModelSpec spec;
  spec.arch = "mobilenet_v2";
  spec.keras_compat = true;
  spec.head_hidden = info["spec"]["head_hidden"].get<std::vector<int64_t>>();
  spec.num_classes = info["spec"]["num_classes"].get<int64_t>();
  auto classifier = build_classifier(spec);
  ASSERT_TRUE(classifier.ok()) << classifier.status().to_string();
  LoadOptions lenient;
  lenient.strict = false;
  auto report = apply_state_dict(classifier.value(), *imported, lenient);
  ASSERT_TRUE(report.ok()) << report.status().to_string();
  EXPECT_TRUE(report->unexpected.empty()) << report->summary();
  EXPECT_TRUE(report->mismatched.empty()) << report->summary();
  EXPECT_EQ(report->loaded.size(), imported->size());
  // A partial model: strict loading names what is missing.
  auto strict = apply_state_dict(classifier.value(), *imported);
  EXPECT_EQ(strict.status().code(), ErrorCode::kInvalidArgument);
}

TEST(TfjsImportTest, MissingFilesAreNamed) {
  TempDir dir;
  auto missing = import_tfjs_mobilenet_v2(dir.path());
  EXPECT_EQ(missing.status().code(), ErrorCode::kNotFound);
  EXPECT_NE(missing.status().message().find("model.json"), std::string::npos)
      << missing.status().message();

  FakeTfjsModel model = stem_and_head();
  const std::string text = model.model_json("other-shard.bin").dump();
  testing::write_bytes(dir / "model.json", Bytes(text.begin(), text.end()));
  auto no_shard = import_tfjs_mobilenet_v2(dir.path());
  EXPECT_EQ(no_shard.status().code(), ErrorCode::kNotFound);
  EXPECT_NE(no_shard.status().message().find("other-shard.bin"), std::string::npos)
      << no_shard.status().message();
}

TEST(TfjsImportTest, ShardsOfTheWrongSizeAreDataLossNamingTheShard) {
  TempDir dir;
  FakeTfjsModel model = stem_and_head();
  Bytes short_data = model.data();
  short_data.resize(short_data.size() - 1);
  FakeTfjsModel::write(dir.path(), model.model_json(), short_data);
  auto truncated = import_tfjs_mobilenet_v2(dir.path());
  EXPECT_EQ(truncated.status().code(), ErrorCode::kDataLoss);
  EXPECT_NE(truncated.status().message().find("group1-shard1of1.bin"), std::string::npos);
  EXPECT_NE(truncated.status().message().find("dense_9/bias"), std::string::npos)
      << truncated.status().message();

  Bytes long_data = model.data();
  long_data.push_back(0);
  FakeTfjsModel::write(dir.path(), model.model_json(), long_data);
  EXPECT_EQ(import_tfjs_mobilenet_v2(dir.path()).status().code(), ErrorCode::kDataLoss);
}

// Each case: a model.json edit, and what the error must mention.
TEST(TfjsImportTest, UnsupportedContentIsRejectedNamingTheLayer) {
  struct Case {
    const char* what;
    std::function<void(FakeTfjsModel&)> edit;
    std::string mention;
  };
  const std::vector<Case> cases = {
      {"unknown layer", [](FakeTfjsModel& m) { m.add_float32("block_17_expand/kernel", {1}, {0}); },
       "block_17_expand"},
      {"conv bias", [](FakeTfjsModel& m) { m.add_float32("Conv1/bias", {32}, ramp(32, 0, 0)); },
       "Conv1/bias"},
      {"depth multiplier",
       [](FakeTfjsModel& m) {
         m.add_float32("block_1_depthwise/depthwise_kernel", {3, 3, 2, 2}, ramp(36, 0, 0));
       },
       "depth_multiplier"},
      {"conv rank",
       [](FakeTfjsModel& m) {
         m.add_float32("block_2_project/kernel", {4, 4}, ramp(16, 0, 0));
       },
       "block_2_project"},
      {"batch norm eps",
       [](FakeTfjsModel& m) {
         m.layer("BatchNormalization", "block_3_project_BN", {{"epsilon", 1e-5}});
       },
       "block_3_project_BN"},
      {"symmetric padding",
       [](FakeTfjsModel& m) {
         m.layer("ZeroPadding2D", "block_1_pad", {{"padding", {{1, 1}, {1, 1}}}});
       },
       "block_1_pad"},
      {"hidden activation",
       [](FakeTfjsModel& m) {
         m.layer("Dense", "late", {{"units", 2}, {"activation", "tanh"}});
       },
       "dense_10"},
      {"control: one more valid weight",
       [](FakeTfjsModel& m) { m.add_uint8("Conv_1_bn/gamma", {1}, 0, 1, {0}); }, ""},
  };
  for (const auto& c : cases) {
    TempDir dir;
    FakeTfjsModel model = stem_and_head();
    c.edit(model);
    model.write(dir.path());
    auto imported = import_tfjs_mobilenet_v2(dir.path());
    if (c.mention.empty()) {
      EXPECT_TRUE(imported.ok()) << c.what << ": " << imported.status().to_string();
      continue;
    }
    ASSERT_FALSE(imported.ok()) << c.what;
    EXPECT_EQ(imported.status().code(), ErrorCode::kInvalidArgument) << c.what;
    EXPECT_NE(imported.status().message().find(c.mention), std::string::npos)
        << c.what << ": " << imported.status().message();
    EXPECT_NE(imported.status().message().find("model.json"), std::string::npos) << c.what;
  }
}

TEST(TfjsImportTest, MalformedManifestsFailCleanly) {
  TempDir dir;
  const FakeTfjsModel model = stem_and_head();
  std::vector<json> broken;
  json escape = model.model_json();
  escape["weightsManifest"][0]["paths"] = {"../group1-shard1of1.bin"};
  broken.push_back(escape);
  json no_topology = model.model_json();
  no_topology.erase("modelTopology");
  broken.push_back(no_topology);
  json bad_shape = model.model_json();
  bad_shape["weightsManifest"][0]["weights"][0]["shape"] = {3, -1};
  broken.push_back(bad_shape);
  json bad_dtype = model.model_json();
  bad_dtype["weightsManifest"][0]["weights"][0]["dtype"] = "int32";
  broken.push_back(bad_dtype);
  json no_scale = model.model_json();
  no_scale["weightsManifest"][0]["weights"][1]["quantization"].erase("scale");
  broken.push_back(no_scale);
  json unnamed = model.model_json();
  unnamed["weightsManifest"][0]["weights"][0]["name"] = "kernel";
  broken.push_back(unnamed);
  for (const json& model_json : broken) {
    FakeTfjsModel::write(dir.path(), model_json, model.data());
    auto imported = import_tfjs_mobilenet_v2(dir.path());
    EXPECT_EQ(imported.status().code(), ErrorCode::kInvalidArgument)
        << imported.status().to_string();
  }
  testing::write_bytes(dir / "model.json", Bytes{'{', '"'});
  EXPECT_EQ(import_tfjs_mobilenet_v2(dir.path()).status().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace kennel::models

// The int8 graph: each architecture family rewritten, calibrated and run at
// int8 close to its fp32 logits; every refusal (missing calibration points,
// Keras padding, forward before quantize) names what is wrong.
#include <gtest/gtest.h>

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/torch.h>

#include "kennel/models/batch_norm.h"
#include "kennel/models/classifier.h"
#include "kennel/models/inference_graph.h"
#include "kennel/models/quantized_graph.h"

namespace kennel::models {
namespace {

Classifier folded(const std::string& arch, int64_t classes = 4) {
  torch::manual_seed(7);
  ModelSpec spec;
  spec.arch = arch;
  spec.num_classes = classes;
  auto classifier = build_classifier(spec);
  EXPECT_TRUE(classifier.ok()) << classifier.status().to_string();
  {
    // Statistics far from (0, 1), as a trained model has them: folding must carry them.
    torch::NoGradGuard no_grad;
    for (const auto& module : (*classifier)->modules()) {
      if (auto* bn = module->as<BatchNorm2dImpl>()) {
        bn->running_mean.uniform_(-0.2, 0.2);
        bn->running_var.uniform_(0.5, 2.0);
        bn->weight.uniform_(0.5, 1.2);
        bn->bias.uniform_(-0.1, 0.1);
      }
    }
  }
  prepare_inference_graph(*classifier, {.fold_batchnorm = true, .dtype = at::kFloat, .channels_last = true});
  return *classifier;
}

// Relative error of int8 logits against the folded fp32 model on images like the calibration ones.
double relative_error(const std::string& arch, int64_t size = 48, int64_t batch_size = 8) {
  Classifier classifier = folded(arch);
  auto graph = QuantizedGraph::build(classifier);
  EXPECT_TRUE(graph.ok()) << graph.status().to_string();
  if (!graph.ok()) return 1e9;
  for (int batch = 0; batch < 4; ++batch) (*graph)->calibrate(torch::randn({8, 3, size, size}));
  EXPECT_TRUE((*graph)->quantize((*graph)->calibration(), /*reduce_range=*/false).ok());
  const at::Tensor images = torch::randn({batch_size, 3, size, size});
  torch::InferenceMode inference;
  const at::Tensor reference = classifier->forward(images.contiguous(at::MemoryFormat::ChannelsLast));
  const at::Tensor int8 = (*graph)->forward(images);
  EXPECT_EQ(int8.sizes(), reference.sizes());
  EXPECT_EQ(int8.scalar_type(), at::kFloat);
  return ((int8 - reference).norm() / reference.norm()).item<double>();
}

// Every 1x1 convolution of stride 1 is a matrix product; the strided ones (downsample) and the
// 3x3 ones stay convolutions.
TEST(QuantizedGraphTest, OneByOneConvolutionsOfStrideOneRunAsMatrixProducts) {
  auto graph = QuantizedGraph::build(folded("resnet50"));
  ASSERT_TRUE(graph.ok());
  const auto products = (*graph)->matrix_product_points();
  // 16 bottlenecks x (conv1, conv3), and layer1's downsample (stride 1).
  EXPECT_EQ(products.size(), 16u * 2u + 1u);
  const auto has = [&](const std::string& name) {
    return std::find(products.begin(), products.end(), name) != products.end();
  };
  EXPECT_TRUE(has("layer1.0.conv1") && has("layer4.2.conv3") && has("layer1.0.downsample.0"));
  EXPECT_FALSE(has("layer2.0.downsample.0") || has("layer1.0.conv2") || has("conv1"));
  auto mobilenet = QuantizedGraph::build(folded("mobilenet_v2"));
  ASSERT_TRUE(mobilenet.ok());
  // 16 of 17 inverted residuals expand, all 17 project, plus the last 1x1 (features.18).
  EXPECT_EQ((*mobilenet)->matrix_product_points().size(), 16u + 17u + 1u);
}

// 48 px puts 6x6 maps under 1x1 convolutions, where oneDNN 2.6's AMX int8 convolution kernel
// corrupted the heap (a crash in this test or a later one on a Sapphire Rapids Xeon).
TEST(QuantizedGraphTest, BasicBlockResNetRunsInt8CloseToFp32) { EXPECT_LT(relative_error("resnet18"), 0.1); }

TEST(QuantizedGraphTest, BottleneckResNetRunsInt8CloseToFp32) { EXPECT_LT(relative_error("resnet50"), 0.1); }

TEST(QuantizedGraphTest, MobileNetV2RunsInt8CloseToFp32) { EXPECT_LT(relative_error("mobilenet_v2"), 0.1); }

// Input sizes whose maps run from 5x5 to 7x7 and beyond, around the 6x6 and 6x7 maps where oneDNN's
// AMX 1x1 int8 convolution corrupted memory, at batch 1 and 3.
TEST(QuantizedGraphTest, Int8RunsCloseToFp32AtEveryInputSizeAroundTheCorruptingMaps) {
  for (const std::string arch : {"resnet50", "mobilenet_v2"}) {
    for (int64_t size : {40, 44, 52, 56, 96}) {
      for (int64_t batch : {1, 3}) {
        EXPECT_LT(relative_error(arch, size, batch), 0.15) << arch << " at " << size << " px, batch " << batch;
      }
    }
  }
}

// oneDNN's packed weights take the layout of the first shape they run; at 32 px on 2 threads batch
// 1 after batch 2 then failed with "could not create a primitive descriptor for a reorder primitive".
TEST(QuantizedGraphTest, EveryBatchSizeRunsWhateverRanFirst) {
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  Classifier classifier = folded("resnet18");
  auto graph = QuantizedGraph::build(classifier);
  ASSERT_TRUE(graph.ok());
  (*graph)->calibrate(torch::randn({4, 3, 32, 32}));
  ASSERT_TRUE((*graph)->quantize((*graph)->calibration(), false).ok());
  const at::Tensor images = torch::randn({16, 3, 32, 32});
  const at::Tensor all = (*graph)->forward(images);
  for (int64_t batch : {1, 2, 1, 3, 16, 1}) {
    at::Tensor part;
    ASSERT_NO_THROW(part = (*graph)->forward(images.narrow(0, 0, batch))) << "batch " << batch;
    EXPECT_TRUE(torch::allclose(part, all.narrow(0, 0, batch), 1e-4, 1e-4)) << "batch " << batch;
  }
  at::set_num_threads(threads);
}

TEST(QuantizedGraphTest, CalibrationNamesEveryLayerOfTheGraph) {
  auto graph = QuantizedGraph::build(folded("resnet18"));
  ASSERT_TRUE(graph.ok());
  const auto points = (*graph)->points();
  // input, conv1, 8 blocks x (conv1, conv2, add) and 3 downsample convolutions.
  EXPECT_EQ(points.size(), 1u + 1u + 8u * 3u + 3u);
  EXPECT_EQ(points.front(), "input");
  EXPECT_NE(std::find(points.begin(), points.end(), "layer2.0.downsample.0"), points.end());
  EXPECT_NE(std::find(points.begin(), points.end(), "layer4.1.add"), points.end());
  (*graph)->calibrate(torch::randn({2, 3, 32, 32}));
  for (const auto& name : points) {
    const auto& range = (*graph)->calibration().at(name);
    EXPECT_TRUE(range.seen) << name;
    EXPECT_LE(range.min, range.max) << name;
  }
  // ReLU outputs never go below zero.
  EXPECT_GE((*graph)->calibration().at("layer1.0.add").min, 0.0);
}

TEST(QuantizedGraphTest, MobileNetV2ClampsAtSixAndAddsItsResiduals) {
  auto graph = QuantizedGraph::build(folded("mobilenet_v2"));
  ASSERT_TRUE(graph.ok());
  const auto points = (*graph)->points();
  // torchvision's residual blocks: 2 of 24, 3 of 32 (2 residual), 4 of 64 (3), 3 of 96 (2), 3 of 160 (2).
  EXPECT_EQ(std::count_if(points.begin(), points.end(),
                          [](const std::string& name) { return name.find(".add") != std::string::npos; }),
            10);
  (*graph)->calibrate(torch::randn({2, 3, 32, 32}) * 10);
  EXPECT_LE((*graph)->calibration().at("features.0.0").max, 6.0);
}

TEST(QuantizedGraphTest, QuantizeListsTheMissingPoints) {
  auto graph = QuantizedGraph::build(folded("resnet18"));
  ASSERT_TRUE(graph.ok());
  CalibrationTable partial;
  partial["input"] = {-1, 1, true};
  const Status status = (*graph)->quantize(partial, false);
  EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(status.message().find("conv1"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("kennel quantize"), std::string::npos) << status.message();
  EXPECT_FALSE((*graph)->quantized());
  EXPECT_THROW((*graph)->forward(torch::randn({1, 3, 32, 32})), Error);
}

TEST(QuantizedGraphTest, ActivationQuantizationMatchesLibTorchsOwnLevelForLevel) {
  torch::manual_seed(11);
  // Values beyond the range on both sides, halves that round to even, both memory formats.
  const at::Tensor values = torch::cat({torch::randn({2, 3, 9, 9}) * 4,
                                        (torch::arange(2 * 3 * 81) * 0.5 - 100).view({2, 3, 9, 9}) * 0.02});
  for (const auto& [scale, zero_point] : std::vector<std::pair<double, int64_t>>{{0.02, 128}, {0.0173, 117}, {0.031, 0}, {1.0, 255}}) {
    for (auto format : {at::MemoryFormat::Contiguous, at::MemoryFormat::ChannelsLast}) {
      const at::Tensor input = values.contiguous(format);
      const at::Tensor expected = at::quantize_per_tensor(input, scale, zero_point, at::kQUInt8);
      const at::Tensor actual = quantize_activation(input, scale, zero_point);
      ASSERT_EQ(actual.scalar_type(), at::kQUInt8);
      EXPECT_EQ(actual.q_scale(), scale);
      EXPECT_EQ(actual.q_zero_point(), zero_point);
      EXPECT_TRUE(torch::equal(actual.int_repr(), expected.int_repr())) << "scale " << scale << ", zero point " << zero_point;
      EXPECT_TRUE(actual.is_contiguous(format));
      EXPECT_TRUE(torch::equal(dequantize_activation(actual), expected.dequantize()));
    }
  }
}

// The graph adds residuals with quantized::add where the ReLU after them has zero point 0 (always:
// a ReLU's range starts at 0): the clamp at level 0 must then be the ReLU, level for level.
TEST(QuantizedGraphTest, APlainAddIntoZeroPointZeroIsTheAddWithReLU) {
  torch::manual_seed(12);
  at::globalContext().setQEngine(at::QEngine::ONEDNN);
  auto& dispatcher = c10::Dispatcher::singleton();
  const auto add = dispatcher.findSchemaOrThrow("quantized::add", "").typed<at::Tensor(at::Tensor, at::Tensor, double, int64_t)>();
  const auto add_relu =
      dispatcher.findSchemaOrThrow("quantized::add_relu", "").typed<at::Tensor(at::Tensor, at::Tensor, double, int64_t)>();
  for (auto format : {at::MemoryFormat::Contiguous, at::MemoryFormat::ChannelsLast}) {
    const at::Tensor a = at::quantize_per_tensor((torch::randn({4, 16, 7, 7}) * 2).contiguous(format), 0.03, 120, at::kQUInt8);
    const at::Tensor b = at::quantize_per_tensor((torch::randn({4, 16, 7, 7}) * 3).contiguous(format), 0.05, 90, at::kQUInt8);
    const at::Tensor plain = add.call(a, b, 0.04, 0);
    const at::Tensor with_relu = add_relu.call(a, b, 0.04, 0);
    EXPECT_TRUE(torch::equal(plain.int_repr(), with_relu.int_repr()));
    EXPECT_GT((with_relu.int_repr() == 0).sum().item<int64_t>(), 100) << "some sums were negative";
  }
}

TEST(QuantizedGraphTest, KerasPaddingAndUnknownArchitecturesAreRefused) {
  ModelSpec keras;
  keras.arch = "mobilenet_v2";
  keras.keras_compat = true;
  EXPECT_EQ(check_quantizable(keras).code(), ErrorCode::kInvalidArgument);
  ModelSpec other;
  other.arch = "vgg16";
  const Status status = check_quantizable(other);
  EXPECT_NE(status.message().find("vgg16"), std::string::npos);
  ModelSpec resnet;
  resnet.arch = "resnet34";
  EXPECT_TRUE(check_quantizable(resnet).ok());
}

}  // namespace
}  // namespace kennel::models

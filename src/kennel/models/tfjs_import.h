// Importing a Keras MobileNetV2 from a TensorFlow.js layers-format folder
// (model.json + binary weight shards) into Kennel's names, so that pretrained
// Keras weights — e.g. nsfwjs's, see scripts/backbone/extract_tfjs.js — load
// into build_classifier(ModelSpec{.arch = "mobilenet_v2", .keras_compat = true, ...}).
//
// Owns the folder's format and the Keras -> torchvision renaming only: it does
// not build a model or check that every layer is present (apply_state_dict
// with strict matching does that, naming each missing key).
//
// Names: the Keras applications MobileNetV2 layers map onto torchvision's
//   Conv1, bn_Conv1                         -> features.0.{0,1}
//   expanded_conv_{depthwise,project}[_BN]  -> features.1.conv.{0.0,0.1,1,2}
//   block_K_{expand,depthwise,project}[_BN] -> features.(K+1).conv.{0.0,0.1,1.0,1.1,2,3}
//                                              (K = 1..16)
//   Conv_1, Conv_1_bn                       -> features.18.{0,1}
//   the i-th Dense layer in topology order  -> classifier.(1 + 3i): Kennel's head with
//                                              head_hidden = all Dense widths but the last
// Layouts: Conv2D kernels HWIO -> OIHW, DepthwiseConv2D HW(C)(1) -> (C,1,H,W),
// Dense (in, out) -> (out, in); BatchNormalization gamma/beta/moving_mean/
// moving_variance -> weight/bias/running_mean/running_var, plus a
// num_batches_tracked of 0 (an int64 scalar) so a strict load is clean.
// Values: float32 weights as stored (little-endian); quantised ones (the
// manifest's quantization {dtype: uint8 | uint16, min, scale}) become
// float32(min + scale * q), as TF.js computes them; float16 ones are widened.
//
// Thread-safety: a free function with no shared state.
#pragma once

#include <filesystem>

#include <nlohmann/json_fwd.hpp>

#include "kennel/models/weight_file.h"
#include "kennel/util/status.h"

namespace kennel::models {

// Reads dir/model.json and the shard files its weightsManifest names (paths
// relative to dir) and returns the weights under Kennel's names as float32 CPU
// tensors (num_batches_tracked: int64), in manifest order.
//
// When `info` is not null it receives what a caller needs to build the model
// and describe it: {"spec": {"arch", "keras_compat", "head_hidden",
// "num_classes"}, "head": [{layer, units, activation}...], "input_size",
// "keras_version", "format", "generated_by", "converted_by", "weights",
// "stored_dtypes", "kennel": model.json's own "kennel" object when present
// (source, preprocessing, classes)}.
//
// Checks, beyond the format: BatchNormalization epsilon 1e-3 and
// ZeroPadding2D ((0,1),(0,1)) (what keras_compat reproduces), depthwise
// multiplier 1, no conv biases, hidden Dense layers with relu, the last with
// softmax or linear, the first Dense reading the 1280 pooled features.
//
// Errors name the file, and the weight and layer where one is at fault:
// kNotFound (no model.json or a missing shard), kInvalidArgument (not JSON, a
// malformed manifest or topology, an unknown layer or weight name, a wrong
// rank or layout, an unsupported dtype or head, a shard path leaving dir),
// kDataLoss (shards shorter or longer than the manifest says),
// kResourceExhausted (model.json over 64 MiB or shards over 1 GiB).
Result<StateDict> import_tfjs_mobilenet_v2(const std::filesystem::path& dir,
                                           nlohmann::json* info = nullptr);

}  // namespace kennel::models

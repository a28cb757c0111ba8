// Weight files: reading and writing named tensors in the two formats the
// outside world uses for classifier weights.
//
// Owns the on-disk formats only: PyTorch's `.pth`/`.pt` zip (what
// `torch.save(model.state_dict(), f)` writes with torch >= 1.6) and
// `.safetensors`. It does not know model architectures: matching names and
// shapes to a module, renaming keys and choosing dtypes belong to the models
// that load the weights.
//
// Reading never executes Python and never aborts: any malformed, truncated or
// hostile file becomes a Status naming the file and what was wrong. The
// format comes from the content, not the extension. Returned tensors are CPU
// tensors that own their memory. Writers produce files atomically (temp +
// fsync + rename), so a reader never sees half a file.
//
// Thread-safety: free functions with no shared state; safe from any thread on
// distinct paths.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "kennel/util/status.h"

namespace kennel::models {

struct NamedTensor {
  std::string name;
  at::Tensor tensor;
};
using StateDict = std::vector<NamedTensor>;  // file order preserved

enum class WeightFormat { kPth, kSafetensors };

const char* weight_format_name(WeightFormat format);  // "pth", "safetensors"

// Detects the format from the content: a zip ("PK\x03\x04") is torch.save's
// format; an 8-byte little-endian header length followed by '{' is
// safetensors. Errors: kNotFound (missing file), kInvalidArgument (neither
// format; a pre-1.6 torch.save file is named as such), kDataLoss (too short).
Result<WeightFormat> detect_weight_format(const std::filesystem::path& path);

// Reads every tensor of a weight file, in file order (.pth: the dict's order;
// .safetensors: the order of the data in the file).
//
// .pth: a state dict as torch.save writes it (an OrderedDict, `_metadata`
// and all), or a training checkpoint that nests one under "state_dict",
// "model" or "model_state_dict". A "module." prefix on every name
// (torch.nn.DataParallel) is removed. Tensors keep the sizes, strides and
// storage offset Python saved; tensors that shared a storage in Python share
// one here.
//
// Errors: kNotFound (missing file), kPermissionDenied, kInvalidArgument (not a
// weight file, an unsupported dtype or pickle opcode, a TorchScript archive or
// a pickled nn.Module instead of a state dict), kDataLoss (truncated or
// corrupt), kResourceExhausted (absurd sizes). Never aborts on bad input.
Result<StateDict> read_weight_file(const std::filesystem::path& path);

// Writes `tensors` (any device, any strides; written contiguous, in name
// order) and string `metadata` as safetensors. Errors: kInvalidArgument
// (duplicate or reserved names, undefined tensors, a dtype safetensors has no
// code for here), or the write error naming the file.
Status write_safetensors(const std::filesystem::path& path, const StateDict& tensors,
                         const std::map<std::string, std::string>& metadata = {});

// A zip that Python's torch.load() reads back as an OrderedDict of tensors
// (what torchvision's load_state_dict(strict=True) expects), with torch.save's
// layout: `archive/data.pkl` (pickle protocol 2), `archive/data/<i>` (one
// contiguous storage per tensor, in StateDict order) and `archive/version`.
// It loads with torch.load(weights_only=True) too. Errors as write_safetensors.
Status write_pth(const std::filesystem::path& path, const StateDict& tensors);

// Writes the format `path`'s extension names: ".safetensors", or ".pth"/".pt"/".bin".
Status write_weight_file(const std::filesystem::path& path, const StateDict& tensors);

}  // namespace kennel::models

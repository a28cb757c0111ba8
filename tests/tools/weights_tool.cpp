// Kennel's side of tests/parity/test_weight_files.py: reads weight files with
// kennel::models and writes them back in either format.
//
//   weights_tool list IN         prints {"format": ..., "tensors": [{"name", "dtype",
//                                "shape", "stride", "storage_offset", "sum"}, ...]}
//   weights_tool convert IN OUT  reads IN (format from its content) and writes OUT
//                                (format from OUT's extension: .safetensors, .pth, .pt)
//
// Errors go to stderr as "error: <status>"; the exit code is kennel::exit_code_for.
#include <cstdio>
#include <string>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "kennel/models/weight_file.h"
#include "kennel/util/status.h"

namespace {

using kennel::models::StateDict;

// torch's Python names, so the test compares with str(tensor.dtype) directly.
std::string python_dtype(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kShort: return "int16";
    case at::kChar: return "int8";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    default: return c10::toString(type);
  }
}

int fail(const kennel::Status& status) {
  std::fprintf(stderr, "error: %s\n", status.to_string().c_str());
  return kennel::exit_code_for(status.code());
}

int list(const std::string& in) {
  auto format = kennel::models::detect_weight_format(in);
  if (!format.ok()) return fail(format.status());
  auto tensors = kennel::models::read_weight_file(in);
  if (!tensors.ok()) return fail(tensors.status());
  nlohmann::json entries = nlohmann::json::array();
  for (const auto& [name, tensor] : *tensors) {
    entries.push_back({{"name", name},
                       {"dtype", python_dtype(tensor.scalar_type())},
                       {"shape", tensor.sizes().vec()},
                       {"stride", tensor.strides().vec()},
                       {"storage_offset", tensor.storage_offset()},
                       {"sum", tensor.to(at::kDouble).sum().item<double>()}});
  }
  const nlohmann::json out = {{"format", kennel::models::weight_format_name(*format)},
                              {"tensors", entries}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

int convert(const std::string& in, const std::string& out) {
  auto tensors = kennel::models::read_weight_file(in);
  if (!tensors.ok()) return fail(tensors.status());
  kennel::Status written = kennel::models::write_weight_file(out, *tensors);
  if (!written.ok()) return fail(written);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  if (command == "list" && argc == 3) return list(argv[2]);
  if (command == "convert" && argc == 4) return convert(argv[2], argv[3]);
  std::fprintf(stderr, "usage: weights_tool list IN\n       weights_tool convert IN OUT\n");
  return 2;
}

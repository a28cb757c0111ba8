// `kennel system [--json]`: what Kennel detected on this machine and what it
// chose from it — the CPU and its units, what `--precision auto` runs, how
// int8 runs, which BLAS kernels run fp32 matrix products, which row loops
// run training's fused BatchNorm, the threads. Every
// figure we publish names its machine; this is the line to quote.
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kennel/cli/command.h"
#include "kennel/models/normalize_activate.h"
#include "kennel/models/quantized_graph.h"
#include "kennel/util/allocator.h"
#include "kennel/util/blas_kernels.h"
#include "kennel/util/cpu_features.h"
#include "kennel/util/parallel.h"

namespace kennel::cli {

using nlohmann::json;

namespace {

json system_record() {
  const CpuFeatures& cpu = host_cpu_features();
  const PrecisionChoice precision = choose_precision("auto", cpu);
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  const AllocatorState allocator = allocator_state();
  return {{"cpu", {{"model", cpu.model_name}, {"description", cpu.describe()}, {"native_bf16", cpu.native_bf16()},
                   {"native_int8", cpu.native_int8()}, {"amx", cpu.amx_bf16}}},
          {"precision_auto", {{"precision", precision.precision}, {"reason", precision.reason}}},
          {"int8", models::describe_int8_kernels(cpu)},
          {"blas", {{"kernels", loaded_openblas_core()},
                    {"description", describe_blas_kernels()},
                    {"openblas_coretype", coretype == nullptr ? "" : coretype}}},
          {"batchnorm", {{"kernels", models::fused_batchnorm_kernels()}}},
          {"allocator", {{"name", allocator.name}, {"keeps_freed_memory", allocator.keeps_freed_memory}}},
          {"threads", {{"compute", default_thread_count()}, {"hardware", std::thread::hardware_concurrency()}}}};
}

}  // namespace

void register_system_command(CLI::App& app, CommandContext& context) {
  auto json_output = std::make_shared<bool>(false);
  auto* system = app.add_subcommand(
      "system", "What Kennel detected on this machine and chose from it: CPU units, precision, int8, BLAS, BatchNorm, allocator, threads");
  system->add_flag("--json", *json_output, "The same as JSON");
  system->callback([json_output] {
    const json record = system_record();
    if (*json_output) {
      fmt::print("{}\n", record.dump(2));
      return;
    }
    fmt::print("cpu:             {}\n", record["cpu"]["description"].get<std::string>());
    fmt::print("precision auto:  {} ({})\n", record["precision_auto"]["precision"].get<std::string>(),
               record["precision_auto"]["reason"].get<std::string>());
    fmt::print("int8:            {}\n", record["int8"].get<std::string>());
    fmt::print("blas:            {}\n", record["blas"]["description"].get<std::string>());
    fmt::print("batchnorm:       training BatchNorm + add + ReLU fused, {} row loops\n",
               record["batchnorm"]["kernels"].get<std::string>());
    fmt::print("allocator:       {}{}\n", record["allocator"]["name"].get<std::string>(),
               record["allocator"]["keeps_freed_memory"].get<bool>() ? ", freed memory kept for reuse" : "");
    fmt::print("threads:         {} for compute by default, {} hardware\n", record["threads"]["compute"].get<int>(),
               record["threads"]["hardware"].get<unsigned>());
  });
}

}  // namespace kennel::cli

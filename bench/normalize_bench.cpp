// Fused BatchNorm benchmark: milliseconds for one forward and backward of a training-mode
// BatchNorm + residual add + ReLU (models/normalize_activate.h) against LibTorch's own kernels
// for the same operations, on ResNet-50's map shapes at 224 px, batch 32, channels-last, in bf16
// and fp32, every core. A copy of the map is timed beside them: the memory's speed on this machine.
// Each figure is the best of --repeats after a warm-up, the fused and declared runs alternating.
//
//   normalize_bench [--batch 32] [--repeats 7] [--threads N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <torch/torch.h>

#include "kennel/models/batch_norm.h"
#include "kennel/models/normalize_activate.h"
#include "kennel/util/cpu_features.h"

using namespace kennel;

namespace {

// What the layer declares, so that the same call runs LibTorch's kernels.
class DeclaredBatchNorm : public models::BatchNormSync {
 public:
  at::Tensor forward(models::BatchNorm2dImpl& layer, const at::Tensor& input) override {
    return at::batch_norm(input, layer.weight, layer.bias, layer.running_mean, layer.running_var, true,
                          layer.next_average_factor(), layer.options.eps(), false);
  }
};

struct Shape {
  const char* where;
  int64_t channels, size;
  bool residual;
};

// ResNet-50's BatchNorm maps at 224 px: (channels, side), and whether a residual add follows.
const std::vector<Shape> kShapes = {
    {"layer1 bn1/bn2", 64, 56, false}, {"layer1 bn3 + add", 256, 56, true}, {"layer2 bn3 + add", 512, 28, true},
    {"layer3 bn1/bn2", 256, 14, false}, {"layer3 bn3 + add", 1024, 14, true}, {"layer4 bn3 + add", 2048, 7, true},
};

double best_ms(int repeats, const std::function<void()>& work) {
  work();
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    work();
    best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Fused BatchNorm + add + ReLU against LibTorch's kernels"};
  int64_t batch = 32;
  int repeats = 7;
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  app.add_option("--batch", batch, "images per map");
  app.add_option("--threads", threads, "intra-op threads (default: every core)");
  app.add_option("--repeats", repeats, "timed runs per figure (the best is kept)");
  CLI11_PARSE(app, argc, argv);
  at::set_num_threads(threads);

  fmt::print("CPU: {}; fused kernels: {}; threads: {}\n", host_cpu_features().describe(),
             models::fused_batchnorm_kernels(), at::get_num_threads());
  fmt::print("{:<18} {:>6} {:>22} {:>9} {:>10} {:>11} {:>8}\n", "map", "dtype", "shape", "copy ms", "fused ms",
             "LibTorch ms", "speedup");
  for (const at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
    for (const Shape& shape : kShapes) {
      const std::vector<int64_t> sizes = {batch, shape.channels, shape.size, shape.size};
      const auto map = [&] { return at::randn(sizes).to(dtype).contiguous(at::MemoryFormat::ChannelsLast); };
      const at::Tensor input = map().requires_grad_(), grad = map();
      const at::Tensor residual = shape.residual ? map().requires_grad_() : at::Tensor();
      models::BatchNorm2d fused(shape.channels), declared(shape.channels);
      declared->set_sync(std::make_shared<DeclaredBatchNorm>());
      const auto step = [&](models::BatchNorm2d& norm) {
        return [&] {
          input.mutable_grad() = at::Tensor();
          if (residual.defined()) residual.mutable_grad() = at::Tensor();
          const models::AfterNormalization after{.residual = residual, .rectifier = models::Rectifier::kRelu};
          models::normalize_activate(*norm, input, after).backward(grad);
        };
      };
      const double copy = best_ms(repeats, [&] { (void)input.detach().clone(); });
      double fused_ms = 1e30, declared_ms = 1e30;
      for (int round = 0; round < 2; ++round) {
        fused_ms = std::min(fused_ms, best_ms(repeats, step(fused)));
        declared_ms = std::min(declared_ms, best_ms(repeats, step(declared)));
      }
      fmt::print("{:<18} {:>6} {:>22} {:>9.2f} {:>10.2f} {:>11.2f} {:>7.2f}x\n", shape.where,
                 dtype == at::kBFloat16 ? "bf16" : "fp32", fmt::format("[{}]", fmt::join(sizes, ",")), copy, fused_ms,
                 declared_ms, declared_ms / fused_ms);
    }
  }
  return 0;
}

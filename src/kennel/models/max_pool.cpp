#include "kennel/models/max_pool.h"

#include <algorithm>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include "kennel/util/loop_instruction_set.h"

namespace kennel::models {
namespace {

// One map's geometry and buffers for the window loops (detail/max_pool_kernels.inc).
struct PoolCall {
  bool bfloat16 = false;
  long height = 0, width = 0, channels = 0, out_height = 0, out_width = 0;
  long kernel_rows = 1, kernel_columns = 1, stride_rows = 1, stride_columns = 1, pad_rows = 0,
       pad_columns = 0;
  const void* x = nullptr;         // forward: the map
  void* out = nullptr;             // forward: the pooled map
  unsigned char* taps = nullptr;   // forward: the kept taps, or null; backward: read
  const void* grad_out = nullptr;  // backward
  void* grad_in = nullptr;         // backward
};

}  // namespace

namespace avx512_pool_kernels {
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,prefer-vector-width=512")
#include "kennel/models/detail/max_pool_kernels.inc"
#pragma GCC pop_options
}  // namespace avx512_pool_kernels

namespace avx2_pool_kernels {
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include "kennel/models/detail/max_pool_kernels.inc"
#pragma GCC pop_options
}  // namespace avx2_pool_kernels

namespace baseline_pool_kernels {
#include "kennel/models/detail/max_pool_kernels.inc"
}  // namespace baseline_pool_kernels

namespace {

struct PoolRunners {
  void (*forward)(const PoolCall&, long, long, long, float*, float*);
  void (*backward)(const PoolCall&, long, long, long, float*);
};

// Indexed by InstructionSet (clause 4).
constexpr std::array<PoolRunners, 3> kRunners = {{
    {&avx512_pool_kernels::run_forward, &avx512_pool_kernels::run_backward},
    {&avx2_pool_kernels::run_forward, &avx2_pool_kernels::run_backward},
    {&baseline_pool_kernels::run_forward, &baseline_pool_kernels::run_backward},
}};

const PoolRunners& host_runners() {
  return kRunners[static_cast<size_t>(loop_instruction_set())];
}

int64_t pooled_size(int64_t size, int64_t kernel, int64_t stride, int64_t padding) {
  return (size + 2 * padding - kernel) / stride + 1;
}

PoolCall describe(const at::Tensor& input, const PoolSize& kernel, const PoolSize& stride,
                  const PoolSize& padding) {
  PoolCall call;
  call.bfloat16 = input.scalar_type() == at::kBFloat16;
  call.channels = input.size(1);
  call.height = input.size(2);
  call.width = input.size(3);
  call.kernel_rows = kernel[0];
  call.kernel_columns = kernel[1];
  call.stride_rows = stride[0];
  call.stride_columns = stride[1];
  call.pad_rows = padding[0];
  call.pad_columns = padding[1];
  call.out_height = pooled_size(call.height, kernel[0], stride[0], padding[0]);
  call.out_width = pooled_size(call.width, kernel[1], stride[1], padding[1]);
  return call;
}

// Calls body(image, first_row, last_row, scratch) over every (image, row) of `images` x `rows`
// split among the threads (a batch of one still uses them all), with `scratch_floats` of scratch
// per thread.
template <typename Body>
void for_each_row_span(int64_t images, int64_t rows, const Body& body, int64_t scratch_floats) {
  at::parallel_for(0, images * rows, 1, [&](int64_t first, int64_t last) {
    std::vector<float> scratch(static_cast<size_t>(scratch_floats));
    for (int64_t item = first; item < last;) {
      const int64_t image = item / rows, row = item % rows;
      const int64_t span = std::min(last - item, rows - row);
      body(image, row, row + span, scratch.data());
      item += span;
    }
  });
}

// Clause 2: the pooled map and, when `keep_taps`, the kept taps ([N, OH, OW, C] bytes; else undefined).
std::pair<at::Tensor, at::Tensor> pool_forward(const at::Tensor& input, const PoolSize& kernel,
                                               const PoolSize& stride, const PoolSize& padding, bool keep_taps) {
  PoolCall call = describe(input, kernel, stride, padding);
  const int64_t images = input.size(0);
  at::Tensor out = at::empty({images, call.channels, call.out_height, call.out_width},
                             input.options(), at::MemoryFormat::ChannelsLast);
  at::Tensor taps;
  if (keep_taps) {
    taps = at::empty({images, call.out_height, call.out_width, call.channels}, input.options().dtype(at::kByte));
    call.taps = taps.data_ptr<uint8_t>();
  }
  call.x = input.data_ptr();
  call.out = out.data_ptr();
  const auto forward = host_runners().forward;
  for_each_row_span(
      images, call.out_height,
      [&](int64_t image, int64_t first_row, int64_t last_row, float* scratch) {
        forward(call, image, first_row, last_row, scratch, scratch + call.channels);
      },
      2 * call.channels);
  return {out, taps};
}

class MaxPoolFunction : public torch::autograd::Function<MaxPoolFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* context, const at::Tensor& input,
                            const PoolSize& kernel, const PoolSize& stride,
                            const PoolSize& padding) {
    auto [out, taps] = pool_forward(input, kernel, stride, padding, /*keep_taps=*/true);
    context->save_for_backward({taps});
    context->saved_data["sizes"] = input.sizes().vec();
    context->saved_data["geometry"] =
        std::vector<int64_t>{kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1]};
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* context,
                                                 torch::autograd::variable_list gradients) {
    const at::Tensor taps = context->get_saved_variables()[0];
    const std::vector<int64_t> sizes = context->saved_data["sizes"].toIntVector();
    const std::vector<int64_t> g = context->saved_data["geometry"].toIntVector();
    const at::Tensor grad_out = gradients[0].contiguous(at::MemoryFormat::ChannelsLast);
    at::Tensor grad_in = at::empty(sizes, grad_out.options(), at::MemoryFormat::ChannelsLast);
    PoolCall call = describe(grad_in, {g[0], g[1]}, {g[2], g[3]}, {g[4], g[5]});
    call.taps = taps.data_ptr<uint8_t>();
    call.grad_out = grad_out.data_ptr();
    call.grad_in = grad_in.data_ptr();
    const auto backward = host_runners().backward;
    for_each_row_span(
        sizes[0], call.height,
        [&](int64_t image, int64_t first_row, int64_t last_row, float* scratch) {
          backward(call, image, first_row, last_row, scratch);
        },
        call.channels);
    return {grad_in, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

bool max_pool_runs_fused(const at::Tensor& input, const PoolSize& kernel, const PoolSize& stride,
                         const PoolSize& padding) {
  if (!input.defined() || input.dim() != 4 || !input.device().is_cpu() ||
      (input.scalar_type() != at::kFloat && input.scalar_type() != at::kBFloat16) ||
      !input.is_contiguous(at::MemoryFormat::ChannelsLast) || input.numel() == 0) {
    return false;
  }
  for (int axis = 0; axis < 2; ++axis) {
    if (kernel[axis] < 1 || stride[axis] < 1 || padding[axis] < 0 ||
        2 * padding[axis] > kernel[axis] ||
        input.size(2 + axis) + 2 * padding[axis] < kernel[axis]) {
      return false;
    }
  }
  return kernel[0] * kernel[1] <= 255;
}

at::Tensor max_pool(const at::Tensor& input, const PoolSize& kernel, const PoolSize& stride,
                    const PoolSize& padding) {
  if (!max_pool_runs_fused(input, kernel, stride, padding))
    return at::max_pool2d(input, kernel, stride, padding);
  if (input.requires_grad() && at::GradMode::is_enabled()) {
    return MaxPoolFunction::apply(input, kernel, stride, padding);
  }
  return pool_forward(input, kernel, stride, padding, /*keep_taps=*/false).first;
}

}  // namespace kennel::models

#include "kennel/debug/summarize.h"

#include <cmath>

#include <torch/torch.h>

namespace kennel::debug {

TensorSummary summarize(const at::Tensor& tensor, const std::string& collection, const std::string& what,
                        int64_t step, Mode mode, const SummaryOptions& options) {
  TensorSummary summary;
  summary.name = collection + "/" + what;
  summary.collection = collection;
  summary.step = step;
  summary.mode = mode;
  summary.shape = tensor.sizes().vec();
  summary.count = tensor.numel();
  if (summary.count == 0) return summary;
  const at::NoGradGuard no_grad;
  // Statistics are taken in the tensor's own precision with float64 accumulation: converting a
  // whole batch of images (or every weight) to float64 first costs more than the reductions.
  const at::Tensor flat = tensor.detach().reshape({-1});
  const at::Tensor nan = flat.isnan();
  const at::Tensor inf = flat.isinf();
  const double n = static_cast<double>(summary.count);
  const at::Tensor non_finite_count = (nan | inf).sum();
  // The common case has no NaN/Inf: skip the copy that selecting the finite values makes.
  const at::Tensor finite =
      non_finite_count.item<int64_t>() == 0 ? flat : flat.masked_select(~(nan | inf));
  const bool any_finite = finite.numel() > 0;
  std::vector<at::Tensor> parts = {nan.sum().to(torch::kDouble), inf.sum().to(torch::kDouble),
                                   (flat == 0).sum().to(torch::kDouble), (flat > 0).sum().to(torch::kDouble)};
  if (any_finite) {
    const at::Tensor wide = finite.is_floating_point() ? finite : finite.to(torch::kDouble);
    parts.insert(parts.end(), {wide.min().to(torch::kDouble), wide.max().to(torch::kDouble),
                               wide.sum(torch::kDouble), wide.square().sum(torch::kDouble),
                               wide.abs().sum(torch::kDouble)});
  }
  const at::Tensor stats = torch::stack(parts).cpu();
  const double* s = stats.data_ptr<double>();
  summary.fraction_nan = s[0] / n;
  summary.fraction_inf = s[1] / n;
  summary.fraction_zero = s[2] / n;
  summary.fraction_positive = s[3] / n;
  if (any_finite) {
    const double finite_count = static_cast<double>(finite.numel());
    summary.min = s[4];
    summary.max = s[5];
    summary.mean = s[6] / finite_count;
    summary.variance = std::max(0.0, s[7] / finite_count - summary.mean * summary.mean);
    summary.std = std::sqrt(summary.variance);
    summary.l1 = s[8];
    summary.l2 = std::sqrt(s[7]);
  }
  // NaN/Inf must reach the rules even though the finite statistics ignore them.
  if (summary.fraction_nan > 0) summary.mean = std::nan("");
  if (options.histogram_bins > 0 && any_finite) {
    Histogram histogram;
    const double low = summary.min, high = summary.max > summary.min ? summary.max : summary.min + 1e-12;
    const at::Tensor counts =
        torch::histc(finite.to(torch::kFloat), options.histogram_bins, low, high).to(torch::kLong).cpu();
    for (int64_t b = 0; b <= options.histogram_bins; ++b) {
      histogram.edges.push_back(low + (high - low) * static_cast<double>(b) / static_cast<double>(options.histogram_bins));
    }
    const int64_t* c = counts.data_ptr<int64_t>();
    histogram.counts.assign(c, c + counts.numel());
    summary.histogram = std::move(histogram);
  }
  if (options.keep_values > 0 && summary.count <= options.keep_values) {
    const at::Tensor host = flat.to(torch::kDouble).cpu().contiguous();
    summary.values.assign(host.data_ptr<double>(), host.data_ptr<double>() + host.numel());
  }
  return summary;
}

TensorSummary scalar_summary(double value, const std::string& collection, const std::string& what, int64_t step,
                             Mode mode) {
  TensorSummary summary;
  summary.name = collection + "/" + what;
  summary.collection = collection;
  summary.step = step;
  summary.mode = mode;
  summary.count = 1;
  summary.shape = {1};
  summary.min = summary.max = summary.mean = value;
  summary.l1 = summary.l2 = std::abs(value);
  summary.fraction_zero = value == 0 ? 1 : 0;
  summary.fraction_positive = value > 0 ? 1 : 0;
  summary.fraction_nan = std::isnan(value) ? 1 : 0;
  summary.fraction_inf = std::isinf(value) ? 1 : 0;
  summary.values = {value};
  return summary;
}

}  // namespace kennel::debug

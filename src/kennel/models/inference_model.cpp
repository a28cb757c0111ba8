#include "kennel/models/inference_model.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>

#include "kennel/models/inference_graph.h"
#include "kennel/models/quantized_graph.h"

namespace kennel::models {

namespace fs = std::filesystem;

namespace {
std::string describe_check(const QuantizationRecord& record) {
  return fmt::format("top-1 agreement with fp32 {:.4f} on {} {} images", record.check.agreement,
                     record.check.images, record.check.split);
}
}  // namespace

Status check_inference_precision(const std::string& precision) {
  if (precision == "auto" || precision == "fp32" || precision == "bf16" || precision == "int8") return {};
  return invalid_argument("--precision must be {} for CPU inference, got '{}'", kInferencePrecisions, precision);
}

Result<PrecisionChoice> choose_model_precision(const std::string& requested, const ModelInfo& info,
                                               const std::optional<QuantizationRecord>& int8,
                                               double int8_min_agreement, const CpuFeatures& cpu) {
  KENNEL_RETURN_IF_ERROR(check_inference_precision(requested));
  const bool good_enough = int8.has_value() && int8->check.agreement >= int8_min_agreement;
  if (requested == "int8") {
    if (!int8.has_value()) {
      return failed_precondition("int8 needs a calibrated model: this one has no {} (run `kennel quantize MODEL "
                                 "--calibration DATA`, and use the directory it writes)",
                                 kQuantizationFile);
    }
    if (!good_enough) {
      return failed_precondition("int8 refused: its {} is below --int8-min-agreement {} (calibrate on more or "
                                 "more typical images, use --precision bf16 or fp32, or lower the threshold "
                                 "to accept the loss)",
                                 describe_check(*int8), int8_min_agreement);
    }
    std::string reason = fmt::format("int8 as asked: oneDNN, {}", describe_check(*int8));
    std::string warning;
    if (!cpu.native_int8()) {
      warning = fmt::format("this CPU ({}) has no VNNI or AMX: int8 runs with 7-bit activations, slower and "
                            "less exact than on a CPU with them",
                            cpu.describe());
    }
    return PrecisionChoice{"int8", std::move(reason), std::move(warning)};
  }
  PrecisionChoice choice = choose_inference_precision(requested, info.precision, info.precision_auto, cpu);
  if (requested != "auto" || !int8.has_value()) return choice;
  if (good_enough && cpu.native_int8()) {
    return PrecisionChoice{"int8",
                           fmt::format("auto: a calibrated model ({} >= {}) on a CPU with int8 dot products ({})",
                                       describe_check(*int8), int8_min_agreement, cpu.describe()),
                           ""};
  }
  const std::string why = good_enough ? fmt::format("this CPU ({}) has neither VNNI nor AMX", cpu.describe())
                                      : fmt::format("its {} is below {}", describe_check(*int8), int8_min_agreement);
  choice.warning = (choice.warning.empty() ? "" : choice.warning + "; ") +
                   fmt::format("the model is calibrated for int8 but runs {}: {}", choice.precision, why);
  return choice;
}

InferenceModel::~InferenceModel() = default;

Result<std::unique_ptr<InferenceModel>> InferenceModel::prepare(const fs::path& dir, LoadedModel loaded,
                                                                const InferenceOptions& options) {
  // Only auto and int8 look at the calibration: an explicit fp32/bf16 runs whatever it holds.
  Result<std::optional<QuantizationRecord>> record = std::optional<QuantizationRecord>();
  if (options.precision == "auto" || options.precision == "int8") record = read_quantization_record(dir);
  if (!record.ok()) return record.status();
  auto choice = choose_model_precision(options.precision, loaded.info, *record, options.int8_min_agreement,
                                       host_cpu_features());
  if (!choice.ok()) return choice.status().with_context(fmt::format("model '{}'", dir.string()));
  std::unique_ptr<InferenceModel> model(new InferenceModel());
  model->choice_ = *choice;
  model->classifier_ = loaded.classifier;
  model->channels_last_ = options.channels_last;
  const bool int8 = choice->precision == "int8";
  model->input_dtype_ = inference_dtype(choice->precision);
  try {
    // int8 derives its weights from the folded fp32 ones.
    prepare_inference_graph(model->classifier_, {.fold_batchnorm = options.fold_batchnorm || int8,
                                                 .dtype = model->input_dtype_,
                                                 .channels_last = options.channels_last});
    if (int8) {
      auto graph = QuantizedGraph::build(model->classifier_);
      if (!graph.ok()) return graph.status().with_context(fmt::format("model '{}'", dir.string()));
      KENNEL_RETURN_IF_ERROR(
          (*graph)->quantize((*record)->ranges, !host_cpu_features().native_int8())
              .with_context(fmt::format("model '{}' ({})", dir.string(), kQuantizationFile)));
      model->int8_ = std::move(*graph);
    }
  } catch (const c10::Error& error) {
    return internal_error("preparing model '{}' for inference: {}", dir.string(), error.what_without_backtrace());
  }
  return model;
}

at::Tensor InferenceModel::forward(const at::Tensor& images) {
  if (int8_) return int8_->forward(images);
  c10::InferenceMode inference;
  at::Tensor input = images.to(input_dtype_);
  if (channels_last_) input = input.contiguous(at::MemoryFormat::ChannelsLast);
  return classifier_->forward(input).to(at::kFloat).contiguous();
}

}  // namespace kennel::models

#include "worker/layer_quantizer.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/compressed_tensors_format.h"
#include "common/status_util.h"
#include "worker/layer_formats.h"
#include "worker/model/tensor_convert.h"
#include "worker/packed_dequantize.h"
#include "worker/quant/baq.h"
#include "worker/quant/gptq.h"
#include "worker/quant/quant_grid.h"
#include "worker/quant/tensor_checks.h"
#include "worker/torch/torch_call.h"

namespace baq::worker {
namespace {

absl::StatusOr<QuantizedLayer> RunGptq(const std::string& name, const at::Tensor& w,
                                       const at::Tensor& h, const QuantizationConfig& q,
                                       int bits, double* proxy_loss) {
  GptqOptions o;
  o.grid.levels = 1 << bits;
  o.grid.symmetric = q.symmetric;
  o.percdamp = q.percdamp;
  o.group_size = q.group_size;
  o.act_order = q.act_order;
  o.static_groups = q.static_groups;
  o.block_size = q.block_size;
  BAQ_ASSIGN_OR_RETURN(GptqResult r, Gptq(w, h, o));
  *proxy_loss = r.proxy_loss;
  QuantizedLayer l;
  l.name = name;
  l.dequantized = r.weight;
  l.codes = r.codes;
  l.scales = r.scales;
  l.zeros = r.zeros;
  l.g_idx = r.g_idx;
  BAQ_ASSIGN_OR_RETURN(l.levels, CallTorch("levels", [&] {
    return at::full({w.size(1)}, 1 << bits, at::TensorOptions().dtype(at::kInt));
  }));
  return l;
}

}  // namespace

int LayerQuantizer::ReferenceLevels() const {
  return static_cast<int>(std::lround(std::exp2(config_.target_bits)));
}

absl::StatusOr<std::vector<double>> LayerQuantizer::MeasureColumnLoss(
    const at::Tensor& weight, const at::Tensor& hessian) const {
  BaqOptions o;
  o.percdamp = config_.percdamp;
  o.act_order = config_.act_order;
  o.block_size = config_.block_size;
  o.compute_proxy_loss = false;
  BAQ_ASSIGN_OR_RETURN(BaqResult r, BaqMeasure(weight, hessian, ReferenceLevels(), o));
  return CallTorch("column loss", [&] {
    at::Tensor l = r.column_loss.to(at::kCPU, at::kDouble).contiguous();
    return std::vector<double>(l.data_ptr<double>(), l.data_ptr<double>() + l.numel());
  });
}

absl::StatusOr<std::vector<double>> LayerQuantizer::MeasureCandidateLosses(
    const at::Tensor& weight, const at::Tensor& hessian) const {
  std::vector<double> losses;
  for (int32_t bits : config_.candidate_bits) {
    double loss = 0;
    BAQ_RETURN_IF_ERROR(
        Annotate(RunGptq("", weight, hessian, config_, bits, &loss).status(),
                 absl::StrCat(bits, "-bit candidate")));
    losses.push_back(loss);
  }
  return losses;
}

namespace {

// Result::packed_weight of `layer` (see layer_quantizer.h).
absl::StatusOr<std::vector<TensorBytes>> PackedWeight(const QuantizedLayer& layer,
                                                      const LayerQuantizer::Result& result,
                                                      const std::vector<OutputFormat>& formats,
                                                      at::ScalarType stored_type) {
  BAQ_ASSIGN_OR_RETURN(const bool same, CallTorch("check packed weight", [&] {
    const at::Tensor rebuilt =
        layer.row_min.defined()
            ? DequantizeRowRangeCodes(layer.codes, layer.levels.to(at::kCPU, at::kInt),
                                      layer.row_min, layer.row_max)
            : DequantizeCodes(layer.codes, layer.scales.index_select(1, layer.g_idx.to(at::kLong)),
                              layer.zeros.index_select(1, layer.g_idx.to(at::kLong)));
    return at::equal(rebuilt.to(stored_type).to(at::kFloat), result.stored_weight);
  }));
  if (!same) return std::vector<TensorBytes>();
  const auto written = std::find(formats.begin(), formats.end(), OutputFormat::kPacked);
  if (written == formats.end()) return PackedTensors(layer);
  std::vector<TensorBytes> out;
  for (size_t t = 0; t < result.tensors.size(); ++t) {
    if (result.tensor_format[t] == written - formats.begin()) out.push_back(result.tensors[t]);
  }
  return out;
}

}  // namespace

absl::StatusOr<LayerQuantizer::Result> LayerQuantizer::Quantize(
    const std::string& name, const at::Tensor& weight, const at::Tensor& hessian,
    const LayerAllocation& allocation, const std::vector<OutputFormat>& formats,
    DType checkpoint_dtype, bool packed_weight) const {
  // size(1) of a 1-D tensor throws; everything else is checked by the numerics.
  if (!weight.defined() || weight.dim() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": weight must be 2-D, got shape ", ShapeString(weight)));
  }
  const int64_t rows = weight.size(0), cols = weight.size(1);
  QuantizedLayer layer;
  layer.name = name;
  Result result;
  result.report.name = name;
  result.report.rows = rows;
  result.report.columns = cols;
  const bool module = config_.module_allocation();
  const bool baq = config_.method == QuantMethod::kBaq && !module;
  // Module allocation: GPTQ at the module's width, exactly as measured.
  const int uniform_bits =
      module ? allocation.gptq_bits : static_cast<int>(std::lround(config_.target_bits));
  if (module && (uniform_bits < 1 || uniform_bits > 8)) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": module allocation needs a width in [1, 8] per layer, got ", uniform_bits));
  }
  if (baq) {
    if (static_cast<int64_t>(allocation.levels.size()) != cols) {
      return absl::InvalidArgumentError(absl::StrCat("allocation has ", allocation.levels.size(),
                                                     " levels for ", cols, " columns"));
    }
    BaqOptions o;
    o.percdamp = config_.percdamp;
    o.act_order = config_.act_order;
    o.block_size = config_.block_size;
    BAQ_ASSIGN_OR_RETURN(BaqResult r, BaqQuantize(weight, hessian, allocation.levels, o));
    layer.dequantized = r.weight;
    layer.codes = r.codes;
    layer.levels = r.levels;
    layer.row_min = r.row_min;
    layer.row_max = r.row_max;
    result.report.proxy_loss = r.proxy_loss;
    double bits = 0;
    for (int32_t l : allocation.levels) bits += std::log2(static_cast<double>(l));
    result.report.bits_sum = bits * static_cast<double>(rows);
  } else if (module || config_.method == QuantMethod::kGptq) {
    BAQ_ASSIGN_OR_RETURN(layer, RunGptq(name, weight, hessian, config_, uniform_bits,
                                        &result.report.proxy_loss));
    result.report.bits_sum = static_cast<double>(uniform_bits * rows * cols);
  } else {
    GridOptions grid{1 << uniform_bits, config_.symmetric};
    BAQ_ASSIGN_OR_RETURN(RtnResult r, Rtn(weight, grid, config_.group_size));
    layer.dequantized = r.weight;
    layer.codes = r.codes;
    layer.scales = r.scales;
    layer.zeros = r.zeros;
    layer.g_idx = r.g_idx;
    BAQ_ASSIGN_OR_RETURN(layer.levels, CallTorch("levels", [&] {
      return at::full({cols}, 1 << uniform_bits, at::TensorOptions().dtype(at::kInt));
    }));
    BAQ_ASSIGN_OR_RETURN(result.report.proxy_loss, ProxyLoss(weight, r.weight, hessian));
    result.report.bits_sum = static_cast<double>(uniform_bits * rows * cols);
  }
  if (module) {  // One width per module, whichever formats are written.
    result.report.gptq_bits = uniform_bits;
    result.report.gptq_proxy_loss = result.report.proxy_loss;
  }
  const at::ScalarType stored_type = ToScalarType(checkpoint_dtype);
  BAQ_ASSIGN_OR_RETURN(result.stored_weight, CallTorch("round to checkpoint dtype", [&] {
    return layer.dequantized.to(stored_type).to(at::kFloat);
  }));

  // The gptq and compressed-tensors formats store one grid per module: a BAQ
  // job's layer is quantized again with GPTQ at its projected width
  // (allocation.gptq_bits), once for both formats.
  QuantizedLayer module_grid;
  int module_bits = 0;
  const auto module_layer = [&]() -> absl::StatusOr<const QuantizedLayer*> {
    if (module_bits == 0) {
      module_bits = baq ? allocation.gptq_bits : uniform_bits;
      if (module_bits != 2 && module_bits != 3 && module_bits != 4 && module_bits != 8) {
        return absl::InvalidArgumentError(absl::StrCat(
            name, ": gptq and compressed-tensors formats support 2, 3, 4 or 8 bits per module, "
            "got ", module_bits));
      }
      if (baq) {
        BAQ_ASSIGN_OR_RETURN(module_grid, RunGptq(name, weight, hessian, config_, module_bits,
                                                  &result.report.gptq_proxy_loss));
      } else {
        result.report.gptq_proxy_loss = result.report.proxy_loss;
      }
      result.report.gptq_bits = module_bits;
    }
    return baq ? &module_grid : &layer;
  };
  for (size_t f = 0; f < formats.size(); ++f) {
    std::vector<TensorBytes> tensors;
    switch (formats[f]) {
      case OutputFormat::kFakeQuant: {
        BAQ_ASSIGN_OR_RETURN(TensorBytes t, FakeQuantTensor(layer, checkpoint_dtype));
        tensors.push_back(std::move(t));
        break;
      }
      case OutputFormat::kPacked: {
        BAQ_ASSIGN_OR_RETURN(tensors, PackedTensors(layer));
        break;
      }
      case OutputFormat::kGptq: {
        BAQ_ASSIGN_OR_RETURN(const QuantizedLayer* g, module_layer());
        BAQ_ASSIGN_OR_RETURN(tensors, GptqTensors(*g, module_bits));
        break;
      }
      case OutputFormat::kCompressedTensors: {
        BAQ_ASSIGN_OR_RETURN(const QuantizedLayer* g, module_layer());
        BAQ_ASSIGN_OR_RETURN(tensors,
                             CompressedTensorsTensors(*g, module_bits, config_.symmetric));
        break;
      }
    }
    for (TensorBytes& t : tensors) {
      result.tensors.push_back(std::move(t));
      result.tensor_format.push_back(static_cast<int32_t>(f));
    }
  }
  if (packed_weight) {
    BAQ_ASSIGN_OR_RETURN(result.packed_weight,
                         PackedWeight(layer, result, formats, stored_type));
  }
  return result;
}

}  // namespace baq::worker

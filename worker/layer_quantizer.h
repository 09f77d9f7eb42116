// worker/layer_quantizer.h
//
// LayerQuantizer applies a job's QuantizationConfig to one linear layer: BAQ
// pass 1 (per-column losses at the reference width), then the final
// quantization (BAQ pass 2 with the coordinator's levels, GPTQ or RTN) and
// the layer's tensors in every requested output format (layer_formats.h).
// For the `gptq` format of a BAQ job, the layer is re-quantized with GPTQ at
// the projected integer width the allocation carries, and the proxy loss of
// that projection is reported.
// Allocation module: the measurement is GPTQ's proxy loss at every candidate
// width, and Quantize() runs GPTQ at the width the allocation's gptq_bits
// names (the same call, so its proxy loss equals the measured one).
//
// Stateless apart from the config; thread-compatible. LibTorch exceptions
// are converted to Status.
#ifndef BAQ_WORKER_LAYER_QUANTIZER_H_
#define BAQ_WORKER_LAYER_QUANTIZER_H_

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/block_protocol.h"
#include "common/job_config.h"

namespace baq::worker {

class LayerQuantizer {
 public:
  explicit LayerQuantizer(const QuantizationConfig& config) : config_(config) {}

  // Level count of BAQ's uniform pass 1: round(2^target_bits).
  int ReferenceLevels() const;

  // BAQ pass 1: loss_j of every input column. weight [out, in], hessian [in, in].
  absl::StatusOr<std::vector<double>> MeasureColumnLoss(const at::Tensor& weight,
                                                        const at::Tensor& hessian) const;

  // Allocation module: tr((W - Q) H (W - Q)^T) of GPTQ at each of
  // config.candidate_bits, in order.
  absl::StatusOr<std::vector<double>> MeasureCandidateLosses(const at::Tensor& weight,
                                                             const at::Tensor& hessian) const;

  struct Result {
    // The dequantized weight rounded to the checkpoint dtype (float32 values):
    // what the next block must see.
    at::Tensor stored_weight;
    std::vector<TensorBytes> tensors;
    std::vector<int32_t> tensor_format;  // Index into `formats`, per tensor.
    LayerReport report;
    // With `packed_weight`: the layer in the packed format (layer_formats.h;
    // the packed output's own tensors when the job writes that format),
    // checked here to rebuild stored_weight bit for bit
    // (packed_dequantize.h). Empty when it does not: the dense stored_weight
    // must travel then.
    std::vector<TensorBytes> packed_weight;
  };
  absl::StatusOr<Result> Quantize(const std::string& name, const at::Tensor& weight,
                                  const at::Tensor& hessian, const LayerAllocation& allocation,
                                  const std::vector<OutputFormat>& formats,
                                  DType checkpoint_dtype, bool packed_weight = false) const;

 private:
  const QuantizationConfig config_;
};

}  // namespace baq::worker

#endif  // BAQ_WORKER_LAYER_QUANTIZER_H_

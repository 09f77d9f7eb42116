// worker/layer_formats.h
//
// The tensors one quantized linear layer contributes to each output format,
// and the loader that turns baq's packed format back into weights.
//
// fake-quant: "<name>.weight", the dequantized weight in the checkpoint's
//   dtype (transformers loads it as a plain model).
// packed (baq-packed-v1), per layer:
//   "<name>.levels"  I32 [in]    level count L_j of input column j
//   "<name>.qcodes"  U8  [bytes] column-major codes: for j = 0..in-1, the
//                    `out` codes of column j packed mixed-radix base L_j
//                    (common/code_packing.h) into uint64 little-endian words
//   BAQ layers:  "<name>.row_min", "<name>.row_max" F32 [out]: the per-row
//                range (after quant.py's clamps) the column grids derive from;
//   grid layers: "<name>.scales", "<name>.zeros" F32 [out, groups] and
//                "<name>.g_idx" I32 [in] (GPTQ / RTN).
// gptq (GPTQ v1 checkpoint layout, as AutoGPTQ/GPTQModel load it):
//   "<name>.qweight" I32 [in*bits/32, out], "<name>.qzeros" I32
//   [groups, out*bits/32] holding (zero - 1) mod 2^bits, "<name>.scales"
//   F16 [groups, out], "<name>.g_idx" I32 [in].
//
// Stateless functions; thread-safe. LibTorch exceptions are converted.
#ifndef BAQ_WORKER_LAYER_FORMATS_H_
#define BAQ_WORKER_LAYER_FORMATS_H_

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/block_protocol.h"
#include "common/safetensors_checkpoint.h"

namespace baq::worker {

// A quantized layer in either grid kind, in original column order.
struct QuantizedLayer {
  std::string name;        // Tensor prefix, e.g. "model.layers.3.mlp.up_proj".
  at::Tensor dequantized;  // float32 [out, in]
  at::Tensor codes;        // uint8 [out, in]
  at::Tensor levels;       // int32 [in]
  // BAQ kind (defined when row_min is):
  at::Tensor row_min;  // float32 [out]
  at::Tensor row_max;  // float32 [out]
  // Grid kind:
  at::Tensor scales;  // float32 [out, groups]
  at::Tensor zeros;   // float32 [out, groups]
  at::Tensor g_idx;   // int32 [in]
};

absl::StatusOr<TensorBytes> FakeQuantTensor(const QuantizedLayer& layer, DType dtype);
absl::StatusOr<std::vector<TensorBytes>> PackedTensors(const QuantizedLayer& layer);
// REQUIRES: grid kind with power-of-two levels 2^bits, bits in {2, 3, 4, 8}
// and in_features * bits % 32 == 0, out_features * bits % 32 == 0.
absl::StatusOr<std::vector<TensorBytes>> GptqTensors(const QuantizedLayer& layer, int bits);

// Rebuilds the float32 [out, in] weight of `name` from a packed checkpoint.
// DataLoss/InvalidArgument naming the tensor on inconsistent content.
absl::StatusOr<at::Tensor> DequantizePacked(const SafetensorsCheckpoint& ckpt,
                                            const std::string& name);

// Bytes of a contiguous CPU copy of `t`, as a TensorBytes named `name`.
absl::StatusOr<TensorBytes> ToTensorBytes(std::string name, const at::Tensor& t);

}  // namespace baq::worker

#endif  // BAQ_WORKER_LAYER_FORMATS_H_

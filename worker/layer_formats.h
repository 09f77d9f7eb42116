// worker/layer_formats.h
//
// The tensors one quantized linear layer contributes to each output format,
// and the loaders that turn the packed and gptq formats back into weights
// (what `baq eval` runs on).
//
// compressed-tensors: see worker/compressed_tensors_format.h.
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
// Stateless functions; thread-safe. LibTorch exceptions are converted. The
// packers run on at::get_num_threads() threads (common/matrix_packing.h);
// the bytes do not depend on how many.
#ifndef BAQ_WORKER_LAYER_FORMATS_H_
#define BAQ_WORKER_LAYER_FORMATS_H_

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/block_protocol.h"
#include "common/safetensors_checkpoint.h"
#include "worker/model/decoder_block.h"

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

// Rebuilds the float32 [out, in] weight of `name` from a gptq checkpoint:
// w[o][i] = scales[g][o] * (code[o][i] - zero[g][o]), g = g_idx[i], computed
// in float32 from the F16 scales. The width comes from the tensor shapes
// (bits = rows(qweight) * 32 / in), so per-module widths need no config.
// zero = (stored + 1) mod 2^bits: the writer's intent (GptqTensors wraps
// zero 0 to 2^bits - 1). GPTQ v1 loaders add 1 without the wrap, so a row
// whose zero point is 0 (all weights >= 0) reads differently there; see
// docs/model-execution.md. InvalidArgument/DataLoss naming the tensor on
// inconsistent shapes or content.
absl::StatusOr<at::Tensor> DequantizeGptq(const SafetensorsCheckpoint& ckpt,
                                          const std::string& name);

// A BlockOptions::linear_weight_loader for a baq output checkpoint of any
// format: per layer, DequantizePacked where "<name>.qcodes" exists,
// DequantizeGptq where "<name>.qweight" exists, DequantizeCompressedTensors
// (worker/compressed_tensors_format.h) where "<name>.weight_packed" exists,
// else "<name>.weight". The
// result is rounded to `checkpoint_dtype` (then float32), as the fake-quant
// checkpoint stores it and as an engine that dequantizes into the model's
// dtype sees it. `ckpt` must outlive the loader.
LinearWeightLoader QuantizedWeightLoader(const SafetensorsCheckpoint& ckpt,
                                         DType checkpoint_dtype);
// Whether `ckpt` holds packed, gptq or compressed-tensors layers (names
// ending in ".qcodes", ".qweight" or ".weight_packed").
bool HasQuantizedLayers(const SafetensorsCheckpoint& ckpt);

// Bytes of a contiguous CPU copy of `t`, as a TensorBytes named `name`.
absl::StatusOr<TensorBytes> ToTensorBytes(std::string name, const at::Tensor& t);

}  // namespace baq::worker

#endif  // BAQ_WORKER_LAYER_FORMATS_H_

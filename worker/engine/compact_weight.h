// worker/engine/compact_weight.h
//
// A quantized layer's weight as the resident data path carries it
// (OwnedLayersOutput::weights, AdvanceShards, the coordinator's replay
// store): one TensorBytes named by the layer, in one of two encodings.
//   dense:   the checkpoint dtype, shape [rows, columns]: the dequantized
//            weight as the next block sees it (LayerQuantizer's stored_weight).
//   compact: U8 [n], an in-memory safetensors image of the layer's packed
//            tensors (layer_formats.h: "<layer>.levels", ".qcodes" and
//            ".row_min"/".row_max" or ".scales"/".zeros"/".g_idx") with
//            metadata {"format": "baq-compact-weight-v1", "dtype": <checkpoint
//            dtype>, "rows", "columns"}. A 3-bit layer is about 5x smaller
//            than the dense float16 one; the owner sends it only after checking
//            that it rebuilds the dense weight bit for bit
//            (LayerQuantizer::Result::packed_weight).
// The coordinator passes both through unchanged; the receiving worker
// decodes either with DecodeLayerWeight.
//
// Stateless functions; thread-safe.
//
// Example (owner, then receiver):
//   BAQ_ASSIGN_OR_RETURN(TensorBytes w, EncodeCompactWeight(name, rows, cols, DType::kF16,
//                                                           packed));
//   BAQ_ASSIGN_OR_RETURN(at::Tensor t, DecodeLayerWeight(std::move(w), rows, cols,
//                                                        DType::kF16, at::kCUDA));
#ifndef BAQ_WORKER_ENGINE_COMPACT_WEIGHT_H_
#define BAQ_WORKER_ENGINE_COMPACT_WEIGHT_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/block_protocol.h"
#include "common/dtype.h"

namespace baq::worker {

inline constexpr char kCompactWeightFormat[] = "baq-compact-weight-v1";

// The compact encoding of `layer` from its packed tensors (names
// "<layer>.<suffix>"). InvalidArgument if a tensor is not the layer's.
absl::StatusOr<TensorBytes> EncodeCompactWeight(const std::string& layer, int64_t rows,
                                                int64_t columns, DType stored,
                                                const std::vector<TensorBytes>& packed);

// Whether `w` uses the compact encoding (U8, rank 1); otherwise it is dense.
bool IsCompactWeight(const TensorBytes& w);

// The float32 [rows, columns] weight on `device` that `w` (either encoding)
// stands for, rounded to `stored` (the checkpoint dtype). InvalidArgument
// naming the layer when its shape, dtype or metadata disagree with the
// arguments; DataLoss when a compact image is corrupt.
absl::StatusOr<at::Tensor> DecodeLayerWeight(TensorBytes w, int64_t rows, int64_t columns,
                                             DType stored, at::Device device);

}  // namespace baq::worker

#endif  // BAQ_WORKER_ENGINE_COMPACT_WEIGHT_H_

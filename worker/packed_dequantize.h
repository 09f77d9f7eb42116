// worker/packed_dequantize.h
//
// The weight a layer of the packed format (baq-packed-v1, layer_formats.h)
// stands for, rebuilt from its tensors: the mixed-radix codes unpacked on the
// CPU, one column per task over LibTorch's intra-op threads, then
// value = scale * (code - zero) on the target device in one vectorized step
// (the grid of each column from its level count and the row range, or the
// grid kind's per-group scales and zeros).
//
// The arithmetic is the one the quantizer used (quant_grid.h: the grid from
// the row range with a true IEEE division on every device, then
// scale * (code - zero) elementwise), so the result equals the quantizer's
// dequantized weight bit for bit on CPU and CUDA alike. The packed loader of
// `baq eval` (DequantizePacked) and the resident data path's compact weights
// (engine/compact_weight.h) both rebuild weights through here.
//
// Stateless functions; thread-safe. LibTorch exceptions become Status.
//
// Example:
//   PackedLayerViews v;  // views into a checkpoint or a compact weight
//   BAQ_ASSIGN_OR_RETURN(at::Tensor w, DequantizePackedViews("model.layers.0.mlp.up_proj", v,
//                                                            at::kCPU));
#ifndef BAQ_WORKER_PACKED_DEQUANTIZE_H_
#define BAQ_WORKER_PACKED_DEQUANTIZE_H_

#include <ATen/ATen.h>

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/safetensors.h"
#include "common/status_macros.h"

namespace baq::worker {

// One packed layer's tensors. BAQ kind: row_min and row_max; grid kind:
// scales, zeros and g_idx (exactly one of the two sets is present).
struct PackedLayerViews {
  TensorView levels;  // I32 [in]
  TensorView qcodes;  // U8 [bytes]
  std::optional<TensorView> row_min, row_max;         // F32 [out]
  std::optional<TensorView> scales, zeros, g_idx;     // F32 [out, groups], I32 [in]
};

// The views of the packed layer `name` in `source`: anything with
// Contains(name) and Get(name) -> StatusOr<TensorView> (a
// SafetensorsCheckpoint, a SafetensorsFile). Get's error (NotFound naming
// the tensor) when one is missing.
template <typename Source>
absl::StatusOr<PackedLayerViews> PackedLayerViewsOf(const Source& source,
                                                    const std::string& name) {
  PackedLayerViews v;
  BAQ_ASSIGN_OR_RETURN(v.levels, source.Get(name + ".levels"));
  BAQ_ASSIGN_OR_RETURN(v.qcodes, source.Get(name + ".qcodes"));
  if (source.Contains(name + ".row_min")) {
    BAQ_ASSIGN_OR_RETURN(v.row_min, source.Get(name + ".row_min"));
    BAQ_ASSIGN_OR_RETURN(v.row_max, source.Get(name + ".row_max"));
  } else {
    BAQ_ASSIGN_OR_RETURN(v.scales, source.Get(name + ".scales"));
    BAQ_ASSIGN_OR_RETURN(v.zeros, source.Get(name + ".zeros"));
    BAQ_ASSIGN_OR_RETURN(v.g_idx, source.Get(name + ".g_idx"));
  }
  return v;
}

// uint8 [out, in] codes of a packed layer on the CPU. DataLoss naming `name`
// when the stream is truncated, has trailing bytes or holds values no packer
// writes; InvalidArgument on a level count outside 1..256.
absl::StatusOr<at::Tensor> UnpackPackedCodes(const std::string& name, const TensorView& qcodes,
                                             const at::Tensor& levels_cpu, int64_t out);

// Column j of the BAQ kind: grid from (row_min, row_max) at levels[j] levels
// (asymmetric). codes: [out, in] (any integer dtype) on the target device;
// row range float32 [out] on the same device; levels_cpu int32 [in].
at::Tensor DequantizeRowRangeCodes(const at::Tensor& codes, const at::Tensor& levels_cpu,
                                   const at::Tensor& row_min, const at::Tensor& row_max);

// The float32 [out, in] weight of the packed layer `name`, on `device`.
// InvalidArgument/DataLoss naming the layer on inconsistent shapes or content.
absl::StatusOr<at::Tensor> DequantizePackedViews(const std::string& name,
                                                 const PackedLayerViews& views,
                                                 at::Device device);

}  // namespace baq::worker

#endif  // BAQ_WORKER_PACKED_DEQUANTIZE_H_

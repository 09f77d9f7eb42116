// worker/compressed_tensors_format.h
//
// The `compressed-tensors` output format: one grid-quantized linear layer in
// the `pack-quantized` layout that the compressed-tensors package (PyPI)
// decompresses and vLLM serves (its WNA16 scheme), and the loader that turns
// it back into weights (what `baq eval` runs on).
//
// Per layer "<name>" (compressed-tensors 0.20 PackedQuantizationCompressor):
//   "<name>.weight_packed"     I32 [out, ceil(in*bits/32)]: row o is the
//       fixed-width bit stream of the row's codes (common/code_packing.h (a):
//       code i at stream bits [bits*i, bits*(i+1)), LSB first), each code
//       stored unsigned, i.e. the signed value q = code - 2^(bits-1) plus
//       2^(bits-1), as pack_to_int32 stores it;
//   "<name>.weight_scale"      F32 [out, groups] (groups = 1 per channel);
//   "<name>.weight_zero_point" I32 [ceil(out*bits/32), groups], asymmetric
//       grids only: column g is the bit stream of the `out` zero points of
//       group g, packed along the output dim (pack_to_int32 packed_dim=0),
//       stored unsigned like the codes (zero - 2^(bits-1) signed);
//   "<name>.weight_shape"      I64 [2] = {out, in}.
// The package dequantizes w = (q - zp) * scale in the scale's dtype; with
// float32 scales that is bit for bit our scale * (code - zero), so the
// decompressed weight equals the fake-quant weight (both then rounded to
// the checkpoint dtype). Groups must be contiguous (g_idx[i] = i / group):
// compressed-tensors 0.20 has no g_idx (act_order needs --static_groups).
//
// Stateless functions; thread-safe. LibTorch exceptions are converted. The
// packers run on at::get_num_threads() threads (common/matrix_packing.h);
// the bytes do not depend on how many.
#ifndef BAQ_WORKER_COMPRESSED_TENSORS_FORMAT_H_
#define BAQ_WORKER_COMPRESSED_TENSORS_FORMAT_H_

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/block_protocol.h"
#include "common/safetensors_checkpoint.h"
#include "worker/layer_formats.h"

namespace baq::worker {

// REQUIRES (InvalidArgument otherwise, naming the layer): grid kind with
// 2^bits levels, 1 <= bits <= 8; contiguous groups dividing `in` (or one
// group); integral zero points in [0, 2^bits); with `symmetric`, every zero
// point 2^(bits-1) (then no weight_zero_point is written).
absl::StatusOr<std::vector<TensorBytes>> CompressedTensorsTensors(const QuantizedLayer& layer,
                                                                  int bits, bool symmetric);

// Rebuilds the float32 [out, in] weight of `name` from a compressed-tensors
// checkpoint: w = scale[o][i / group] * (code - zero). The width is the one
// that makes the packed row length ceil(in*bits/32); a checkpoint without
// "<name>.weight_zero_point" is symmetric (zero 2^(bits-1)).
// InvalidArgument/DataLoss naming the tensor on inconsistent content.
absl::StatusOr<at::Tensor> DequantizeCompressedTensors(const SafetensorsCheckpoint& ckpt,
                                                       const std::string& name);

}  // namespace baq::worker

#endif  // BAQ_WORKER_COMPRESSED_TENSORS_FORMAT_H_

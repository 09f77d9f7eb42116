// common/block_protocol.h
//
// The plain data exchanged between the coordinator and a worker for one
// transformer block (the service layer maps these 1:1 onto baq.v1 messages;
// local mode passes them in process). Small vectors only, except
// TensorBytes, which the gRPC layer streams in chunks.
//
// Protocol for one block (see docs/architecture.md):
//   1. worker: Measure(block)   -> BlockMeasurement (per-column pass-1 losses)
//   2. coordinator: choose levels from all measurements it has (global budget)
//   3. worker: Quantize(block, levels) -> BlockOutput (output tensors + report)
// Value types; thread-compatible.
#ifndef BAQ_COMMON_BLOCK_PROTOCOL_H_
#define BAQ_COMMON_BLOCK_PROTOCOL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/dtype.h"

namespace baq {

// A named tensor as little-endian row-major bytes.
struct TensorBytes {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::string bytes;
};

// Pass-1 result of one linear layer: loss_j for each input column j
// (sum over rows of (w - q)^2 / [Hinv]_jj^2 / 2 at the reference width).
struct LayerMeasurement {
  std::string name;  // Full tensor prefix, e.g. "model.layers.3.mlp.up_proj".
  int64_t rows = 0;  // out_features: elements per column.
  std::vector<double> column_loss;
  // Allocation module: tr((W - Q) H (W - Q)^T) of GPTQ at each of the job's
  // candidate widths (QuantizationConfig::candidate_bits, same order);
  // empty otherwise.
  std::vector<double> candidate_loss;
};

struct BlockMeasurement {
  int64_t block = 0;
  std::vector<LayerMeasurement> layers;
  int64_t calibration_tokens = 0;
};

// Levels per input column of one layer (BAQ); empty for uniform methods.
struct LayerAllocation {
  std::string name;
  std::vector<int32_t> levels;
  // Integer width of this layer in the `gptq` output format (the per-column
  // allocation projected to one width per module); 0 when not requested.
  // Allocation module: the module's width (GPTQ at it is the quantizer),
  // always set.
  int32_t gptq_bits = 0;
};

struct LayerReport {
  std::string name;
  int64_t rows = 0;
  int64_t columns = 0;
  double bits_sum = 0;    // Sum over weight elements of log2(levels).
  double proxy_loss = 0;  // tr((W - Q) H (W - Q)^T).
  double seconds = 0;
  // The `gptq` format's projection: its width and proxy loss (0 if absent).
  int32_t gptq_bits = 0;
  double gptq_proxy_loss = 0;
  // MoE expert layers (worker/model/moe_mlp.h): calibration tokens routed to
  // the expert, and tokens the starved-expert floor rule added to its
  // Hessian; -1 for other layers or when unknown (e.g. a reused measurement).
  int64_t expert_tokens = -1;
  int64_t expert_top_up_tokens = -1;
};

struct BlockOutput {
  int64_t block = 0;
  // Output tensors of this block in every requested format, named as they
  // appear in the published checkpoint ("<format>/<tensor name>" is not used:
  // each tensor carries a `format` index into JobConfig::formats).
  std::vector<TensorBytes> tensors;
  std::vector<int32_t> tensor_format;  // Parallel to `tensors`.
  std::vector<LayerReport> layers;
};

// The fp64 Hessian partial sum of one layer input (an "input group": the
// layers of a block that read the same activations, e.g. q/k/v) over the
// calibration windows of one shard (JobConfig::calibration_shards), or the
// merged sum over all shards. `bytes` is the "BAQH" format of the
// unnormalized fp64 sum and its token count (common/hessian_format.h, the one
// implementation; docs/wire-formats.md).
struct HessianPartial {
  int32_t shard = 0;        // -1 for a merged sum.
  int32_t input_group = 0;  // Index of the group in the block.
  std::string layer;        // The group's first layer, for messages.
  std::string bytes;
};

// One linear layer of a block, for placing its work on an owner
// (LayerOwnership::BlockLayers).
struct LayerShape {
  std::string name;         // Full tensor prefix, e.g. "model.layers.3.mlp.up_proj".
  int32_t input_group = 0;  // The layers of a group read the same inputs (one Hessian).
  int64_t rows = 0;         // out_features.
  int64_t columns = 0;      // in_features: the Hessian is columns x columns.
};

// What an owner returns for the layers it quantized
// (LayerOwnership::QuantizeLayers).
struct OwnedLayersOutput {
  // The layers' reports (output.layers) and output tensors, layer by layer
  // in the order quantized; tensors_per_layer[i] tensors belong to
  // output.layers[i], so the coordinator can interleave owners' pieces in
  // the block's layer order.
  BlockOutput output;
  std::vector<int32_t> tensors_per_layer;
  // Parallel to output.layers: the quantized weight [rows, columns] as the
  // next block must see it (the dequantized weight in the checkpoint dtype),
  // named by the layer.
  std::vector<TensorBytes> weights;
};

}  // namespace baq

#endif  // BAQ_COMMON_BLOCK_PROTOCOL_H_

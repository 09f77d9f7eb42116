// worker/engine/block_compute.h
//
// The numerics of Measure and Quantize for one block on a DeviceGroup:
// loading the block on every rank, the calibration forward that accumulates
// each input group's Hessian (partial c mod P for chunk c, summed in partial
// order), BAQ pass 1 (per-column losses) and the quantization of every layer
// (layer i on rank i % world, where its Hessian lives). Stateless functions
// over the engine's pieces; they run on the engine's caller thread.
#ifndef BAQ_WORKER_ENGINE_BLOCK_COMPUTE_H_
#define BAQ_WORKER_ENGINE_BLOCK_COMPUTE_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "common/block_protocol.h"
#include "common/dtype.h"
#include "common/job_config.h"
#include "worker/engine/device_group.h"
#include "worker/engine/engine_job.h"

namespace baq::worker {

// The calibration forward's dtype for `requested` (JobConfig::forward_dtype)
// on `device` for a checkpoint stored as `checkpoint`: kAuto is the
// checkpoint's dtype on CUDA and float32 on CPU (half-precision matmuls are
// slow there, and the CPU reference numbers are float32).
at::ScalarType ResolveForwardDtype(ForwardDtype requested, DType checkpoint,
                                   const at::Device& device);

// Block `block`'s weights on every rank's device (replicas[r] on rank r).
absl::StatusOr<std::vector<std::unique_ptr<DecoderBlock>>> LoadReplicas(DeviceGroup& group,
                                                                        const EngineJob& job,
                                                                        int64_t block);

// Runs the unquantized block over `x`, accumulating each input group's
// Hessian in job.num_partials partials (reduced over the ranks), and
// returns the block's state: each layer's finalized Hessian on rank
// i % world. With `next` defined, the block's outputs are written into it
// (parallel mode: the inputs of block + 1). A non-null `preloaded` is the
// block already loaded on a one-device group (BlockPrefetcher).
absl::StatusOr<BlockState> AccumulateBlock(DeviceGroup& group, const EngineJob& job,
                                           int64_t block, const at::Tensor& x, at::Tensor next,
                                           const CancelCheck& check,
                                           std::unique_ptr<DecoderBlock> preloaded = nullptr);

// A subset of a block's layers (LayerOwnership): indices into
// linear_layers(), distinct and increasing. Null: every layer.
using LayerSubset = const std::vector<int32_t>*;

// InvalidArgument unless `layers` are distinct, increasing indices below
// `num_layers`.
absl::Status CheckLayerSubset(int64_t block, const std::vector<int32_t>& layers,
                              size_t num_layers);

// BAQ pass 1 of the layers of a measured block (every layer, or `layers`)
// at the job's target (empty losses for GPTQ/RTN), or with allocation
// module GPTQ's proxy loss at every candidate width: layer i on rank
// i % world. The result lists those layers in order. FailedPrecondition
// naming the layer if its Hessian is undefined (not imported here).
absl::StatusOr<BlockMeasurement> MeasureLosses(DeviceGroup& group, const EngineJob& job,
                                               int64_t block, const BlockState& state,
                                               const CancelCheck& check,
                                               LayerSubset layers = nullptr);

// What QuantizeBlock reports beyond the BlockOutput for a layer subset
// (LayerOwnership::QuantizeLayers), parallel to the quantized layers.
struct QuantizedWeights {
  // LayerQuantizer::Result::stored_weight: float32 values already rounded to
  // the checkpoint dtype.
  std::vector<at::Tensor> stored_weights;
  // Per layer, LayerQuantizer::Result::packed_weight: the packed tensors that
  // rebuild stored_weights bit for bit, or empty (then only the dense one).
  std::vector<std::vector<TensorBytes>> packed_weights;
  std::vector<int32_t> tensors_per_layer;
};

// Quantizes the layers of `state` (every layer, or `layers`) with
// `allocation` (one entry per quantized layer, in order; InvalidArgument
// otherwise) and returns their output tensors. In sequential mode the
// replicas' weights become the dequantized ones, rounded to the checkpoint
// dtype (what the next block must see), and state.quantized marks them.
// FailedPrecondition naming the layer if its Hessian is undefined or it was
// quantized already. With `weights`, fills it (see QuantizedWeights).
absl::StatusOr<BlockOutput> QuantizeBlock(DeviceGroup& group, const EngineJob& job, int64_t block,
                                          BlockState& state,
                                          const std::vector<LayerAllocation>& allocation,
                                          const CancelCheck& check, LayerSubset layers = nullptr,
                                          QuantizedWeights* weights = nullptr);

}  // namespace baq::worker

#endif  // BAQ_WORKER_ENGINE_BLOCK_COMPUTE_H_

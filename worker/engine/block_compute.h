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
#include "worker/engine/device_group.h"
#include "worker/engine/engine_job.h"

namespace baq::worker {

// Block `block`'s weights on every rank's device (replicas[r] on rank r).
absl::StatusOr<std::vector<std::unique_ptr<DecoderBlock>>> LoadReplicas(DeviceGroup& group,
                                                                        const EngineJob& job,
                                                                        int64_t block);

// Runs the unquantized block over `x`, accumulating each input group's
// Hessian in job.num_partials partials (reduced over the ranks), and
// returns the block's state: each layer's finalized Hessian on rank
// i % world. With `next` defined, the block's outputs are written into it
// (parallel mode: the inputs of block + 1).
absl::StatusOr<BlockState> AccumulateBlock(DeviceGroup& group, const EngineJob& job,
                                           int64_t block, const at::Tensor& x, at::Tensor next,
                                           const CancelCheck& check);

// BAQ pass 1 of every layer of a measured block at the job's target (empty
// losses for GPTQ/RTN), or with allocation module GPTQ's proxy loss at every
// candidate width: layer i on rank i % world.
absl::StatusOr<BlockMeasurement> MeasureLosses(DeviceGroup& group, const EngineJob& job,
                                               int64_t block, const BlockState& state,
                                               const CancelCheck& check);

// Quantizes every layer of `state` with `allocation` (one entry per layer,
// InvalidArgument otherwise) and returns the block's output tensors. In
// sequential mode the replicas' weights become the dequantized ones, rounded
// to the checkpoint dtype (what the next block must see).
absl::StatusOr<BlockOutput> QuantizeBlock(DeviceGroup& group, const EngineJob& job, int64_t block,
                                          BlockState& state,
                                          const std::vector<LayerAllocation>& allocation,
                                          const CancelCheck& check);

}  // namespace baq::worker

#endif  // BAQ_WORKER_ENGINE_BLOCK_COMPUTE_H_

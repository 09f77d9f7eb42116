// worker/torch_block_engine.h
//
// The LibTorch BlockEngine: streams a checkpoint block by block on one
// device, accumulates Hessians, runs BAQ/GPTQ/RTN and produces the block's
// output tensors in every requested format. See common/block_engine.h for the
// protocol. Memory: one block's weights and Hessians plus the calibration
// activations of one block boundary (two in sequential mode while a block
// runs), which can be spilled to disk (EngineOptions::activation_spill).
//
// Several devices (one engine spanning e.g. two GPUs of a worker): every
// block is loaded on each device; calibration chunk c (kWindowsPerForward
// windows) runs its forward on device c mod D and adds into that device's
// Hessian accumulators; the partial sums are all-reduced in rank order
// (AllReduceHessian, kRankOrdered; NCCL between GPUs, the in-process group
// between CPU "devices" in tests) and layer i of a block is measured and
// quantized on device i mod D. Activations between blocks stay on the first
// device. The bits depend on the number of Hessian partials, never on how
// many devices hold them: see EngineOptions::hessian_partials.
//
// Calibration shards (JobConfig::calibration_shards = S > 1, sequential
// mode; single-device engines whose hessian_partials is 1 or S): Start()
// splits the embedded windows into S shards (chunk c to shard c mod S, back
// to back) and the engine keeps inputs per shard. AccumulateHessians runs
// the unquantized block over the shards it is given (one fp64 partial per
// shard and input group), ImportHessians takes the merged sums, Quantize
// forwards every shard the engine holds through the quantized block; a plain
// Measure() with all S shards present merges them itself in shard order, the
// same additions as the coordinator's merge (coordinator/calibration_shards.h).
//
// Thread-compatible: one thread (the device's executor) calls all methods;
// with several devices the engine runs each extra device's share on a
// persistent thread of that device (worker/engine/device_group.h).
//
// The pieces (worker/engine/): DeviceGroup (devices, ranks, their threads,
// the chunked forward, the Hessian reduction), BlockActivations (inputs per
// block or shard, spill, export/import), MeasurementCache (measured blocks,
// SetTarget, the measurement dir), ShardedHessians (calibration shards) and
// block_compute (the block numerics); worker/torch_block_engine.cc is the
// facade that implements BlockEngine and its capabilities over them.
#ifndef BAQ_WORKER_TORCH_BLOCK_ENGINE_H_
#define BAQ_WORKER_TORCH_BLOCK_ENGINE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/block_engine.h"
#include "worker/calibration_inputs.h"

namespace baq::worker {

struct EngineOptions {
  // "cpu", "cuda" or "cuda:N"; or several devices joined by '+' or ','
  // ("cuda:0+cuda:1"; "cpu+cpu" gives two CPU ranks, for tests).
  std::string device = "cpu";
  // Intra-op threads for CPU LibTorch work; 0 leaves LibTorch's default.
  int num_threads = 0;
  // Calibration activations of a block boundary larger than
  // activation_spill.memory_limit_bytes live in a file in
  // activation_spill.spill_dir instead of memory (calibration_inputs.h);
  // results are byte-identical either way. Default: always in memory.
  ActivationSpillOptions activation_spill;
  // Partial Hessian sums per layer input, P: calibration chunk c goes into
  // partial c mod P and the partials are summed in order p_0 + p_1 + ...
  // A job's output bits depend on P, not on the devices: one device with
  // P = 2 is byte-identical to two devices (same GPU model). 0: one per
  // device. With several devices P must equal the device count.
  int hessian_partials = 0;
  // LayerOwnership::CheckpointShards: false writes the files before it
  // returns (durable then); true copies the shards to host memory and writes
  // them on a background thread, so the next block starts at once: a batch
  // is durable once the next CheckpointShards returns OK (which reports an
  // earlier batch's failure). Costs one batch of host memory while writing.
  bool async_shard_checkpoints = false;
};

// InvalidArgument for an unparsable device list, mixed CPU and CUDA devices,
// duplicate CUDA devices or a hessian_partials that does not fit them;
// Unavailable for a CUDA device in a build or on a machine without CUDA;
// the communicator factory's errors for several GPUs (e.g. no NCCL).
absl::StatusOr<std::unique_ptr<BlockEngine>> MakeTorchBlockEngine(const EngineOptions& options);

}  // namespace baq::worker

#endif  // BAQ_WORKER_TORCH_BLOCK_ENGINE_H_

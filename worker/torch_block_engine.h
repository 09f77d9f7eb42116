// worker/torch_block_engine.h
//
// The LibTorch BlockEngine: streams a checkpoint block by block on one
// device, accumulates Hessians, runs BAQ/GPTQ/RTN and produces the block's
// output tensors in every requested format. See common/block_engine.h for the
// protocol. Memory: one block's weights and Hessians plus the calibration
// activations of one block boundary.
//
// Thread-compatible: one thread (the device's executor) calls all methods.
#ifndef BAQ_WORKER_TORCH_BLOCK_ENGINE_H_
#define BAQ_WORKER_TORCH_BLOCK_ENGINE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/block_engine.h"

namespace baq::worker {

struct EngineOptions {
  // "cpu" or "cuda:N".
  std::string device = "cpu";
  // Intra-op threads for CPU LibTorch work; 0 leaves LibTorch's default.
  int num_threads = 0;
};

// InvalidArgument for an unparsable device; Unavailable for a CUDA device in
// a build or on a machine without CUDA.
absl::StatusOr<std::unique_ptr<BlockEngine>> MakeTorchBlockEngine(const EngineOptions& options);

}  // namespace baq::worker

#endif  // BAQ_WORKER_TORCH_BLOCK_ENGINE_H_

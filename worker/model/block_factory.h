// worker/model/block_factory.h
//
// LoadDecoderBlock: picks the DecoderBlock implementation for a model family
// (OPT -> opt_block, LLaMA family -> llama_block) and loads one block's
// parameters from the checkpoint. This is the only entry point callers need
// for streaming execution: load block i, run it over all activations, drop
// it, load block i+1.
//
// Stateless; thread-safe (the checkpoint is).
//
// Example:
//   for (int64_t i = 0; i < config.num_layers; ++i) {
//     BAQ_ASSIGN_OR_RETURN(auto block, LoadDecoderBlock(config, *ckpt, i, options));
//     BAQ_ASSIGN_OR_RETURN(hidden, block->Forward(hidden));
//   }
#ifndef BAQ_WORKER_MODEL_BLOCK_FACTORY_H_
#define BAQ_WORKER_MODEL_BLOCK_FACTORY_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "common/safetensors_checkpoint.h"
#include "worker/model/decoder_block.h"

namespace baq::worker {

// InvalidArgument for a block index outside [0, num_layers) and for
// checkpoint/config mismatches (missing tensor, wrong shape, NaN/Inf; the
// message names the tensor); Unimplemented for a family without a block
// implementation.
absl::StatusOr<std::unique_ptr<DecoderBlock>> LoadDecoderBlock(const ModelConfig& config,
                                                               const SafetensorsCheckpoint& ckpt,
                                                               int64_t block,
                                                               const BlockOptions& options);

}  // namespace baq::worker

#endif  // BAQ_WORKER_MODEL_BLOCK_FACTORY_H_

// worker/model/opt_block.h
//
// The OPT decoder block (transformers' OPTDecoderLayer): LayerNorm before
// (do_layer_norm_before, all OPT sizes but 350m) or after each residual
// branch, multi-head attention with q scaled by head_dim^-0.5, ReLU FFN
// (fc1, fc2), biases everywhere (enable_bias). Linear layers:
// self_attn.{q,k,v,out}_proj, fc1, fc2.
//
// Use LoadDecoderBlock() (block_factory.h) rather than this directly.
// Thread-compatible, as DecoderBlock.
#ifndef BAQ_WORKER_MODEL_OPT_BLOCK_H_
#define BAQ_WORKER_MODEL_OPT_BLOCK_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "common/safetensors_checkpoint.h"
#include "worker/model/decoder_block.h"

namespace baq::worker {

// REQUIRES: config.family == ModelFamily::kOpt, 0 <= block < num_layers.
absl::StatusOr<std::unique_ptr<DecoderBlock>> LoadOptBlock(const ModelConfig& config,
                                                           const SafetensorsCheckpoint& ckpt,
                                                           int64_t block,
                                                           const BlockOptions& options);

}  // namespace baq::worker

#endif  // BAQ_WORKER_MODEL_OPT_BLOCK_H_

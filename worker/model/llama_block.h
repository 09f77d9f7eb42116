// worker/model/llama_block.h
//
// The LLaMA-family decoder block (transformers' LlamaDecoderLayer; also
// Mistral and Qwen2): RMSNorm (rms_norm_eps) before attention and MLP, RoPE
// (rope_theta, the rotate_half convention of transformers), grouped-query
// attention (num_key_value_heads), SiLU-gated MLP, optional q/k/v biases
// (Qwen2), o_proj and MLP biases when the config says so. Linear layers:
// self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj.
//
// Sliding-window attention (Mistral; Qwen2 with use_sliding_window) is
// applied. RoPE scaling variants (rope_type llama3/yarn/dynamic/...) are
// Unimplemented.
//
// Use LoadDecoderBlock() (block_factory.h) rather than this directly.
// Thread-compatible, as DecoderBlock.
#ifndef BAQ_WORKER_MODEL_LLAMA_BLOCK_H_
#define BAQ_WORKER_MODEL_LLAMA_BLOCK_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "common/safetensors_checkpoint.h"
#include "worker/model/decoder_block.h"

namespace baq::worker {

// REQUIRES: config.family == ModelFamily::kLlama, 0 <= block < num_layers.
absl::StatusOr<std::unique_ptr<DecoderBlock>> LoadLlamaBlock(const ModelConfig& config,
                                                             const SafetensorsCheckpoint& ckpt,
                                                             int64_t block,
                                                             const BlockOptions& options);

}  // namespace baq::worker

#endif  // BAQ_WORKER_MODEL_LLAMA_BLOCK_H_

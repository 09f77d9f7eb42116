// worker/model/llama_block.h
//
// The LLaMA-family decoder block (transformers' LlamaDecoderLayer; also
// Mistral, Qwen2, Qwen3, Phi-3 and the MoE families Mixtral, Qwen2-MoE,
// Qwen3-MoE): RMSNorm (rms_norm_eps) before attention and MLP, RoPE of every
// type in worker/model/rope.h (partial rotary for Phi-3), grouped-query
// attention (num_key_value_heads) with an explicit head_dim (Mistral-Nemo,
// Qwen3), SiLU-gated MLP, optional q/k/v biases (Qwen2), o_proj and MLP
// biases when the config says so. Linear layers: self_attn.{q,k,v,o}_proj,
// mlp.{gate,up,down}_proj; Phi-3: self_attn.{qkv,o}_proj,
// mlp.{gate_up,down}_proj (fused, quantized as such); MoE blocks: the
// experts' projections (worker/model/moe_mlp.h).
//
// Qwen3: RMSNorm over head_dim on q and k before RoPE. Sliding-window
// attention per ModelConfig::IsSlidingLayer (Mistral, Phi-3; Qwen with
// use_sliding_window from max_window_layers on).
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

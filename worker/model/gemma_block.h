// worker/model/gemma_block.h
//
// The Gemma-2 / Gemma-3 (text) decoder block (transformers'
// Gemma2DecoderLayer, Gemma3DecoderLayer): Gemma RMSNorm (x * rsqrt(mean x^2
// + eps) * (1 + w), all in float32) before and after both the attention and
// the MLP (input_layernorm, post_attention_layernorm,
// pre_feedforward_layernorm, post_feedforward_layernorm); grouped-query
// attention with an explicit head_dim, scores scaled by
// query_pre_attn_scalar^-0.5 and soft-capped by
// attn_logit_softcapping * tanh(s / attn_logit_softcapping) (Gemma-2);
// sliding-window attention on the layers ModelConfig::IsSlidingLayer names
// (alternating); GeGLU MLP down(gelu_tanh(gate(x)) * up(x)). Gemma-3 adds
// Gemma RMSNorm over head_dim on q and k before RoPE, and its sliding layers
// use their own RoPE (ModelConfig::rope_local). Linear layers:
// self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj.
//
// The embedding scale sqrt(hidden_size) and the final logit soft-cap live in
// model_head.cc.
//
// Use LoadDecoderBlock() (block_factory.h) rather than this directly.
// Thread-compatible, as DecoderBlock.
#ifndef BAQ_WORKER_MODEL_GEMMA_BLOCK_H_
#define BAQ_WORKER_MODEL_GEMMA_BLOCK_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "common/safetensors_checkpoint.h"
#include "worker/model/decoder_block.h"

namespace baq::worker {

// REQUIRES: config.family == ModelFamily::kGemma, 0 <= block < num_layers.
absl::StatusOr<std::unique_ptr<DecoderBlock>> LoadGemmaBlock(const ModelConfig& config,
                                                             const SafetensorsCheckpoint& ckpt,
                                                             int64_t block,
                                                             const BlockOptions& options);

}  // namespace baq::worker

#endif  // BAQ_WORKER_MODEL_GEMMA_BLOCK_H_

// worker/model/model_head.h
//
// The parts of a decoder-only LM outside its blocks, each loaded on its own
// so streaming execution holds at most one of them (or one block) at a time:
//  * TokenEmbedding: token ids -> the input of block 0 (token embeddings;
//    OPT adds learned positions, row = position + 2 as transformers'
//    OPTLearnedPositionalEmbedding; Gemma multiplies by sqrt(hidden_size);
//    opt-350m first maps the [word_embed_proj_dim] embeddings to hidden_size
//    with project_in).
//  * OutputHead: final norm (OPT final_layer_norm / LLaMA model.norm / Gemma
//    (1 + w) RMSNorm; none for post-LayerNorm OPT), opt-350m's project_out
//    back to word_embed_proj_dim, and the LM head (lm_head.weight, or the
//    token embeddings when tie_word_embeddings; Gemma-2's final logit
//    soft-cap), plus a chunked per-token negative log-likelihood that never
//    materializes more than [chunk_rows, vocab] logits.
// project_in/project_out live here, in the embedding and head stages, not in
// a block: like the embeddings and the LM head they are not quantized
// (docs/model-support.md, "OPT").
// Parameters are converted at load to BlockOptions::compute_dtype on
// BlockOptions::device; load errors name the tensor (InvalidArgument).
//
// Thread-compatible: const methods may run concurrently on one device.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(auto embed, TokenEmbedding::Load(config, *ckpt, options));
//   BAQ_ASSIGN_OR_RETURN(at::Tensor hidden, embed->Embed(ids));  // [b, s, hidden]
//   ... blocks ...
//   BAQ_ASSIGN_OR_RETURN(auto head, OutputHead::Load(config, *ckpt, options));
//   BAQ_ASSIGN_OR_RETURN(at::Tensor logits, head->Logits(hidden));
#ifndef BAQ_WORKER_MODEL_MODEL_HEAD_H_
#define BAQ_WORKER_MODEL_MODEL_HEAD_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "common/safetensors_checkpoint.h"
#include "worker/model/decoder_block.h"

namespace baq::worker {

class TokenEmbedding {
 public:
  static absl::StatusOr<std::unique_ptr<TokenEmbedding>> Load(const ModelConfig& config,
                                                              const SafetensorsCheckpoint& ckpt,
                                                              const BlockOptions& options);

  // input_ids: [batch, seq] integer tensor (any device) of ids in
  // [0, vocab_size), positions 0..seq-1. Returns [batch, seq, hidden] in the
  // compute dtype. InvalidArgument for other shapes, out-of-range ids, or
  // (OPT) seq > max_position_embeddings.
  absl::StatusOr<at::Tensor> Embed(const at::Tensor& input_ids) const;

 private:
  TokenEmbedding(const ModelConfig& config, const BlockOptions& options)
      : config_(config), options_(options) {}

  const ModelConfig config_;
  const BlockOptions options_;
  at::Tensor tokens_;      // [vocab, EmbeddingWidth()]
  at::Tensor project_in_;  // OPT with projections: [hidden, proj]; else undefined.
  at::Tensor positions_;   // OPT: [max_positions + 2, hidden]; else undefined.
};

class OutputHead {
 public:
  static absl::StatusOr<std::unique_ptr<OutputHead>> Load(const ModelConfig& config,
                                                          const SafetensorsCheckpoint& ckpt,
                                                          const BlockOptions& options);

  // The LM head's input from the last block's output: the final norm (if
  // the model has one), then project_out (if it has projections):
  // [..., hidden] -> [..., EmbeddingWidth()], compute dtype. This is
  // transformers' last hidden state.
  absl::StatusOr<at::Tensor> Normalize(const at::Tensor& hidden) const;

  // Normalize() then the LM head: [..., hidden] -> [..., vocab], compute dtype.
  absl::StatusOr<at::Tensor> Logits(const at::Tensor& hidden) const;

  // -log softmax(lm_head(normalized))[target] for each row, in float32:
  // normalized [rows, EmbeddingWidth()] (Normalize()'s output), targets [rows] ids in
  // [0, vocab). Logits and log-softmax are computed `chunk_rows` rows at a
  // time. Returns [rows] float32 on the head's device.
  absl::StatusOr<at::Tensor> TokenNll(const at::Tensor& normalized, const at::Tensor& targets,
                                      int64_t chunk_rows = 512) const;

 private:
  OutputHead(const ModelConfig& config, const BlockOptions& options)
      : config_(config), options_(options) {}
  // cap * tanh(logits / cap) with final_logit_softcapping (Gemma-2); else as is.
  at::Tensor SoftCap(const at::Tensor& logits) const;

  const ModelConfig config_;
  const BlockOptions options_;
  at::Tensor norm_weight_;  // [hidden]; undefined without a final norm.
  at::Tensor norm_bias_;    // OPT LayerNorm bias [hidden]; undefined for RMSNorm.
  at::Tensor project_out_;  // OPT with projections: [proj, hidden]; else undefined.
  at::Tensor lm_head_;      // [vocab, EmbeddingWidth()]
};

}  // namespace baq::worker

#endif  // BAQ_WORKER_MODEL_MODEL_HEAD_H_

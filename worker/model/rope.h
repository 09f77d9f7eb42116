// worker/model/rope.h
//
// RotaryEmbedding: the rotary position embedding of one attention layer, as
// transformers 5.x computes it (modeling_rope_utils.py ROPE_INIT_FUNCTIONS,
// the models' *RotaryEmbedding.forward and apply_rotary_pos_emb), for every
// rope type common/rope_parameters.h parses: default, linear, dynamic (NTK),
// yarn, longrope and llama3.
//
// inv_freq is computed with the same float32 operations as transformers (so
// the tables agree to float32 rounding); cos/sin are
// cos(position * inv_freq) * attention_factor in float32, cast to the compute
// dtype, for positions 0..seq-1. Two types depend on the sequence length, as
// transformers' dynamic_rope_update does at each forward: dynamic NTK
// recomputes the base when seq > max_position_embeddings; longrope uses its
// long factors when seq > original_max_position_embeddings.
//
// Immutable after construction; thread-safe. The tensor functions may throw
// c10::Error (callers run them inside CallTorch).
//
// Example:
//   RotaryEmbedding rope(config.rope);
//   auto [cos, sin] = rope.Tables(seq, device, dtype);      // [seq, rotary_dim]
//   q = RotaryEmbedding::Apply(q, cos, sin);               // [b, heads, seq, head_dim]
#ifndef BAQ_WORKER_MODEL_ROPE_H_
#define BAQ_WORKER_MODEL_ROPE_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <utility>

#include "common/rope_parameters.h"

namespace baq::worker {

class RotaryEmbedding {
 public:
  // REQUIRES: `params` came from ParseRopeParameters (valid type, even
  // rotary_dim, factors of length rotary_dim / 2).
  explicit RotaryEmbedding(RopeParameters params) : params_(std::move(params)) {}

  // inv_freq [rotary_dim / 2], float32 on `device`, for a forward over
  // positions 0..seq_len-1.
  at::Tensor InvFreq(int64_t seq_len, at::Device device) const;

  // The factor cos and sin are multiplied by (yarn, longrope; else 1).
  double attention_factor() const { return params_.attention_factor; }
  const RopeParameters& params() const { return params_; }

  // cos, sin [seq, rotary_dim] in `dtype` on `device`.
  std::pair<at::Tensor, at::Tensor> Tables(int64_t seq, at::Device device,
                                           at::ScalarType dtype) const;

  // x * cos + rotate_half(x) * sin on the first cos.size(-1) dims of x
  // ([..., seq, head_dim]); the rest pass through (partial rotary, Phi-3).
  // rotate_half(x) = cat(-x2, x1).
  static at::Tensor Apply(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

 private:
  const RopeParameters params_;
};

}  // namespace baq::worker

#endif  // BAQ_WORKER_MODEL_ROPE_H_

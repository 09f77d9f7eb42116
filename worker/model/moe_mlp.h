// worker/model/moe_mlp.h
//
// MoeMlp: the sparse mixture-of-experts MLP of Mixtral, Qwen2-MoE and
// Qwen3-MoE, as transformers computes it (MixtralSparseMoeBlock,
// Qwen2MoeSparseMoeBlock, Qwen3MoeSparseMoeBlock):
//   logits = x Wr^T (compute dtype); p = softmax(float32(logits));
//   (w, e) = top-k(p); if norm_topk_prob (Mixtral: always) w /= sum(w);
//   out = sum_k w_k * down_e(silu(gate_e(x)) * up_e(x))       (per token)
//       + sigmoid(x Ws^T) * shared_expert(x)                  (Qwen2-MoE)
// The router and the shared-expert gate are parameters, not quantizable
// layers: they stay in the checkpoint's precision.
//
// Calibration. Each expert's layers are applied (and so reported to the input
// observer) on the tokens routed to it only, so each expert's Hessian comes
// from its own tokens. An expert that receives fewer than
// `min_calibration_tokens` tokens in one Forward() while an observer is set is
// *topped up*: its layers also run on the non-routed tokens to which the
// router gives it the highest probability, up to that floor (or all tokens of
// the batch). Those extra rows feed the observer only; the block's output uses
// routed tokens alone, so the forward is unchanged. This is the "floor" rule
// of issue 18: a starved expert never has an empty Hessian (GPTQ would divide
// by zero and produce NaN scales), and its calibration tokens are the ones
// its router weights are closest to. Per expert, routed and top-up token
// counts are accumulated in MoeTokenCounts for the quantization report.
//
// Thread-compatible, as DecoderBlock (counts are only written while an
// observer is set, i.e. on the single calibrating thread).
#ifndef BAQ_WORKER_MODEL_MOE_MLP_H_
#define BAQ_WORKER_MODEL_MOE_MLP_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace baq::worker {

// Tokens each expert of one MoE block saw while calibrating (an observer was
// set), summed over Forward() calls.
struct MoeTokenCounts {
  std::vector<int64_t> routed;  // [num_experts]: tokens routed to the expert.
  std::vector<int64_t> top_up;  // [num_experts]: extra tokens of the floor rule.
};

struct MoeLayout {
  int64_t num_experts = 0;
  int64_t top_k = 0;
  bool norm_topk_prob = false;
  // Indices of the experts' layers in the block's linear layers.
  std::vector<int> gate, up, down;
  // Shared expert (Qwen2-MoE); -1 = none.
  int shared_gate = -1, shared_up = -1, shared_down = -1;
  // Floor of calibration tokens per expert and Forward() (see above).
  int64_t min_calibration_tokens = 0;
};

// The expert index of a layer's short name ("block_sparse_moe.experts.3.w1",
// "mlp.experts.12.down_proj"); -1 for other layers (the shared expert too).
int ExpertIndexOf(absl::string_view short_name);

// Applies block layer `layer` to x ([rows, in]), reporting x to the observer.
using ApplyLayerFn = std::function<absl::StatusOr<at::Tensor>(int layer, const at::Tensor& x)>;

// x: [tokens, hidden] (compute dtype); router [num_experts, hidden];
// shared_expert_gate [1, hidden] or undefined. `calibrating`: an observer is
// set (apply the floor rule and count tokens into *counts). Returns
// [tokens, hidden]. May throw c10::Error.
absl::StatusOr<at::Tensor> MoeMlp(const MoeLayout& layout, const at::Tensor& router,
                                  const at::Tensor& shared_expert_gate, const at::Tensor& x,
                                  const ApplyLayerFn& apply, bool calibrating,
                                  MoeTokenCounts* counts);

}  // namespace baq::worker

#endif  // BAQ_WORKER_MODEL_MOE_MLP_H_

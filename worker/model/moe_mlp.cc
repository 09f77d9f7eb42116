#include "worker/model/moe_mlp.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>

#include "common/status_macros.h"
#include "worker/model/decoder_block.h"

namespace baq::worker {

int ExpertIndexOf(absl::string_view short_name) {
  constexpr absl::string_view kExperts = ".experts.";
  const size_t at = short_name.find(kExperts);
  if (at == absl::string_view::npos) return -1;
  int index = 0;
  size_t i = at + kExperts.size();
  if (i >= short_name.size() || short_name[i] < '0' || short_name[i] > '9') return -1;
  for (; i < short_name.size() && short_name[i] >= '0' && short_name[i] <= '9'; ++i) {
    index = index * 10 + (short_name[i] - '0');
  }
  return i < short_name.size() && short_name[i] == '.' ? index : -1;
}

absl::StatusOr<at::Tensor> MoeMlp(const MoeLayout& layout, const at::Tensor& router,
                                  const at::Tensor& shared_expert_gate, const at::Tensor& x,
                                  const ApplyLayerFn& apply, bool calibrating,
                                  MoeTokenCounts* counts) {
  const int64_t tokens = x.size(0);
  // Router in the compute dtype, softmax in float32, as transformers.
  const at::Tensor logits = LinearOp(x, router, at::Tensor());
  const at::Tensor probs = at::softmax(logits.to(at::kFloat), -1);  // [tokens, E]
  auto [top_w, top_e] = at::topk(probs, layout.top_k, -1);
  if (layout.norm_topk_prob) top_w = top_w / top_w.sum(-1, /*keepdim=*/true);
  top_w = top_w.to(x.scalar_type());

  at::Tensor out = at::zeros_like(x);
  if (calibrating && counts != nullptr && counts->routed.empty()) {
    counts->routed.assign(static_cast<size_t>(layout.num_experts), 0);
    counts->top_up.assign(static_cast<size_t>(layout.num_experts), 0);
  }
  // [tokens, E] mask of routed (token, expert) pairs.
  const at::Tensor routed_mask =
      at::zeros({tokens, layout.num_experts}, top_e.options().dtype(at::kBool))
          .scatter_(1, top_e, true);
  for (int64_t e = 0; e < layout.num_experts; ++e) {
    // (token, position in its top-k) of the tokens routed to expert e.
    const at::Tensor hit = (top_e == e).nonzero();  // [n, 2]
    const int64_t n = hit.size(0);
    at::Tensor rows = hit.select(1, 0);
    int64_t extra = 0;
    if (calibrating) {
      extra = std::min(tokens, layout.min_calibration_tokens) - n;
      if (extra > 0) {
        // Floor rule: the non-routed tokens with the highest probability for e.
        const at::Tensor p = probs.select(1, e).masked_fill(
            routed_mask.select(1, e), -std::numeric_limits<float>::infinity());
        rows = at::cat({rows, std::get<1>(at::topk(p, extra))});
      } else {
        extra = 0;
      }
      if (counts != nullptr) {
        counts->routed[static_cast<size_t>(e)] += n;
        counts->top_up[static_cast<size_t>(e)] += extra;
      }
    }
    if (n + extra == 0) continue;  // transformers skips experts without tokens.
    const at::Tensor xe = x.index_select(0, rows);
    BAQ_ASSIGN_OR_RETURN(at::Tensor gate, apply(layout.gate[static_cast<size_t>(e)], xe));
    BAQ_ASSIGN_OR_RETURN(at::Tensor up, apply(layout.up[static_cast<size_t>(e)], xe));
    BAQ_ASSIGN_OR_RETURN(at::Tensor y,
                         apply(layout.down[static_cast<size_t>(e)], at::silu(gate) * up));
    if (n == 0) continue;
    const at::Tensor w =
        top_w.reshape({-1})
            .index_select(0, hit.select(1, 0) * layout.top_k + hit.select(1, 1))
            .unsqueeze(1);
    out.index_add_(0, hit.select(1, 0), y.narrow(0, 0, n) * w);
  }
  if (layout.shared_gate >= 0) {
    BAQ_ASSIGN_OR_RETURN(at::Tensor gate, apply(layout.shared_gate, x));
    BAQ_ASSIGN_OR_RETURN(at::Tensor up, apply(layout.shared_up, x));
    BAQ_ASSIGN_OR_RETURN(at::Tensor shared, apply(layout.shared_down, at::silu(gate) * up));
    out = out + at::sigmoid(LinearOp(x, shared_expert_gate, at::Tensor())) * shared;
  }
  return out;
}

}  // namespace baq::worker

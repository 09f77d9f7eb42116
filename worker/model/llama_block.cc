#include "worker/model/llama_block.h"

#include <ATen/ATen.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "worker/model/moe_mlp.h"
#include "worker/model/rope.h"
#include "worker/model/tensor_convert.h"

namespace baq::worker {
namespace {

// The layers LlamaBlock's math uses, by position; which of them exist depends
// on the variant (fused qkv / gate_up for Phi-3, experts for MoE blocks).
enum Layer { kQ, kK, kV, kQkv, kO, kGate, kUp, kGateUp, kDown, kNumLayers };
enum Vector { kAttnNorm, kMlpNorm };
constexpr absl::string_view kVectors[] = {"input_layernorm.weight",
                                          "post_attention_layernorm.weight"};

// silu in x's dtype; float16 on the CPU through float32 (LibTorch 1.13 has no
// float16 CPU silu), rounded once as on CUDA.
at::Tensor Silu(const at::Tensor& x) {
  if (IsHalfOnCpu(x)) return at::silu(x.to(at::kFloat)).to(x.scalar_type());
  return at::silu(x);
}

class LlamaBlock final : public DecoderBlock {
 public:
  static absl::StatusOr<std::unique_ptr<DecoderBlock>> Load(const ModelConfig& config,
                                                             const SafetensorsCheckpoint& ckpt,
                                                             int64_t block,
                                                             const BlockOptions& options) {
    if (config.hidden_act != "silu") {
      return absl::InvalidArgumentError(absl::StrCat(
          "hidden_act \"", config.hidden_act, "\" is not supported for ", config.model_type,
          " (silu)"));
    }
    if (config.num_key_value_heads <= 0 || config.head_dim <= 0 || config.head_dim % 2 != 0 ||
        config.num_attention_heads % config.num_key_value_heads != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unsupported attention shape: ", config.num_attention_heads, " heads, ",
          config.num_key_value_heads, " kv heads, head_dim ", config.head_dim));
    }
    const bool moe = config.IsMoeLayer(block);
    // Names of the used layers, by Layer ("" = not in this variant).
    std::vector<std::string> names(kNumLayers);
    if (config.fused_qkv) {
      names[kQkv] = "self_attn.qkv_proj";
      names[kGateUp] = "mlp.gate_up_proj";
    } else {
      names[kQ] = "self_attn.q_proj";
      names[kK] = "self_attn.k_proj";
      names[kV] = "self_attn.v_proj";
      if (!moe) {
        names[kGate] = "mlp.gate_proj";
        names[kUp] = "mlp.up_proj";
      }
    }
    names[kO] = "self_attn.o_proj";
    if (!moe) names[kDown] = "mlp.down_proj";
    std::vector<absl::string_view> used;
    for (const std::string& n : names) {
      if (!n.empty()) used.push_back(n);
    }
    BAQ_ASSIGN_OR_RETURN(BlockParams p,
                         LoadBlockParams(config, ckpt, block, options, used, kVectors));
    std::vector<int> layer(kNumLayers, -1);
    for (size_t i = 0, u = 0; i < names.size(); ++i) {
      if (!names[i].empty()) layer[i] = p.layer[u++];
    }
    std::unique_ptr<LlamaBlock> b(new LlamaBlock(config, block, options, std::move(p), layer));
    const std::string prefix = config.BlockPrefix(block);
    const auto load = [&](const std::string& name, std::vector<int64_t> shape) {
      return LoadCheckpointTensor(ckpt, prefix + name, shape, options.device,
                                  options.compute_dtype);
    };
    if (config.qk_norm) {
      BAQ_ASSIGN_OR_RETURN(b->q_norm_, load("self_attn.q_norm.weight", {config.head_dim}));
      BAQ_ASSIGN_OR_RETURN(b->k_norm_, load("self_attn.k_norm.weight", {config.head_dim}));
    }
    if (moe) BAQ_RETURN_IF_ERROR(b->LoadMoe(config, block, load));
    return std::unique_ptr<DecoderBlock>(std::move(b));
  }

  const MoeTokenCounts* moe_token_counts() const override {
    return moe_.num_experts > 0 ? &moe_counts_ : nullptr;
  }

 protected:
  absl::StatusOr<at::Tensor> ForwardImpl(const at::Tensor& hidden) override {
    const int64_t batch = hidden.size(0), seq = hidden.size(1);
    at::Tensor x = RmsNorm(hidden, v_[kAttnNorm], eps_);
    at::Tensor q, k, v;
    if (layer_[kQkv] >= 0) {  // Phi-3: [q | k | v] rows of one fused weight.
      BAQ_ASSIGN_OR_RETURN(at::Tensor qkv, ApplyLinear(layer_[kQkv], x));
      const int64_t qd = heads_ * head_dim_, kvd = kv_heads_ * head_dim_;
      q = qkv.narrow(-1, 0, qd);
      k = qkv.narrow(-1, qd, kvd);
      v = qkv.narrow(-1, qd + kvd, kvd);
    } else {
      BAQ_ASSIGN_OR_RETURN(q, ApplyLinear(layer_[kQ], x));
      BAQ_ASSIGN_OR_RETURN(k, ApplyLinear(layer_[kK], x));
      BAQ_ASSIGN_OR_RETURN(v, ApplyLinear(layer_[kV], x));
    }
    const auto split = [&](const at::Tensor& t, int64_t heads) {
      return t.reshape({batch, seq, heads, head_dim_}).transpose(1, 2);
    };
    q = split(q, heads_);
    k = split(k, kv_heads_);
    if (q_norm_.defined()) {  // Qwen3: RMSNorm over each head before RoPE.
      q = RmsNorm(q, q_norm_, eps_);
      k = RmsNorm(k, k_norm_, eps_);
    }
    const auto [cos_t, sin_t] = rope_.Tables(seq, hidden.device(), hidden.scalar_type());
    q = RotaryEmbedding::Apply(q, cos_t, sin_t);
    k = RotaryEmbedding::Apply(k, cos_t, sin_t);
    const at::Tensor attn =
        CausalAttention(q, k, split(v, kv_heads_),
                        1.0 / std::sqrt(static_cast<double>(head_dim_)), sliding_window_);
    BAQ_ASSIGN_OR_RETURN(at::Tensor attn_out, ApplyLinear(layer_[kO], attn));
    const at::Tensor h = hidden + attn_out;
    x = RmsNorm(h, v_[kMlpNorm], eps_);
    if (moe_.num_experts > 0) {
      const at::Tensor rows = x.reshape({batch * seq, x.size(2)});
      BAQ_ASSIGN_OR_RETURN(
          at::Tensor y,
          MoeMlp(moe_, router_, shared_expert_gate_, rows,
                 [this](int layer, const at::Tensor& in) { return ApplyLinear(layer, in); },
                 has_input_observer(), &moe_counts_));
      return h + y.view_as(h);
    }
    at::Tensor act;
    if (layer_[kGateUp] >= 0) {  // Phi-3: [gate | up] = chunk(2).
      BAQ_ASSIGN_OR_RETURN(at::Tensor gate_up, ApplyLinear(layer_[kGateUp], x));
      const int64_t f = gate_up.size(-1) / 2;
      act = gate_up.narrow(-1, f, f) * Silu(gate_up.narrow(-1, 0, f));
    } else {
      BAQ_ASSIGN_OR_RETURN(at::Tensor gate, ApplyLinear(layer_[kGate], x));
      BAQ_ASSIGN_OR_RETURN(at::Tensor up, ApplyLinear(layer_[kUp], x));
      act = Silu(gate) * up;
    }
    BAQ_ASSIGN_OR_RETURN(at::Tensor down, ApplyLinear(layer_[kDown], act));
    return h + down;
  }

 private:
  LlamaBlock(const ModelConfig& config, int64_t block, const BlockOptions& options,
             BlockParams params, std::vector<int> layer)
      : DecoderBlock(block, config.hidden_size, options, std::move(params.linears)),
        heads_(config.num_attention_heads),
        kv_heads_(config.num_key_value_heads),
        head_dim_(config.head_dim),
        rope_(config.rope),
        sliding_window_(config.IsSlidingLayer(block) ? config.sliding_window : 0),
        eps_(config.rms_norm_eps),
        layer_(std::move(layer)),
        v_(std::move(params.vectors)) {}

  template <typename LoadFn>
  absl::Status LoadMoe(const ModelConfig& config, int64_t block, const LoadFn& load) {
    moe_.num_experts = config.num_experts;
    moe_.top_k = config.num_experts_per_tok;
    moe_.norm_topk_prob = config.norm_topk_prob;
    moe_.min_calibration_tokens = options().moe_min_calibration_tokens;
    const bool mixtral = config.model_type == "mixtral";
    const std::string moe = config.MoePrefix();
    const std::vector<LinearLayerSpec>& specs = linear_layers();
    for (int64_t e = 0; e < config.num_experts; ++e) {
      const std::string p = absl::StrCat(moe, ".experts.", e, ".");
      BAQ_ASSIGN_OR_RETURN(int g, FindLayer(specs, p + (mixtral ? "w1" : "gate_proj")));
      BAQ_ASSIGN_OR_RETURN(int u, FindLayer(specs, p + (mixtral ? "w3" : "up_proj")));
      BAQ_ASSIGN_OR_RETURN(int d, FindLayer(specs, p + (mixtral ? "w2" : "down_proj")));
      moe_.gate.push_back(g);
      moe_.up.push_back(u);
      moe_.down.push_back(d);
    }
    BAQ_ASSIGN_OR_RETURN(router_, load(moe + ".gate.weight", {config.num_experts,
                                                              config.hidden_size}));
    if (config.shared_expert_intermediate_size > 0) {
      BAQ_ASSIGN_OR_RETURN(moe_.shared_gate, FindLayer(specs, "mlp.shared_expert.gate_proj"));
      BAQ_ASSIGN_OR_RETURN(moe_.shared_up, FindLayer(specs, "mlp.shared_expert.up_proj"));
      BAQ_ASSIGN_OR_RETURN(moe_.shared_down, FindLayer(specs, "mlp.shared_expert.down_proj"));
      BAQ_ASSIGN_OR_RETURN(shared_expert_gate_,
                           load("mlp.shared_expert_gate.weight", {1, config.hidden_size}));
    }
    (void)block;
    return absl::OkStatus();
  }

  const int64_t heads_;
  const int64_t kv_heads_;
  const int64_t head_dim_;
  const RotaryEmbedding rope_;
  const int64_t sliding_window_;  // 0 = full causal attention.
  const double eps_;
  const std::vector<int> layer_;     // By Layer: index into linear_layers(), -1 = unused.
  const std::vector<at::Tensor> v_;  // By Vector.
  at::Tensor q_norm_, k_norm_;       // [head_dim] (Qwen3); undefined otherwise.
  // MoE blocks (num_experts > 0).
  MoeLayout moe_;
  at::Tensor router_;              // [num_experts, hidden]
  at::Tensor shared_expert_gate_;  // [1, hidden] (Qwen2-MoE)
  MoeTokenCounts moe_counts_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<DecoderBlock>> LoadLlamaBlock(const ModelConfig& config,
                                                             const SafetensorsCheckpoint& ckpt,
                                                             int64_t block,
                                                             const BlockOptions& options) {
  return LlamaBlock::Load(config, ckpt, block, options);
}

}  // namespace baq::worker

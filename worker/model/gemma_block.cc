#include "worker/model/gemma_block.h"

#include <ATen/ATen.h>

#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "worker/model/rope.h"
#include "worker/model/tensor_convert.h"

namespace baq::worker {
namespace {

enum Layer { kQ, kK, kV, kO, kGate, kUp, kDown };
constexpr absl::string_view kLayers[] = {"self_attn.q_proj", "self_attn.k_proj",
                                         "self_attn.v_proj", "self_attn.o_proj",
                                         "mlp.gate_proj",    "mlp.up_proj",
                                         "mlp.down_proj"};
enum Vector { kInputNorm, kPostAttnNorm, kPreFfnNorm, kPostFfnNorm };
constexpr absl::string_view kVectors[] = {
    "input_layernorm.weight", "post_attention_layernorm.weight",
    "pre_feedforward_layernorm.weight", "post_feedforward_layernorm.weight"};

class GemmaBlock final : public DecoderBlock {
 public:
  static absl::StatusOr<std::unique_ptr<DecoderBlock>> Load(const ModelConfig& config,
                                                             const SafetensorsCheckpoint& ckpt,
                                                             int64_t block,
                                                             const BlockOptions& options) {
    if (config.hidden_act != "gelu_pytorch_tanh") {
      return absl::InvalidArgumentError(absl::StrCat(
          "hidden_activation \"", config.hidden_act, "\" is not supported for ",
          config.model_type, " (gelu_pytorch_tanh)"));
    }
    if (config.num_key_value_heads <= 0 || config.head_dim <= 0 || config.head_dim % 2 != 0 ||
        config.num_attention_heads % config.num_key_value_heads != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unsupported attention shape: ", config.num_attention_heads, " heads, ",
          config.num_key_value_heads, " kv heads, head_dim ", config.head_dim));
    }
    BAQ_ASSIGN_OR_RETURN(BlockParams p,
                         LoadBlockParams(config, ckpt, block, options, kLayers, kVectors));
    std::unique_ptr<GemmaBlock> b(new GemmaBlock(config, block, options, std::move(p)));
    if (config.qk_norm) {
      const std::string prefix = config.BlockPrefix(block);
      for (auto [name, dst] : {std::make_pair("self_attn.q_norm.weight", &b->q_norm_),
                               std::make_pair("self_attn.k_norm.weight", &b->k_norm_)}) {
        BAQ_ASSIGN_OR_RETURN(*dst, LoadCheckpointTensor(ckpt, prefix + name, {config.head_dim},
                                                        options.device, options.compute_dtype));
      }
    }
    return std::unique_ptr<DecoderBlock>(std::move(b));
  }

 protected:
  absl::StatusOr<at::Tensor> ForwardImpl(const at::Tensor& hidden) override {
    const int64_t batch = hidden.size(0), seq = hidden.size(1);
    at::Tensor x = GemmaRmsNorm(hidden, v_[kInputNorm], eps_);
    BAQ_ASSIGN_OR_RETURN(at::Tensor q, ApplyLinear(layer_[kQ], x));
    BAQ_ASSIGN_OR_RETURN(at::Tensor k, ApplyLinear(layer_[kK], x));
    BAQ_ASSIGN_OR_RETURN(at::Tensor v, ApplyLinear(layer_[kV], x));
    const auto split = [&](const at::Tensor& t, int64_t heads) {
      return t.view({batch, seq, heads, head_dim_}).transpose(1, 2);
    };
    q = split(q, heads_);
    k = split(k, kv_heads_);
    if (q_norm_.defined()) {  // Gemma-3.
      q = GemmaRmsNorm(q, q_norm_, eps_);
      k = GemmaRmsNorm(k, k_norm_, eps_);
    }
    const auto [cos_t, sin_t] = rope_.Tables(seq, hidden.device(), hidden.scalar_type());
    q = RotaryEmbedding::Apply(q, cos_t, sin_t);
    k = RotaryEmbedding::Apply(k, cos_t, sin_t);
    const at::Tensor attn = CausalAttention(q, k, split(v, kv_heads_), scale_, sliding_window_,
                                            softcap_);
    BAQ_ASSIGN_OR_RETURN(at::Tensor attn_out, ApplyLinear(layer_[kO], attn));
    const at::Tensor h = hidden + GemmaRmsNorm(attn_out, v_[kPostAttnNorm], eps_);
    x = GemmaRmsNorm(h, v_[kPreFfnNorm], eps_);
    BAQ_ASSIGN_OR_RETURN(at::Tensor gate, ApplyLinear(layer_[kGate], x));
    BAQ_ASSIGN_OR_RETURN(at::Tensor up, ApplyLinear(layer_[kUp], x));
    BAQ_ASSIGN_OR_RETURN(at::Tensor down,
                         ApplyLinear(layer_[kDown], at::gelu(gate, "tanh") * up));
    return h + GemmaRmsNorm(down, v_[kPostFfnNorm], eps_);
  }

 private:
  GemmaBlock(const ModelConfig& config, int64_t block, const BlockOptions& options,
             BlockParams params)
      : DecoderBlock(block, config.hidden_size, options, std::move(params.linears)),
        heads_(config.num_attention_heads),
        kv_heads_(config.num_key_value_heads),
        head_dim_(config.head_dim),
        rope_(config.IsSlidingLayer(block) ? config.rope_local : config.rope),
        sliding_window_(config.IsSlidingLayer(block) ? config.sliding_window : 0),
        scale_(1.0 / std::sqrt(config.query_pre_attn_scalar)),
        softcap_(config.attn_logit_softcapping),
        eps_(config.rms_norm_eps),
        layer_(std::move(params.layer)),
        v_(std::move(params.vectors)) {}

  const int64_t heads_;
  const int64_t kv_heads_;
  const int64_t head_dim_;
  const RotaryEmbedding rope_;
  const int64_t sliding_window_;  // 0 = full causal attention.
  const double scale_;            // query_pre_attn_scalar^-0.5
  const double softcap_;          // 0 = none.
  const double eps_;
  const std::vector<int> layer_;     // By Layer.
  const std::vector<at::Tensor> v_;  // By Vector.
  at::Tensor q_norm_, k_norm_;       // [head_dim] (Gemma-3); undefined otherwise.
};

}  // namespace

absl::StatusOr<std::unique_ptr<DecoderBlock>> LoadGemmaBlock(const ModelConfig& config,
                                                             const SafetensorsCheckpoint& ckpt,
                                                             int64_t block,
                                                             const BlockOptions& options) {
  return GemmaBlock::Load(config, ckpt, block, options);
}

}  // namespace baq::worker

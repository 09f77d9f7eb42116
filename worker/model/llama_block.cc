#include "worker/model/llama_block.h"

#include <ATen/ATen.h>

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/model/tensor_convert.h"

namespace baq::worker {
namespace {

class LlamaBlock final : public DecoderBlock {
 public:
  struct Params {
    at::Tensor attn_norm_weight;  // input_layernorm
    at::Tensor mlp_norm_weight;   // post_attention_layernorm
    int q, k, v, o, gate, up, down;  // Indices into linear_layers().
  };

  static absl::StatusOr<std::unique_ptr<DecoderBlock>> Load(const ModelConfig& config,
                                                             const SafetensorsCheckpoint& ckpt,
                                                             int64_t block,
                                                             const BlockOptions& options) {
    if (config.hidden_act != "silu") {
      return absl::InvalidArgumentError(absl::StrCat(
          "hidden_act \"", config.hidden_act, "\" is not supported for ", config.model_type,
          " (silu)"));
    }
    if (config.rope_type != "default") {
      return absl::UnimplementedError(absl::StrCat("rope_type \"", config.rope_type,
                                                   "\" is not supported (default)"));
    }
    if (config.num_key_value_heads <= 0 || config.head_dim <= 0 || config.head_dim % 2 != 0 ||
        config.num_attention_heads % config.num_key_value_heads != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unsupported attention shape: ", config.num_attention_heads, " heads, ",
          config.num_key_value_heads, " kv heads, head_dim ", config.head_dim));
    }
    BAQ_ASSIGN_OR_RETURN(LinearParams linears, LoadLinearParams(config, ckpt, block, options));
    Params p;
    BAQ_ASSIGN_OR_RETURN(p.q, FindLayer(linears.specs, "self_attn.q_proj"));
    BAQ_ASSIGN_OR_RETURN(p.k, FindLayer(linears.specs, "self_attn.k_proj"));
    BAQ_ASSIGN_OR_RETURN(p.v, FindLayer(linears.specs, "self_attn.v_proj"));
    BAQ_ASSIGN_OR_RETURN(p.o, FindLayer(linears.specs, "self_attn.o_proj"));
    BAQ_ASSIGN_OR_RETURN(p.gate, FindLayer(linears.specs, "mlp.gate_proj"));
    BAQ_ASSIGN_OR_RETURN(p.up, FindLayer(linears.specs, "mlp.up_proj"));
    BAQ_ASSIGN_OR_RETURN(p.down, FindLayer(linears.specs, "mlp.down_proj"));
    const std::string prefix = config.BlockPrefix(block);
    const auto load = [&](const std::string& name) {
      return LoadCheckpointTensor(ckpt, prefix + name, {config.hidden_size}, options.device,
                                  options.compute_dtype);
    };
    BAQ_ASSIGN_OR_RETURN(p.attn_norm_weight, load("input_layernorm.weight"));
    BAQ_ASSIGN_OR_RETURN(p.mlp_norm_weight, load("post_attention_layernorm.weight"));
    return std::unique_ptr<DecoderBlock>(
        new LlamaBlock(config, block, options, std::move(linears), std::move(p)));
  }

 protected:
  absl::StatusOr<at::Tensor> ForwardImpl(const at::Tensor& hidden) override {
    const int64_t batch = hidden.size(0), seq = hidden.size(1);
    at::Tensor x = RmsNorm(hidden, p_.attn_norm_weight, eps_);
    BAQ_ASSIGN_OR_RETURN(at::Tensor q, ApplyLinear(p_.q, x));
    BAQ_ASSIGN_OR_RETURN(at::Tensor k, ApplyLinear(p_.k, x));
    BAQ_ASSIGN_OR_RETURN(at::Tensor v, ApplyLinear(p_.v, x));
    const auto split = [&](const at::Tensor& t, int64_t heads) {
      return t.view({batch, seq, heads, head_dim_}).transpose(1, 2);
    };
    const auto [cos_t, sin_t] = RopeTables(seq, hidden.device(), hidden.scalar_type());
    q = ApplyRope(split(q, heads_), cos_t, sin_t);
    k = ApplyRope(split(k, kv_heads_), cos_t, sin_t);
    const at::Tensor attn =
        CausalAttention(q, k, split(v, kv_heads_),
                        1.0 / std::sqrt(static_cast<double>(head_dim_)), sliding_window_);
    BAQ_ASSIGN_OR_RETURN(at::Tensor attn_out, ApplyLinear(p_.o, attn));
    const at::Tensor h = hidden + attn_out;
    x = RmsNorm(h, p_.mlp_norm_weight, eps_);
    BAQ_ASSIGN_OR_RETURN(at::Tensor gate, ApplyLinear(p_.gate, x));
    BAQ_ASSIGN_OR_RETURN(at::Tensor up, ApplyLinear(p_.up, x));
    BAQ_ASSIGN_OR_RETURN(at::Tensor down, ApplyLinear(p_.down, at::silu(gate) * up));
    return h + down;
  }

 private:
  LlamaBlock(const ModelConfig& config, int64_t block, const BlockOptions& options,
             LinearParams linears, Params params)
      : DecoderBlock(block, config.hidden_size, options, std::move(linears)),
        heads_(config.num_attention_heads),
        kv_heads_(config.num_key_value_heads),
        head_dim_(config.head_dim),
        rope_theta_(config.rope_theta),
        sliding_window_(config.sliding_window),
        eps_(config.rms_norm_eps),
        p_(std::move(params)) {}

  // cos/sin [seq, head_dim] for positions 0..seq-1, computed in float32 as
  // transformers' LlamaRotaryEmbedding (inv_freq = 1 / theta^(2i/d),
  // emb = cat(freqs, freqs)) and cast to the compute dtype.
  std::pair<at::Tensor, at::Tensor> RopeTables(int64_t seq, at::Device device,
                                               at::ScalarType dtype) const {
    const at::TensorOptions f32 = at::TensorOptions().dtype(at::kFloat).device(device);
    const at::Tensor exponent =
        at::arange(0, head_dim_, 2, at::TensorOptions().dtype(at::kLong).device(device))
            .to(at::kFloat) / static_cast<double>(head_dim_);
    const at::Tensor inv_freq = 1.0 / at::pow(rope_theta_, exponent);
    const at::Tensor freqs = at::outer(at::arange(seq, f32), inv_freq);
    const at::Tensor emb = at::cat({freqs, freqs}, -1);
    return {emb.cos().to(dtype), emb.sin().to(dtype)};
  }

  // x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1).
  static at::Tensor ApplyRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
    const int64_t half = x.size(-1) / 2;
    const at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
    return x * cos + rotated * sin;
  }

  const int64_t heads_;
  const int64_t kv_heads_;
  const int64_t head_dim_;
  const double rope_theta_;
  const int64_t sliding_window_;  // 0 = full causal attention.
  const double eps_;
  const Params p_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<DecoderBlock>> LoadLlamaBlock(const ModelConfig& config,
                                                             const SafetensorsCheckpoint& ckpt,
                                                             int64_t block,
                                                             const BlockOptions& options) {
  return LlamaBlock::Load(config, ckpt, block, options);
}

}  // namespace baq::worker

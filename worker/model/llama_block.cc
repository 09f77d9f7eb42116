#include "worker/model/llama_block.h"

#include <ATen/ATen.h>

#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"

namespace baq::worker {
namespace {

// The layers and vectors LlamaBlock's math uses, by position.
enum Layer { kQ, kK, kV, kO, kGate, kUp, kDown };
constexpr absl::string_view kLayers[] = {"self_attn.q_proj", "self_attn.k_proj",
                                         "self_attn.v_proj", "self_attn.o_proj",
                                         "mlp.gate_proj",    "mlp.up_proj",
                                         "mlp.down_proj"};
enum Vector { kAttnNorm, kMlpNorm };
constexpr absl::string_view kVectors[] = {"input_layernorm.weight",
                                          "post_attention_layernorm.weight"};

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
    BAQ_ASSIGN_OR_RETURN(BlockParams p,
                         LoadBlockParams(config, ckpt, block, options, kLayers, kVectors));
    return std::unique_ptr<DecoderBlock>(new LlamaBlock(config, block, options, std::move(p)));
  }

 protected:
  absl::StatusOr<at::Tensor> ForwardImpl(const at::Tensor& hidden) override {
    const int64_t batch = hidden.size(0), seq = hidden.size(1);
    at::Tensor x = RmsNorm(hidden, v_[kAttnNorm], eps_);
    BAQ_ASSIGN_OR_RETURN(at::Tensor q, ApplyLinear(layer_[kQ], x));
    BAQ_ASSIGN_OR_RETURN(at::Tensor k, ApplyLinear(layer_[kK], x));
    BAQ_ASSIGN_OR_RETURN(at::Tensor v, ApplyLinear(layer_[kV], x));
    const auto split = [&](const at::Tensor& t, int64_t heads) {
      return t.view({batch, seq, heads, head_dim_}).transpose(1, 2);
    };
    const auto [cos_t, sin_t] = RopeTables(seq, hidden.device(), hidden.scalar_type());
    q = ApplyRope(split(q, heads_), cos_t, sin_t);
    k = ApplyRope(split(k, kv_heads_), cos_t, sin_t);
    const at::Tensor attn =
        CausalAttention(q, k, split(v, kv_heads_),
                        1.0 / std::sqrt(static_cast<double>(head_dim_)), sliding_window_);
    BAQ_ASSIGN_OR_RETURN(at::Tensor attn_out, ApplyLinear(layer_[kO], attn));
    const at::Tensor h = hidden + attn_out;
    x = RmsNorm(h, v_[kMlpNorm], eps_);
    BAQ_ASSIGN_OR_RETURN(at::Tensor gate, ApplyLinear(layer_[kGate], x));
    BAQ_ASSIGN_OR_RETURN(at::Tensor up, ApplyLinear(layer_[kUp], x));
    BAQ_ASSIGN_OR_RETURN(at::Tensor down, ApplyLinear(layer_[kDown], at::silu(gate) * up));
    return h + down;
  }

 private:
  LlamaBlock(const ModelConfig& config, int64_t block, const BlockOptions& options,
             BlockParams params)
      : DecoderBlock(block, config.hidden_size, options, std::move(params.linears)),
        heads_(config.num_attention_heads),
        kv_heads_(config.num_key_value_heads),
        head_dim_(config.head_dim),
        rope_theta_(config.rope_theta),
        sliding_window_(config.sliding_window),
        eps_(config.rms_norm_eps),
        layer_(std::move(params.layer)),
        v_(std::move(params.vectors)) {}

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
  const std::vector<int> layer_;     // By Layer: index into linear_layers().
  const std::vector<at::Tensor> v_;  // By Vector.
};

}  // namespace

absl::StatusOr<std::unique_ptr<DecoderBlock>> LoadLlamaBlock(const ModelConfig& config,
                                                             const SafetensorsCheckpoint& ckpt,
                                                             int64_t block,
                                                             const BlockOptions& options) {
  return LlamaBlock::Load(config, ckpt, block, options);
}

}  // namespace baq::worker

#include "worker/model/opt_block.h"

#include <ATen/ATen.h>

#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"

namespace baq::worker {
namespace {

// The layers and vectors OptBlock's math uses, by position.
enum Layer { kQ, kK, kV, kOut, kFc1, kFc2 };
constexpr absl::string_view kLayers[] = {"self_attn.q_proj", "self_attn.k_proj",
                                         "self_attn.v_proj", "self_attn.out_proj", "fc1", "fc2"};
// transformers' OPT LayerNorms have biases even when enable_bias is false.
enum Vector { kAttnNormWeight, kAttnNormBias, kFfnNormWeight, kFfnNormBias };
constexpr absl::string_view kVectors[] = {"self_attn_layer_norm.weight",
                                          "self_attn_layer_norm.bias", "final_layer_norm.weight",
                                          "final_layer_norm.bias"};

class OptBlock final : public DecoderBlock {
 public:
  OptBlock(const ModelConfig& config, int64_t block, const BlockOptions& options,
           BlockParams params)
      : DecoderBlock(block, config.hidden_size, options, std::move(params.linears)),
        heads_(config.num_attention_heads),
        head_dim_(config.hidden_size / config.num_attention_heads),
        norm_before_(config.do_layer_norm_before),
        relu_(config.hidden_act == "relu"),
        eps_(config.layer_norm_eps),
        layer_(std::move(params.layer)),
        v_(std::move(params.vectors)) {}

  static absl::StatusOr<std::unique_ptr<DecoderBlock>> Load(const ModelConfig& config,
                                                             const SafetensorsCheckpoint& ckpt,
                                                             int64_t block,
                                                             const BlockOptions& options) {
    if (config.hidden_act != "relu" && config.hidden_act != "gelu") {
      return absl::InvalidArgumentError(absl::StrCat(
          "OPT activation \"", config.hidden_act, "\" is not supported (relu, gelu)"));
    }
    if (config.num_attention_heads <= 0 ||
        config.hidden_size % config.num_attention_heads != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "hidden_size ", config.hidden_size, " is not a multiple of num_attention_heads ",
          config.num_attention_heads));
    }
    BAQ_ASSIGN_OR_RETURN(BlockParams p,
                         LoadBlockParams(config, ckpt, block, options, kLayers, kVectors));
    return std::unique_ptr<DecoderBlock>(new OptBlock(config, block, options, std::move(p)));
  }

 protected:
  absl::StatusOr<at::Tensor> ForwardImpl(const at::Tensor& hidden) override {
    const int64_t batch = hidden.size(0), seq = hidden.size(1), width = hidden.size(2);
    // Attention branch.
    at::Tensor x = norm_before_ ? AttnNorm(hidden) : hidden;
    BAQ_ASSIGN_OR_RETURN(at::Tensor q, ApplyLinear(layer_[kQ], x));
    BAQ_ASSIGN_OR_RETURN(at::Tensor k, ApplyLinear(layer_[kK], x));
    BAQ_ASSIGN_OR_RETURN(at::Tensor v, ApplyLinear(layer_[kV], x));
    const auto split = [&](const at::Tensor& t) {
      return t.view({batch, seq, heads_, head_dim_}).transpose(1, 2);
    };
    const at::Tensor attn = CausalAttention(split(q), split(k), split(v),
                                            1.0 / std::sqrt(static_cast<double>(head_dim_)));
    BAQ_ASSIGN_OR_RETURN(at::Tensor attn_out, ApplyLinear(layer_[kOut], attn));
    at::Tensor h = hidden + attn_out;
    if (!norm_before_) h = AttnNorm(h);
    // FFN branch.
    x = norm_before_ ? FfnNorm(h) : h;
    BAQ_ASSIGN_OR_RETURN(at::Tensor up, ApplyLinear(layer_[kFc1], x));
    up = Activation(up);
    BAQ_ASSIGN_OR_RETURN(at::Tensor down, ApplyLinear(layer_[kFc2], up));
    h = h + down;
    if (!norm_before_) h = FfnNorm(h);
    return h.view({batch, seq, width});
  }

 private:
  at::Tensor AttnNorm(const at::Tensor& x) const {
    return LayerNorm(x, v_[kAttnNormWeight], v_[kAttnNormBias]);
  }
  at::Tensor FfnNorm(const at::Tensor& x) const {
    return LayerNorm(x, v_[kFfnNormWeight], v_[kFfnNormBias]);
  }
  // ReLU or GELU; half inputs on the CPU through float32 (LibTorch 1.13 has
  // no float16 CPU relu), rounded once as on CUDA.
  at::Tensor Activation(const at::Tensor& x) const {
    if (IsHalfOnCpu(x)) {
      const at::Tensor xf = x.to(at::kFloat);
      return (relu_ ? at::relu(xf) : at::gelu(xf)).to(x.scalar_type());
    }
    return relu_ ? at::relu(x) : at::gelu(x);
  }
  // nn.LayerNorm in x's dtype: ATen computes the statistics in float32 for
  // half inputs on CUDA; on the CPU half inputs go through float32 explicitly
  // (decoder_block.h IsHalfOnCpu) with the same single rounding.
  at::Tensor LayerNorm(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) const {
    if (IsHalfOnCpu(x)) {
      return at::layer_norm(x.to(at::kFloat), {x.size(-1)}, w.to(at::kFloat), b.to(at::kFloat),
                            eps_)
          .to(x.scalar_type());
    }
    return at::layer_norm(x, {x.size(-1)}, w, b, eps_);
  }

  const int64_t heads_;
  const int64_t head_dim_;
  const bool norm_before_;
  const bool relu_;  // Else GELU (OPT configs allow "relu" and "gelu").
  const double eps_;
  const std::vector<int> layer_;       // By Layer: index into linear_layers().
  const std::vector<at::Tensor> v_;    // By Vector.
};

}  // namespace

absl::StatusOr<std::unique_ptr<DecoderBlock>> LoadOptBlock(const ModelConfig& config,
                                                           const SafetensorsCheckpoint& ckpt,
                                                           int64_t block,
                                                           const BlockOptions& options) {
  return OptBlock::Load(config, ckpt, block, options);
}

}  // namespace baq::worker

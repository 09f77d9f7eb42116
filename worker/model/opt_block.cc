#include "worker/model/opt_block.h"

#include <ATen/ATen.h>

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/model/tensor_convert.h"

namespace baq::worker {
namespace {

class OptBlock final : public DecoderBlock {
 public:
  struct Params {
    at::Tensor attn_norm_weight, attn_norm_bias;  // self_attn_layer_norm
    at::Tensor ffn_norm_weight, ffn_norm_bias;    // final_layer_norm
    int q, k, v, out, fc1, fc2;                   // Indices into linear_layers().
  };

  OptBlock(const ModelConfig& config, int64_t block, const BlockOptions& options,
           LinearParams linears, Params params)
      : DecoderBlock(block, config.hidden_size, options, std::move(linears)),
        heads_(config.num_attention_heads),
        head_dim_(config.hidden_size / config.num_attention_heads),
        norm_before_(config.do_layer_norm_before),
        relu_(config.hidden_act == "relu"),
        eps_(config.layer_norm_eps),
        p_(std::move(params)) {}

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
    BAQ_ASSIGN_OR_RETURN(LinearParams linears, LoadLinearParams(config, ckpt, block, options));
    Params p;
    BAQ_ASSIGN_OR_RETURN(p.q, FindLayer(linears.specs, "self_attn.q_proj"));
    BAQ_ASSIGN_OR_RETURN(p.k, FindLayer(linears.specs, "self_attn.k_proj"));
    BAQ_ASSIGN_OR_RETURN(p.v, FindLayer(linears.specs, "self_attn.v_proj"));
    BAQ_ASSIGN_OR_RETURN(p.out, FindLayer(linears.specs, "self_attn.out_proj"));
    BAQ_ASSIGN_OR_RETURN(p.fc1, FindLayer(linears.specs, "fc1"));
    BAQ_ASSIGN_OR_RETURN(p.fc2, FindLayer(linears.specs, "fc2"));
    const std::string prefix = config.BlockPrefix(block);
    const auto load = [&](const std::string& name) {
      return LoadCheckpointTensor(ckpt, prefix + name, {config.hidden_size}, options.device,
                                  options.compute_dtype);
    };
    // transformers' OPT LayerNorms have biases even when enable_bias is false.
    BAQ_ASSIGN_OR_RETURN(p.attn_norm_weight, load("self_attn_layer_norm.weight"));
    BAQ_ASSIGN_OR_RETURN(p.attn_norm_bias, load("self_attn_layer_norm.bias"));
    BAQ_ASSIGN_OR_RETURN(p.ffn_norm_weight, load("final_layer_norm.weight"));
    BAQ_ASSIGN_OR_RETURN(p.ffn_norm_bias, load("final_layer_norm.bias"));
    return std::unique_ptr<DecoderBlock>(
        new OptBlock(config, block, options, std::move(linears), std::move(p)));
  }

 protected:
  absl::StatusOr<at::Tensor> ForwardImpl(const at::Tensor& hidden) override {
    const int64_t batch = hidden.size(0), seq = hidden.size(1), width = hidden.size(2);
    // Attention branch.
    at::Tensor x = norm_before_ ? AttnNorm(hidden) : hidden;
    BAQ_ASSIGN_OR_RETURN(at::Tensor q, ApplyLinear(p_.q, x));
    BAQ_ASSIGN_OR_RETURN(at::Tensor k, ApplyLinear(p_.k, x));
    BAQ_ASSIGN_OR_RETURN(at::Tensor v, ApplyLinear(p_.v, x));
    const auto split = [&](const at::Tensor& t) {
      return t.view({batch, seq, heads_, head_dim_}).transpose(1, 2);
    };
    const at::Tensor attn = CausalAttention(split(q), split(k), split(v),
                                            1.0 / std::sqrt(static_cast<double>(head_dim_)));
    BAQ_ASSIGN_OR_RETURN(at::Tensor attn_out, ApplyLinear(p_.out, attn));
    at::Tensor h = hidden + attn_out;
    if (!norm_before_) h = AttnNorm(h);
    // FFN branch.
    x = norm_before_ ? FfnNorm(h) : h;
    BAQ_ASSIGN_OR_RETURN(at::Tensor up, ApplyLinear(p_.fc1, x));
    up = relu_ ? at::relu(up) : at::gelu(up);
    BAQ_ASSIGN_OR_RETURN(at::Tensor down, ApplyLinear(p_.fc2, up));
    h = h + down;
    if (!norm_before_) h = FfnNorm(h);
    return h.view({batch, seq, width});
  }

 private:
  at::Tensor AttnNorm(const at::Tensor& x) const {
    return at::layer_norm(x, {x.size(-1)}, p_.attn_norm_weight, p_.attn_norm_bias, eps_);
  }
  at::Tensor FfnNorm(const at::Tensor& x) const {
    return at::layer_norm(x, {x.size(-1)}, p_.ffn_norm_weight, p_.ffn_norm_bias, eps_);
  }

  const int64_t heads_;
  const int64_t head_dim_;
  const bool norm_before_;
  const bool relu_;  // Else GELU (OPT configs allow "relu" and "gelu").
  const double eps_;
  const Params p_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<DecoderBlock>> LoadOptBlock(const ModelConfig& config,
                                                           const SafetensorsCheckpoint& ckpt,
                                                           int64_t block,
                                                           const BlockOptions& options) {
  return OptBlock::Load(config, ckpt, block, options);
}

}  // namespace baq::worker

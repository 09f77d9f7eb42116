#include "worker/model/decoder_block.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/model/tensor_convert.h"
#include "worker/torch/torch_call.h"

// LibTorch >= 2.0: the fused attention transformers uses by default on CUDA
// (flash / memory-efficient kernels: no [chunk, seq] score tensor in memory).
#if __has_include(<ATen/ops/scaled_dot_product_attention.h>)
#include <ATen/ops/scaled_dot_product_attention.h>
#define BAQ_HAVE_SDPA 1
#else
#define BAQ_HAVE_SDPA 0
#endif

namespace baq::worker {

namespace {

// BlockOptions::linear_weight_loader's weight for `spec`, checked and
// converted to the compute dtype and device.
absl::StatusOr<at::Tensor> LoadedWeight(const LinearLayerSpec& spec, const BlockOptions& options) {
  BAQ_ASSIGN_OR_RETURN(at::Tensor w, options.linear_weight_loader(spec));
  if (!w.defined() || !w.is_floating_point() ||
      w.sizes() != at::IntArrayRef({spec.out_features, spec.in_features})) {
    return absl::InvalidArgumentError(absl::StrCat(
        spec.name, ": loaded weight must be a float [", spec.out_features, ", ",
        spec.in_features, "] tensor, got ",
        w.defined() ? ShapeString(w.sizes()) : std::string("undefined")));
  }
  BAQ_ASSIGN_OR_RETURN(at::Tensor converted, CallTorch(spec.name, [&] {
                         c10::NoGradGuard no_grad;
                         return w.to(options.device, options.compute_dtype).contiguous();
                       }));
  BAQ_RETURN_IF_ERROR(CheckFinite(converted, spec.name + " loaded weight"));
  return converted;
}

}  // namespace

DecoderBlock::DecoderBlock(int64_t index, int64_t hidden_size, const BlockOptions& options,
                           LinearParams linears)
    : index_(index),
      hidden_size_(hidden_size),
      options_(options),
      specs_(std::move(linears.specs)),
      weights_(std::move(linears.weights)),
      biases_(std::move(linears.biases)) {}

DecoderBlock::~DecoderBlock() = default;

absl::StatusOr<DecoderBlock::LinearParams> DecoderBlock::LoadLinearParams(
    const ModelConfig& config, const SafetensorsCheckpoint& ckpt, int64_t block,
    const BlockOptions& options) {
  LinearParams params;
  params.specs = config.BlockLinearLayers(block);
  for (const LinearLayerSpec& spec : params.specs) {
    at::Tensor weight;
    if (options.linear_weight_loader) {
      BAQ_ASSIGN_OR_RETURN(weight, LoadedWeight(spec, options));
    } else {
      BAQ_ASSIGN_OR_RETURN(weight, LoadCheckpointTensor(ckpt, spec.name + ".weight",
                                                        {spec.out_features, spec.in_features},
                                                        options.device, options.compute_dtype));
    }
    at::Tensor bias;
    if (spec.has_bias) {
      BAQ_ASSIGN_OR_RETURN(bias, LoadCheckpointTensor(ckpt, spec.name + ".bias",
                                                      {spec.out_features}, options.device,
                                                      options.compute_dtype));
    }
    params.weights.push_back(std::move(weight));
    params.biases.push_back(std::move(bias));
  }
  return params;
}

absl::StatusOr<int> DecoderBlock::FindLayer(const std::vector<LinearLayerSpec>& specs,
                                            absl::string_view short_name) {
  for (size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].short_name == short_name) return static_cast<int>(i);
  }
  return absl::InternalError(absl::StrCat("ModelConfig::BlockLinearLayers has no layer \"",
                                          short_name, "\" that the block implementation uses"));
}

absl::StatusOr<DecoderBlock::BlockParams> DecoderBlock::LoadBlockParams(
    const ModelConfig& config, const SafetensorsCheckpoint& ckpt, int64_t block,
    const BlockOptions& options, absl::Span<const absl::string_view> used_layers,
    absl::Span<const absl::string_view> vector_names) {
  BlockParams params;
  BAQ_ASSIGN_OR_RETURN(params.linears, LoadLinearParams(config, ckpt, block, options));
  for (absl::string_view name : used_layers) {
    BAQ_ASSIGN_OR_RETURN(int index, FindLayer(params.linears.specs, name));
    params.layer.push_back(index);
  }
  const std::string prefix = config.BlockPrefix(block);
  for (absl::string_view name : vector_names) {
    BAQ_ASSIGN_OR_RETURN(at::Tensor v,
                         LoadCheckpointTensor(ckpt, absl::StrCat(prefix, name),
                                              {config.hidden_size}, options.device,
                                              options.compute_dtype));
    params.vectors.push_back(std::move(v));
  }
  return params;
}

absl::StatusOr<at::Tensor> DecoderBlock::Forward(const at::Tensor& hidden) {
  if (!hidden.defined() || hidden.dim() != 3 || hidden.size(2) != hidden_size_ ||
      hidden.scalar_type() != options_.compute_dtype ||
      hidden.device() != options_.device) {
    return absl::InvalidArgumentError(absl::StrCat(
        "block ", index_, ": hidden states must be [batch, seq, ", hidden_size_, "] ",
        c10::toString(options_.compute_dtype), " on ", options_.device.str(), ", got ",
        hidden.defined() ? absl::StrCat(ShapeString(hidden.sizes()), " ",
                                        c10::toString(hidden.scalar_type()), " on ",
                                        hidden.device().str())
                         : std::string("an undefined tensor")));
  }
  return CallTorch(absl::StrCat("block ", index_, " forward"), [&] {
    c10::NoGradGuard no_grad;
    return ForwardImpl(hidden);
  });
}

absl::StatusOr<at::Tensor> DecoderBlock::LinearWeight(absl::string_view short_name) const {
  for (size_t i = 0; i < specs_.size(); ++i) {
    if (specs_[i].short_name == short_name) return weights_[i];
  }
  return absl::NotFoundError(
      absl::StrCat("block ", index_, " has no linear layer \"", short_name, "\""));
}

absl::Status DecoderBlock::SetLinearWeight(absl::string_view short_name,
                                           const at::Tensor& weight) {
  for (size_t i = 0; i < specs_.size(); ++i) {
    if (specs_[i].short_name != short_name) continue;
    const LinearLayerSpec& spec = specs_[i];
    if (!weight.defined() || !weight.is_floating_point() ||
        weight.sizes() != at::IntArrayRef({spec.out_features, spec.in_features})) {
      return absl::InvalidArgumentError(absl::StrCat(
          spec.name, ": replacement weight must be a float [", spec.out_features, ", ",
          spec.in_features, "] tensor, got ",
          weight.defined() ? ShapeString(weight.sizes()) : std::string("undefined")));
    }
    BAQ_ASSIGN_OR_RETURN(at::Tensor converted, CallTorch(spec.name, [&] {
                           c10::NoGradGuard no_grad;
                           return weight.to(options_.device, options_.compute_dtype)
                               .contiguous();
                         }));
    BAQ_RETURN_IF_ERROR(CheckFinite(converted, spec.name + " replacement weight"));
    weights_[i] = std::move(converted);
    return absl::OkStatus();
  }
  return absl::NotFoundError(
      absl::StrCat("block ", index_, " has no linear layer \"", short_name, "\""));
}

absl::StatusOr<at::Tensor> DecoderBlock::ApplyLinear(int layer, const at::Tensor& x) {
  if (observer_) {
    const at::Tensor rows = x.reshape({-1, x.size(-1)});
    BAQ_RETURN_IF_ERROR(observer_(specs_[layer], rows));
  }
  return LinearOp(x, weights_[layer], biases_[layer]);
}

at::Tensor DecoderBlock::CausalAttention(const at::Tensor& q, const at::Tensor& k,
                                         const at::Tensor& v, double scale,
                                         int64_t sliding_window, double softcap) const {
  if (IsHalfOnCpu(q)) {
    // The float32 path (oneDNN products), rounded to the forward dtype once:
    // LibTorch 1.13 has no float16 CPU matmul, and its bfloat16 one is slow.
    return CausalAttention(q.to(at::kFloat), k.to(at::kFloat), v.to(at::kFloat), scale,
                           sliding_window, softcap)
        .to(q.scalar_type());
  }
  const int64_t batch = q.size(0), heads = q.size(1), seq = q.size(2), head_dim = q.size(3);
  const int64_t kv_heads = k.size(1);
  const int64_t rep = heads / kv_heads;  // GQA: kv head j serves heads j*rep .. j*rep+rep-1.
#if BAQ_HAVE_SDPA
  if (q.is_cuda() && (q.scalar_type() == at::kBFloat16 || q.scalar_type() == at::kHalf) &&
      sliding_window == 0 && softcap == 0) {
    // Half precision on CUDA (the forward_dtype auto path): transformers'
    // default "sdpa" attention, softmax in float32 inside the kernel. The
    // float32 forward keeps the chunked path below.
    at::Tensor keys = k, values = v;
    if (rep != 1) {  // transformers' repeat_kv.
      keys = k.unsqueeze(2).expand({batch, kv_heads, rep, seq, head_dim})
                 .reshape({batch, heads, seq, head_dim});
      values = v.unsqueeze(2).expand({batch, kv_heads, rep, seq, head_dim})
                   .reshape({batch, heads, seq, head_dim});
    }
    const at::Tensor out = at::scaled_dot_product_attention(
        q, keys, values, /*attn_mask=*/{}, /*dropout_p=*/0.0, /*is_causal=*/true, scale);
    return out.transpose(1, 2).reshape({batch, seq, heads * head_dim});
  }
#endif
  const at::Tensor scaled_q = q * scale;
  const at::Tensor keys = k.contiguous();
  const int64_t chunk = std::max<int64_t>(1, options_.attention_query_chunk);
  const at::TensorOptions index = at::TensorOptions().dtype(at::kLong).device(q.device());
  // Query i (absolute position) must not see key j > i, nor j <= i - window.
  const auto mask_for = [&](int64_t begin, int64_t end) {
    const at::Tensor distance =
        at::arange(begin, end, index).unsqueeze(1) - at::arange(0, end, index).unsqueeze(0);
    at::Tensor mask = distance < 0;
    if (sliding_window > 0) mask = mask.logical_or(distance >= sliding_window);
    return mask;
  };
  const auto softmax = [&](at::Tensor scores, int64_t begin, int64_t end) {
    scores = scores.to(at::kFloat);
    if (softcap > 0) scores = at::tanh(scores / softcap) * softcap;
    scores.masked_fill_(mask_for(begin, end), -std::numeric_limits<float>::infinity());
    return at::softmax(scores, -1).to(q.scalar_type());
  };
  // Queries [begin, end) see keys [0, end) only: later keys are all masked.
  if (UsesOneDnnMatmul(q)) {
    // Per (batch, head) 2-D products through LinearOp(): ATen's CPU bmm goes
    // through the system BLAS, which may be the reference one (Debian).
    at::Tensor out = at::empty({batch, seq, heads, head_dim}, q.options());
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t kvh = 0; kvh < kv_heads; ++kvh) {
        const at::Tensor kh = keys[b][kvh];                  // [seq, d]
        const at::Tensor vt = v[b][kvh].t().contiguous();    // [d, seq]
        for (int64_t begin = 0; begin < seq; begin += chunk) {
          const int64_t end = std::min(seq, begin + chunk);
          const at::Tensor vt_prefix = vt.narrow(1, 0, end).contiguous();
          for (int64_t h = kvh * rep; h < (kvh + 1) * rep; ++h) {
            const at::Tensor scores = LinearOp(scaled_q[b][h].narrow(0, begin, end - begin),
                                               kh.narrow(0, 0, end), at::Tensor());
            out[b].narrow(0, begin, end - begin).select(1, h).copy_(
                LinearOp(softmax(scores, begin, end), vt_prefix, at::Tensor()));
          }
        }
      }
    }
    return out.view({batch, seq, heads * head_dim});
  }
  at::Tensor expanded_keys = keys, values = v;
  if (rep != 1) {  // transformers' repeat_kv.
    expanded_keys = keys.unsqueeze(2).expand({batch, kv_heads, rep, seq, head_dim})
                        .reshape({batch, heads, seq, head_dim});
    values = v.unsqueeze(2).expand({batch, kv_heads, rep, seq, head_dim})
                 .reshape({batch, heads, seq, head_dim});
  }
  std::vector<at::Tensor> outputs;
  for (int64_t begin = 0; begin < seq; begin += chunk) {
    const int64_t end = std::min(seq, begin + chunk);
    const at::Tensor scores = at::matmul(scaled_q.narrow(2, begin, end - begin),
                                         expanded_keys.narrow(2, 0, end).transpose(2, 3));
    outputs.push_back(at::matmul(softmax(scores, begin, end), values.narrow(2, 0, end)));
  }
  const at::Tensor out = outputs.size() == 1 ? outputs[0] : at::cat(outputs, 2);
  return out.transpose(1, 2).reshape({batch, seq, heads * head_dim});
}

bool IsHalfOnCpu(const at::Tensor& x) {
  return x.device().is_cpu() &&
         (x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf);
}

bool UsesOneDnnMatmul(const at::Tensor& x) {
  return x.device().is_cpu() && x.scalar_type() == at::kFloat && at::hasMKLDNN();
}

at::Tensor LinearOp(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  if (IsHalfOnCpu(x)) {
    // As a GPU GEMM in bf16/fp16 does it: float32 products and sums, one
    // rounding of the result (and the float32 oneDNN path is fast on CPU).
    return LinearOp(x.to(at::kFloat), weight.to(at::kFloat),
                    bias.defined() ? bias.to(at::kFloat) : bias)
        .to(x.scalar_type());
  }
  if (!UsesOneDnnMatmul(x)) return at::linear(x, weight, bias);
  // oneDNN inner product: 20-25x faster than ATen's addmm over Debian's
  // reference BLAS, and as fast as MKL where LibTorch has it.
  const at::Tensor rows = x.reshape({-1, x.size(-1)});
  at::Tensor out = at::mkldnn_linear(rows.to_mkldnn(), weight.contiguous(), bias).to_dense();
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = weight.size(0);
  return out.view(shape);
}

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor variance = xf.pow(2).mean({-1}, /*keepdim=*/true);
  return weight * (xf * at::rsqrt(variance + eps)).to(x.scalar_type());
}

at::Tensor GemmaRmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor variance = xf.pow(2).mean({-1}, /*keepdim=*/true);
  return (xf * at::rsqrt(variance + eps) * (1.0 + weight.to(at::kFloat))).to(x.scalar_type());
}

}  // namespace baq::worker

#include "worker/model/decoder_block.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/model/tensor_convert.h"
#include "worker/torch_call.h"

namespace baq::worker {

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
    BAQ_ASSIGN_OR_RETURN(
        at::Tensor weight,
        LoadCheckpointTensor(ckpt, spec.name + ".weight", {spec.out_features, spec.in_features},
                             options.device, options.compute_dtype));
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
  return at::linear(x, weights_[layer], biases_[layer]);
}

at::Tensor DecoderBlock::CausalAttention(const at::Tensor& q, const at::Tensor& k,
                                         const at::Tensor& v, double scale,
                                         int64_t sliding_window) const {
  const int64_t batch = q.size(0), heads = q.size(1), seq = q.size(2), head_dim = q.size(3);
  const int64_t kv_heads = k.size(1);
  at::Tensor keys = k, values = v;
  if (kv_heads != heads) {  // transformers' repeat_kv: kv head j serves heads j*rep..
    const int64_t rep = heads / kv_heads;
    keys = k.unsqueeze(2).expand({batch, kv_heads, rep, seq, head_dim})
               .reshape({batch, heads, seq, head_dim});
    values = v.unsqueeze(2).expand({batch, kv_heads, rep, seq, head_dim})
                 .reshape({batch, heads, seq, head_dim});
  }
  const at::Tensor scaled_q = q * scale;
  const int64_t chunk = std::max<int64_t>(1, options_.attention_query_chunk);
  std::vector<at::Tensor> outputs;
  for (int64_t begin = 0; begin < seq; begin += chunk) {
    const int64_t end = std::min(seq, begin + chunk);
    // Queries [begin, end) see keys [0, end): later keys are all masked.
    const at::Tensor qc = scaled_q.narrow(2, begin, end - begin);
    const at::Tensor kc = keys.narrow(2, 0, end);
    at::Tensor scores = at::matmul(qc, kc.transpose(2, 3)).to(at::kFloat);
    // Query i (absolute position) must not see key j > i, nor j <= i - window.
    const at::TensorOptions index = at::TensorOptions().dtype(at::kLong).device(q.device());
    const at::Tensor distance =
        at::arange(begin, end, index).unsqueeze(1) - at::arange(0, end, index).unsqueeze(0);
    at::Tensor mask = distance < 0;
    if (sliding_window > 0) mask = mask.logical_or(distance >= sliding_window);
    scores.masked_fill_(mask, -std::numeric_limits<float>::infinity());
    const at::Tensor probs = at::softmax(scores, -1).to(q.scalar_type());
    outputs.push_back(at::matmul(probs, values.narrow(2, 0, end)));
  }
  const at::Tensor out = outputs.size() == 1 ? outputs[0] : at::cat(outputs, 2);
  return out.transpose(1, 2).reshape({batch, seq, heads * head_dim});
}

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor variance = xf.pow(2).mean({-1}, /*keepdim=*/true);
  return weight * (xf * at::rsqrt(variance + eps)).to(x.scalar_type());
}

}  // namespace baq::worker

#include "worker/model/model_head.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/model/tensor_convert.h"
#include "worker/torch/torch_call.h"

namespace baq::worker {
namespace {

// transformers' OPTLearnedPositionalEmbedding reserves rows 0 and 1.
constexpr int64_t kOptPositionOffset = 2;

absl::Status CheckIds(const at::Tensor& ids, int64_t vocab, absl::string_view what) {
  BAQ_ASSIGN_OR_RETURN(auto range, CallTorch(what, [&] {
                         return std::make_pair(ids.min().item<int64_t>(),
                                               ids.max().item<int64_t>());
                       }));
  if (range.first < 0 || range.second >= vocab) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ids must be in [0, ", vocab,
                                                   "), got [", range.first, ", ",
                                                   range.second, "]"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<TokenEmbedding>> TokenEmbedding::Load(
    const ModelConfig& config, const SafetensorsCheckpoint& ckpt, const BlockOptions& options) {
  std::unique_ptr<TokenEmbedding> embed(new TokenEmbedding(config, options));
  BAQ_ASSIGN_OR_RETURN(embed->tokens_,
                       LoadCheckpointTensor(ckpt, config.EmbedTokensName(),
                                            {config.vocab_size, config.EmbeddingWidth()},
                                            options.device, options.compute_dtype));
  if (config.HasOptProjections()) {
    BAQ_ASSIGN_OR_RETURN(embed->project_in_,
                         LoadCheckpointTensor(ckpt, config.OptProjectInName(),
                                              {config.hidden_size, config.word_embed_proj_dim},
                                              options.device, options.compute_dtype));
  }
  if (config.family == ModelFamily::kOpt) {
    BAQ_ASSIGN_OR_RETURN(
        embed->positions_,
        LoadCheckpointTensor(ckpt, "model.decoder.embed_positions.weight",
                             {config.max_position_embeddings + kOptPositionOffset,
                              config.hidden_size},
                             options.device, options.compute_dtype));
  }
  return embed;
}

absl::StatusOr<at::Tensor> TokenEmbedding::Embed(const at::Tensor& input_ids) const {
  if (!input_ids.defined() || input_ids.dim() != 2 || input_ids.numel() == 0 ||
      at::isFloatingType(input_ids.scalar_type())) {
    return absl::InvalidArgumentError("input_ids must be a non-empty [batch, seq] integer tensor");
  }
  const int64_t seq = input_ids.size(1);
  if (positions_.defined() && seq > config_.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat("sequence of ", seq,
                                                   " tokens exceeds max_position_embeddings ",
                                                   config_.max_position_embeddings));
  }
  BAQ_RETURN_IF_ERROR(CheckIds(input_ids, config_.vocab_size, "input_ids"));
  return CallTorch("embed", [&] {
    c10::NoGradGuard no_grad;
    at::Tensor hidden = at::embedding(tokens_, input_ids.to(options_.device, at::kLong));
    // OPTDecoder: project_in(embed_tokens(ids)) + embed_positions(...).
    if (project_in_.defined()) hidden = LinearOp(hidden, project_in_, at::Tensor());
    if (positions_.defined()) {
      hidden = hidden + positions_.narrow(0, kOptPositionOffset, seq).unsqueeze(0);
    }
    if (config_.family == ModelFamily::kGemma) {
      // Gemma scales embeddings by sqrt(hidden_size) as a tensor of the
      // model's dtype (Gemma2Model's normalizer, Gemma-3's embed_scale), so
      // the factor is rounded to the checkpoint dtype: 60.0 for 3584 in bf16.
      const double normalizer =
          at::scalar_tensor(std::sqrt(static_cast<double>(config_.hidden_size)),
                            at::TensorOptions().dtype(at::kDouble))
              .to(ToScalarType(config_.dtype))
              .item<double>();
      hidden = hidden * normalizer;
    }
    return hidden;
  });
}

absl::StatusOr<std::unique_ptr<OutputHead>> OutputHead::Load(const ModelConfig& config,
                                                             const SafetensorsCheckpoint& ckpt,
                                                             const BlockOptions& options) {
  std::unique_ptr<OutputHead> head(new OutputHead(config, options));
  const auto load = [&](const std::string& name, std::vector<int64_t> shape) {
    return LoadCheckpointTensor(ckpt, name, shape, options.device, options.compute_dtype);
  };
  const std::string norm = config.FinalNormPrefix();
  // OPT without do_layer_norm_before (opt-350m) has no final norm.
  if (config.HasFinalNorm()) {
    BAQ_ASSIGN_OR_RETURN(head->norm_weight_, load(norm + ".weight", {config.hidden_size}));
    if (config.family == ModelFamily::kOpt) {
      BAQ_ASSIGN_OR_RETURN(head->norm_bias_, load(norm + ".bias", {config.hidden_size}));
    }
  }
  if (config.HasOptProjections()) {
    BAQ_ASSIGN_OR_RETURN(
        head->project_out_,
        load(config.OptProjectOutName(), {config.word_embed_proj_dim, config.hidden_size}));
  }
  BAQ_ASSIGN_OR_RETURN(head->lm_head_,
                       load(config.LmHeadName(), {config.vocab_size, config.EmbeddingWidth()}));
  return head;
}

absl::StatusOr<at::Tensor> OutputHead::Normalize(const at::Tensor& hidden) const {
  if (!hidden.defined() || hidden.dim() < 1 || hidden.size(-1) != config_.hidden_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("final norm input must be [..., ", config_.hidden_size, "]"));
  }
  return CallTorch("final norm", [&] {
    c10::NoGradGuard no_grad;
    at::Tensor x = hidden.to(options_.device, options_.compute_dtype);
    if (norm_weight_.defined()) {
      if (config_.family == ModelFamily::kOpt) {
        x = at::layer_norm(x, {config_.hidden_size}, norm_weight_, norm_bias_,
                           config_.layer_norm_eps);
      } else if (config_.family == ModelFamily::kGemma) {
        x = GemmaRmsNorm(x, norm_weight_, config_.rms_norm_eps);
      } else {
        x = RmsNorm(x, norm_weight_, config_.rms_norm_eps);
      }
    }
    // OPTDecoder applies project_out after the (optional) final norm.
    if (project_out_.defined()) x = LinearOp(x, project_out_, at::Tensor());
    return x;
  });
}

absl::StatusOr<at::Tensor> OutputHead::Logits(const at::Tensor& hidden) const {
  BAQ_ASSIGN_OR_RETURN(at::Tensor normalized, Normalize(hidden));
  return CallTorch("lm head", [&] {
    c10::NoGradGuard no_grad;
    return SoftCap(LinearOp(normalized, lm_head_, at::Tensor()));
  });
}

absl::StatusOr<at::Tensor> OutputHead::TokenNll(const at::Tensor& normalized,
                                                const at::Tensor& targets,
                                                int64_t chunk_rows) const {
  if (!normalized.defined() || !targets.defined() || normalized.dim() != 2 ||
      normalized.size(1) != config_.EmbeddingWidth() || targets.dim() != 1 ||
      targets.size(0) != normalized.size(0) || at::isFloatingType(targets.scalar_type())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TokenNll needs normalized [rows, ", config_.EmbeddingWidth(),
        "] and integer targets [rows]"));
  }
  if (targets.numel() > 0) BAQ_RETURN_IF_ERROR(CheckIds(targets, config_.vocab_size, "targets"));
  return CallTorch("token nll", [&] {
    c10::NoGradGuard no_grad;
    const int64_t rows = normalized.size(0);
    const int64_t chunk = std::max<int64_t>(1, chunk_rows);
    const at::Tensor x = normalized.to(options_.device, options_.compute_dtype);
    const at::Tensor t = targets.to(options_.device, at::kLong);
    at::Tensor nll = at::empty({rows}, at::TensorOptions().dtype(at::kFloat).device(x.device()));
    for (int64_t begin = 0; begin < rows; begin += chunk) {
      const int64_t n = std::min(chunk, rows - begin);
      // Logits in the compute dtype (as transformers), log-softmax in float32
      // (as torch's CrossEntropyLoss on upcast logits).
      const at::Tensor logits = SoftCap(LinearOp(x.narrow(0, begin, n), lm_head_, at::Tensor()));
      const at::Tensor logp = at::log_softmax(logits.to(at::kFloat), -1);
      nll.narrow(0, begin, n).copy_(-logp.gather(1, t.narrow(0, begin, n).unsqueeze(1)).squeeze(1));
    }
    return nll;
  });
}

at::Tensor OutputHead::SoftCap(const at::Tensor& logits) const {
  const double cap = config_.final_logit_softcapping;
  if (cap <= 0) return logits;
  return at::tanh(logits / cap) * cap;  // Gemma-2's final_logit_softcapping.
}

}  // namespace baq::worker

// The decoder families of ModelConfig (model_config.h): LLaMA, Mistral,
// Qwen2/3, Phi-3, Gemma-2/3 and the MoE families, with transformers' defaults.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/config_fields.h"
#include "common/rope_parameters.h"
#include "common/status_macros.h"

namespace baq::config_internal {
namespace {

// Per-family defaults of transformers' config classes for the keys a
// config.json may omit.
struct FamilyDefaults {
  int64_t max_positions;
  double rope_theta;
  std::optional<int64_t> head_dim;  // nullopt: hidden_size / heads.
  bool tie_embeddings;
};

FamilyDefaults DefaultsFor(absl::string_view t) {
  if (t == "llama") return {2048, 1e4, std::nullopt, false};
  if (t == "mistral") return {4096 * 32, 1e4, std::nullopt, false};
  if (t == "mixtral") return {4096 * 32, 1e6, std::nullopt, false};
  if (t == "qwen2" || t == "qwen2_moe") return {32768, 1e4, std::nullopt, false};
  if (t == "qwen3" || t == "qwen3_moe") return {32768, 1e4, 128, false};
  if (t == "phi3") return {4096, 1e4, std::nullopt, false};
  if (t == "gemma2") return {8192, 1e4, 256, true};
  return {131072, 1e6, 256, true};  // gemma3_text
}

absl::StatusOr<std::vector<int64_t>> IntList(const Fields& f, absl::string_view key) {
  std::vector<int64_t> out;
  const Json* v = f.Find(key);
  if (v == nullptr) return out;
  if (!v->is_array()) return f.Error(key, "must be a list of integers");
  for (const Json& x : *v) {
    if (!x.is_number_integer()) return f.Error(key, "must be a list of integers");
    out.push_back(x.get<int64_t>());
  }
  return out;
}

// Sliding-window layers: "layer_types" when present (transformers 5; Gemma),
// else the family's rule.
absl::Status ParseSlidingLayers(const Fields& f, ModelConfig& c) {
  const bool gemma2 = c.model_type == "gemma2", gemma3 = c.model_type == "gemma3_text";
  c.sliding_layers.assign(static_cast<size_t>(c.num_layers), c.sliding_window > 0);
  if (const Json* types = f.Find("layer_types"); types != nullptr) {
    if (!types->is_array() || static_cast<int64_t>(types->size()) != c.num_layers) {
      return f.Error("layer_types", absl::StrCat("must list ", c.num_layers, " layer types"));
    }
    for (int64_t i = 0; i < c.num_layers; ++i) {
      const Json& t = (*types)[static_cast<size_t>(i)];
      // Compared as std::string: json == "literal" builds a temporary json per comparison,
      // which g++ 13 (the GPU machine) flags with a false -Warray-bounds.
      const std::string type = t.is_string() ? t.get<std::string>() : std::string();
      if (type != "sliding_attention" && type != "full_attention") {
        return Unsupported(f, "layer_types", absl::StrCat("entry ", t.dump()));
      }
      c.sliding_layers[static_cast<size_t>(i)] = c.sliding_window > 0 && type == "sliding_attention";
    }
    return absl::OkStatus();
  }
  if (gemma2 || gemma3) {
    int64_t pattern = 2;  // Gemma-2: even layers slide.
    if (gemma3) {
      BAQ_ASSIGN_OR_RETURN(pattern, f.PositiveInt("sliding_window_pattern", 6));
    }
    for (int64_t i = 0; i < c.num_layers; ++i) {
      c.sliding_layers[static_cast<size_t>(i)] = c.sliding_window > 0 && (i + 1) % pattern != 0;
    }
  } else if (absl::StartsWith(c.model_type, "qwen")) {
    // Qwen: the window applies from layer max_window_layers on.
    BAQ_ASSIGN_OR_RETURN(int64_t first, f.Int("max_window_layers", 28));
    for (int64_t i = 0; i < c.num_layers; ++i) {
      c.sliding_layers[static_cast<size_t>(i)] = c.sliding_window > 0 && i >= first;
    }
  }
  return absl::OkStatus();
}

absl::Status ParseMoe(const Fields& f, ModelConfig& c) {
  if (c.model_type == "mixtral") {
    BAQ_ASSIGN_OR_RETURN(c.num_experts, f.PositiveInt("num_local_experts", 8));
    BAQ_ASSIGN_OR_RETURN(c.num_experts_per_tok, f.PositiveInt("num_experts_per_tok", 2));
    c.moe_intermediate_size = c.intermediate_size;
    c.norm_topk_prob = true;  // MixtralSparseMoeBlock always renormalizes.
  } else {
    const bool qwen2 = c.model_type == "qwen2_moe";
    // transformers 5 writes Qwen3-MoE's count as num_local_experts (4.x and
    // the hub's configs: num_experts).
    const char* experts_key = f.Find("num_experts") == nullptr && f.Find("num_local_experts")
                                  ? "num_local_experts"
                                  : "num_experts";
    BAQ_ASSIGN_OR_RETURN(c.num_experts, f.PositiveInt(experts_key, qwen2 ? 60 : 128));
    BAQ_ASSIGN_OR_RETURN(c.num_experts_per_tok, f.PositiveInt("num_experts_per_tok", qwen2 ? 4 : 8));
    BAQ_ASSIGN_OR_RETURN(c.moe_intermediate_size,
                         f.PositiveInt("moe_intermediate_size", qwen2 ? 1408 : 768));
    BAQ_ASSIGN_OR_RETURN(c.norm_topk_prob, f.Bool("norm_topk_prob", false));
    if (qwen2) {
      BAQ_ASSIGN_OR_RETURN(c.shared_expert_intermediate_size,
                           f.Int("shared_expert_intermediate_size", 5632));
      if (c.shared_expert_intermediate_size < 0) {
        return f.Error("shared_expert_intermediate_size", "must not be negative");
      }
    }
    BAQ_ASSIGN_OR_RETURN(c.decoder_sparse_step, f.PositiveInt("decoder_sparse_step", 1));
    BAQ_ASSIGN_OR_RETURN(c.mlp_only_layers, IntList(f, "mlp_only_layers"));
  }
  if (c.num_experts_per_tok > c.num_experts) {
    return f.Error("num_experts_per_tok",
                   absl::StrCat("= ", c.num_experts_per_tok, " exceeds the ", c.num_experts,
                                " experts"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseDecoderFamily(const Fields& f, const Json& json, ModelConfig& c) {
  const absl::string_view t = c.model_type;
  const bool is_llama = t == "llama", is_qwen2 = t == "qwen2" || t == "qwen2_moe";
  const bool is_qwen3 = t == "qwen3" || t == "qwen3_moe", is_phi3 = t == "phi3";
  const bool is_gemma = t == "gemma2" || t == "gemma3_text";
  const bool is_moe = t == "mixtral" || t == "qwen2_moe" || t == "qwen3_moe";
  const FamilyDefaults d = DefaultsFor(t);
  c.family = is_gemma ? ModelFamily::kGemma : ModelFamily::kLlama;
  BAQ_ASSIGN_OR_RETURN(c.intermediate_size, f.PositiveInt("intermediate_size"));
  BAQ_ASSIGN_OR_RETURN(c.max_position_embeddings,
                       f.PositiveInt("max_position_embeddings", d.max_positions));
  BAQ_ASSIGN_OR_RETURN(c.tie_word_embeddings, f.Bool("tie_word_embeddings", d.tie_embeddings));
  BAQ_ASSIGN_OR_RETURN(c.num_key_value_heads,
                       f.PositiveInt("num_key_value_heads", c.num_attention_heads));
  if (is_phi3) {  // Phi3Config has no head_dim.
    c.head_dim = c.hidden_size / c.num_attention_heads;
  } else {
    BAQ_ASSIGN_OR_RETURN(c.head_dim, f.PositiveInt("head_dim", d.head_dim.value_or(
                                                                   c.hidden_size /
                                                                   c.num_attention_heads)));
  }
  BAQ_ASSIGN_OR_RETURN(c.rms_norm_eps, f.Double("rms_norm_eps", is_phi3 ? 1e-5 : 1e-6));
  if (!(c.rms_norm_eps > 0)) return f.Error("rms_norm_eps", "must be positive");
  const char* act_key = is_gemma && f.Find("hidden_activation") != nullptr ? "hidden_activation"
                                                                           : "hidden_act";
  BAQ_ASSIGN_OR_RETURN(c.hidden_act,
                       f.String(act_key, std::string(is_gemma ? "gelu_pytorch_tanh" : "silu")));
  if (c.hidden_act != (is_gemma ? "gelu_pytorch_tanh" : "silu")) {
    return Unsupported(f, act_key, absl::StrCat("\"", c.hidden_act, "\""));
  }

  // Sliding window: Mistral/Mixtral/Phi-3/Gemma when the key is set, Qwen
  // only with use_sliding_window.
  c.sliding_window = 0;
  if (!is_llama) {
    BAQ_ASSIGN_OR_RETURN(bool use_sw, f.Bool("use_sliding_window", !is_qwen2 && !is_qwen3));
    if (use_sw) {
      BAQ_ASSIGN_OR_RETURN(c.sliding_window, f.Int("sliding_window", is_gemma ? 4096 : 0));
    }
    if (c.sliding_window < 0) return f.Error("sliding_window", "must not be negative");
  }
  BAQ_RETURN_IF_ERROR(ParseSlidingLayers(f, c));

  // RoPE (common/rope_parameters.h). Only Phi-3 applies partial rotary in
  // its attention; elsewhere transformers' default RoPE ignores the factor.
  const bool gemma3 = t == "gemma3_text";
  BAQ_ASSIGN_OR_RETURN(c.rope, ParseRopeParameters(json, t, gemma3 ? "full_attention" : "",
                                                   d.rope_theta, c.head_dim,
                                                   c.max_position_embeddings, f.source()));
  c.rope_local = c.rope;
  if (gemma3) {
    BAQ_ASSIGN_OR_RETURN(c.rope_local,
                         ParseRopeParameters(json, t, "sliding_attention", 1e4, c.head_dim,
                                             c.max_position_embeddings, f.source()));
  }
  if (!is_phi3 && (c.rope.rotary_dim != c.head_dim || c.rope_local.rotary_dim != c.head_dim)) {
    return Unsupported(f, "partial_rotary_factor", absl::StrCat("for ", t));
  }

  // Biases: LlamaAttention uses attention_bias for q/k/v and o; Qwen2 always
  // has q/k/v biases and none on o_proj; Qwen3 has attention_bias (q/k/v/o).
  c.attention_bias = c.o_proj_bias = c.mlp_bias = false;
  if (is_llama) {
    BAQ_ASSIGN_OR_RETURN(c.attention_bias, f.Bool("attention_bias", false));
    c.o_proj_bias = c.attention_bias;
    BAQ_ASSIGN_OR_RETURN(c.mlp_bias, f.Bool("mlp_bias", false));
  } else if (is_qwen2) {
    BAQ_ASSIGN_OR_RETURN(c.attention_bias, f.Bool("qkv_bias", true));
  } else if (is_qwen3) {
    BAQ_ASSIGN_OR_RETURN(c.attention_bias, f.Bool("attention_bias", false));
    c.o_proj_bias = c.attention_bias;
  } else if (is_gemma) {
    BAQ_ASSIGN_OR_RETURN(c.attention_bias, f.Bool("attention_bias", false));
    c.o_proj_bias = c.attention_bias;
  }
  c.qk_norm = is_qwen3 || gemma3;
  c.fused_qkv = is_phi3;

  if (is_gemma) {
    BAQ_ASSIGN_OR_RETURN(c.query_pre_attn_scalar, f.Double("query_pre_attn_scalar", 256));
    if (!(c.query_pre_attn_scalar > 0)) return f.Error("query_pre_attn_scalar", "must be positive");
    // null (Gemma-3's default) turns a soft-cap off.
    BAQ_ASSIGN_OR_RETURN(c.attn_logit_softcapping,
                         f.Double("attn_logit_softcapping", gemma3 ? 0 : 50));
    BAQ_ASSIGN_OR_RETURN(c.final_logit_softcapping,
                         f.Double("final_logit_softcapping", gemma3 ? 0 : 30));
    if (c.attn_logit_softcapping < 0 || c.final_logit_softcapping < 0) {
      return f.Error("attn_logit_softcapping", "soft-caps must not be negative");
    }
  }
  if (is_moe) BAQ_RETURN_IF_ERROR(ParseMoe(f, c));
  return absl::OkStatus();
}

}  // namespace baq::config_internal

#include "common/model_config.h"

#include <cstdint>
#include <limits>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "common/file_contents.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace baq {
namespace {

using Json = nlohmann::json;

constexpr absl::string_view kSupportedTypes =
    "opt, llama, mistral, qwen2, qwen3, phi3, gemma2, gemma3_text, mixtral, qwen2_moe, qwen3_moe";

bool IsDecoderType(absl::string_view t) {
  for (absl::string_view s : {"llama", "mistral", "qwen2", "qwen3", "phi3", "gemma2",
                              "gemma3_text", "mixtral", "qwen2_moe", "qwen3_moe"}) {
    if (t == s) return true;
  }
  return false;
}

// Typed access to the fields of one config.json. Every error names the file
// and the field. A JSON null counts as absent: transformers writes
// `"head_dim": null` or `"num_key_value_heads": null` for "use the default".
class Fields {
 public:
  Fields(const Json& json, absl::string_view source) : json_(json), source_(source) {}

  const Json* Find(absl::string_view key) const {
    auto it = json_.find(std::string(key));
    if (it == json_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  absl::Status Error(absl::string_view key, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": field \"", key, "\" ", what));
  }

  absl::StatusOr<int64_t> Int(absl::string_view key, std::optional<int64_t> dflt) const {
    const Json* v = Find(key);
    if (v == nullptr) {
      if (dflt.has_value()) return *dflt;
      return Error(key, "is missing");
    }
    if (v->is_number_unsigned()) {
      if (v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Error(key, "is out of range");
      }
      return static_cast<int64_t>(v->get<uint64_t>());
    }
    if (!v->is_number_integer())
      return Error(key, absl::StrCat("must be an integer, got ", v->dump()));
    return v->get<int64_t>();
  }

  absl::StatusOr<int64_t> PositiveInt(absl::string_view key,
                                      std::optional<int64_t> dflt = std::nullopt) const {
    BAQ_ASSIGN_OR_RETURN(int64_t value, Int(key, dflt));
    if (value <= 0) return Error(key, absl::StrCat("must be positive, got ", value));
    return value;
  }

  absl::StatusOr<double> Double(absl::string_view key, double dflt) const {
    const Json* v = Find(key);
    if (v == nullptr) return dflt;
    if (!v->is_number()) return Error(key, absl::StrCat("must be a number, got ", v->dump()));
    return v->get<double>();
  }

  absl::StatusOr<bool> Bool(absl::string_view key, bool dflt) const {
    const Json* v = Find(key);
    if (v == nullptr) return dflt;
    if (!v->is_boolean()) return Error(key, absl::StrCat("must be a boolean, got ", v->dump()));
    return v->get<bool>();
  }

  absl::StatusOr<std::string> String(absl::string_view key, std::optional<std::string> dflt) const {
    const Json* v = Find(key);
    if (v == nullptr) {
      if (dflt.has_value()) return *dflt;
      return Error(key, "is missing");
    }
    if (!v->is_string()) return Error(key, absl::StrCat("must be a string, got ", v->dump()));
    return v->get<std::string>();
  }

  absl::string_view source() const { return source_; }

 private:
  const Json& json_;
  const absl::string_view source_;
};

// "torch_dtype" (transformers < 4.56) or "dtype" (newer). Absent means the
// checkpoint was saved without one; transformers then loads float32.
absl::StatusOr<DType> ParseTorchDType(const Fields& f) {
  const char* key = f.Find("dtype") != nullptr ? "dtype" : "torch_dtype";
  BAQ_ASSIGN_OR_RETURN(std::string name, f.String(key, std::string("float32")));
  if (name == "float16" || name == "torch.float16") return DType::kF16;
  if (name == "bfloat16" || name == "torch.bfloat16") return DType::kBF16;
  if (name == "float32" || name == "torch.float32") return DType::kF32;
  return f.Error(key, absl::StrCat("has unsupported dtype \"", name,
                                   "\" (supported: float16, bfloat16, float32)"));
}

absl::Status Unsupported(const Fields& f, absl::string_view key, absl::string_view what) {
  return absl::UnimplementedError(
      absl::StrCat(f.source(), ": field \"", key, "\" ", what, " is not supported"));
}

absl::Status ParseOpt(const Fields& f, ModelConfig& c) {
  c.family = ModelFamily::kOpt;
  BAQ_ASSIGN_OR_RETURN(c.intermediate_size, f.PositiveInt("ffn_dim"));
  BAQ_ASSIGN_OR_RETURN(c.max_position_embeddings, f.PositiveInt("max_position_embeddings", 2048));
  BAQ_ASSIGN_OR_RETURN(c.tie_word_embeddings, f.Bool("tie_word_embeddings", true));
  BAQ_ASSIGN_OR_RETURN(c.do_layer_norm_before, f.Bool("do_layer_norm_before", true));
  BAQ_ASSIGN_OR_RETURN(c.enable_bias, f.Bool("enable_bias", true));
  BAQ_ASSIGN_OR_RETURN(c.word_embed_proj_dim, f.PositiveInt("word_embed_proj_dim", c.hidden_size));
  if (c.word_embed_proj_dim != c.hidden_size) {
    return Unsupported(f, "word_embed_proj_dim",
                       absl::StrCat("= ", c.word_embed_proj_dim, " != hidden_size ", c.hidden_size,
                                    " (project_in/project_out)"));
  }
  BAQ_ASSIGN_OR_RETURN(c.hidden_act, f.String("activation_function", std::string("relu")));
  if (c.hidden_act != "relu") {
    return Unsupported(f, "activation_function", absl::StrCat("\"", c.hidden_act, "\""));
  }
  BAQ_ASSIGN_OR_RETURN(bool remove_final_ln, f.Bool("_remove_final_layer_norm", false));
  if (remove_final_ln) return Unsupported(f, "_remove_final_layer_norm", "= true");
  BAQ_ASSIGN_OR_RETURN(c.layer_norm_eps, f.Double("layer_norm_eps", 1e-5));
  c.num_key_value_heads = c.num_attention_heads;
  c.head_dim = c.hidden_size / c.num_attention_heads;
  c.attention_bias = c.o_proj_bias = c.mlp_bias = c.enable_bias;
  return absl::OkStatus();
}

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
      if (!t.is_string() || (t != "sliding_attention" && t != "full_attention")) {
        return Unsupported(f, "layer_types", absl::StrCat("entry ", t.dump()));
      }
      c.sliding_layers[static_cast<size_t>(i)] = c.sliding_window > 0 && t == "sliding_attention";
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

absl::Status Validate(const Fields& f, const ModelConfig& c) {
  // An explicit head_dim (Mistral-Nemo, Qwen3, Gemma) need not divide hidden.
  const bool explicit_head_dim = f.Find("head_dim") != nullptr && c.model_type != "phi3";
  if (!explicit_head_dim && c.hidden_size % c.num_attention_heads != 0) {
    return f.Error(
        "num_attention_heads",
        absl::StrCat("= ", c.num_attention_heads, " does not divide hidden_size ", c.hidden_size));
  }
  if (c.num_key_value_heads > 0 && c.num_attention_heads % c.num_key_value_heads != 0) {
    return f.Error("num_key_value_heads",
                   absl::StrCat("= ", c.num_key_value_heads,
                                " does not divide num_attention_heads ", c.num_attention_heads));
  }
  return absl::OkStatus();
}

LinearLayerSpec Linear(const ModelConfig& c, int64_t block, absl::string_view short_name,
                       int64_t in, int64_t out, bool bias, int group) {
  LinearLayerSpec spec;
  spec.short_name = std::string(short_name);
  spec.name = absl::StrCat(c.BlockPrefix(block), short_name);
  spec.in_features = in;
  spec.out_features = out;
  spec.has_bias = bias;
  spec.input_group = group;
  return spec;
}

}  // namespace

std::string ModelConfig::BlockPrefix(int64_t block) const {
  return absl::StrCat(family == ModelFamily::kOpt ? "model.decoder.layers." : "model.layers.",
                      block, ".");
}

std::string ModelConfig::EmbedTokensName() const {
  return family == ModelFamily::kOpt ? "model.decoder.embed_tokens.weight"
                                     : "model.embed_tokens.weight";
}

std::string ModelConfig::FinalNormPrefix() const {
  return family == ModelFamily::kOpt ? "model.decoder.final_layer_norm" : "model.norm";
}

std::string ModelConfig::LmHeadName() const {
  return tie_word_embeddings ? EmbedTokensName() : "lm_head.weight";
}

bool ModelConfig::IsSlidingLayer(int64_t block) const {
  if (sliding_window <= 0) return false;
  if (sliding_layers.empty()) return true;
  return block >= 0 && block < static_cast<int64_t>(sliding_layers.size()) &&
         sliding_layers[static_cast<size_t>(block)];
}

bool ModelConfig::IsMoeLayer(int64_t block) const {
  if (num_experts <= 0) return false;
  for (int64_t l : mlp_only_layers) {
    if (l == block) return false;
  }
  // transformers' Qwen-MoE rule: (layer_idx + 1) % decoder_sparse_step == 0.
  return decoder_sparse_step <= 1 || (block + 1) % decoder_sparse_step == 0;
}

std::string ModelConfig::MoePrefix() const {
  return model_type == "mixtral" ? "block_sparse_moe" : "mlp";
}

std::vector<LinearLayerSpec> ModelConfig::BlockLinearLayers(int64_t block) const {
  const int64_t h = hidden_size;
  const int64_t f = intermediate_size;
  if (family == ModelFamily::kOpt) {
    const bool b = enable_bias;
    return {Linear(*this, block, "self_attn.q_proj", h, h, b, 0),
            Linear(*this, block, "self_attn.k_proj", h, h, b, 0),
            Linear(*this, block, "self_attn.v_proj", h, h, b, 0),
            Linear(*this, block, "self_attn.out_proj", h, h, b, 1),
            Linear(*this, block, "fc1", h, f, b, 2),
            Linear(*this, block, "fc2", f, h, b, 3)};
  }
  const int64_t q = num_attention_heads * head_dim;
  const int64_t kv = num_key_value_heads * head_dim;
  std::vector<LinearLayerSpec> layers;
  if (fused_qkv) {  // Phi-3: one Hessian per input, as the fused linears they are.
    return {Linear(*this, block, "self_attn.qkv_proj", h, q + 2 * kv, attention_bias, 0),
            Linear(*this, block, "self_attn.o_proj", q, h, o_proj_bias, 1),
            Linear(*this, block, "mlp.gate_up_proj", h, 2 * f, mlp_bias, 2),
            Linear(*this, block, "mlp.down_proj", f, h, mlp_bias, 3)};
  }
  layers = {Linear(*this, block, "self_attn.q_proj", h, q, attention_bias, 0),
            Linear(*this, block, "self_attn.k_proj", h, kv, attention_bias, 0),
            Linear(*this, block, "self_attn.v_proj", h, kv, attention_bias, 0),
            Linear(*this, block, "self_attn.o_proj", q, h, o_proj_bias, 1)};
  if (!IsMoeLayer(block)) {
    layers.push_back(Linear(*this, block, "mlp.gate_proj", h, f, mlp_bias, 2));
    layers.push_back(Linear(*this, block, "mlp.up_proj", h, f, mlp_bias, 2));
    layers.push_back(Linear(*this, block, "mlp.down_proj", f, h, mlp_bias, 3));
    return layers;
  }
  // Each expert reads only the tokens routed to it: its own input groups.
  const bool mixtral = model_type == "mixtral";
  const std::string moe = MoePrefix();
  const int64_t e_f = moe_intermediate_size;
  int group = 2;
  for (int64_t e = 0; e < num_experts; ++e, group += 2) {
    const std::string p = absl::StrCat(moe, ".experts.", e, ".");
    layers.push_back(Linear(*this, block, p + (mixtral ? "w1" : "gate_proj"), h, e_f, false, group));
    layers.push_back(Linear(*this, block, p + (mixtral ? "w3" : "up_proj"), h, e_f, false, group));
    layers.push_back(
        Linear(*this, block, p + (mixtral ? "w2" : "down_proj"), e_f, h, false, group + 1));
  }
  if (shared_expert_intermediate_size > 0) {
    const int64_t s_f = shared_expert_intermediate_size;
    layers.push_back(Linear(*this, block, "mlp.shared_expert.gate_proj", h, s_f, false, group));
    layers.push_back(Linear(*this, block, "mlp.shared_expert.up_proj", h, s_f, false, group));
    layers.push_back(Linear(*this, block, "mlp.shared_expert.down_proj", s_f, h, false, group + 1));
  }
  return layers;
}

int64_t ModelConfig::QuantizableElements() const {
  int64_t total = 0;
  for (int64_t b = 0; b < num_layers; ++b) {
    for (const LinearLayerSpec& l : BlockLinearLayers(b)) total += l.in_features * l.out_features;
  }
  return total;
}

absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text,
                                             absl::string_view source) {
  const Json json = Json::parse(json_text.begin(), json_text.end(), /*cb=*/nullptr,
                                /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON"));
  }
  if (!json.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": top level must be a JSON object"));
  }
  const Fields f(json, source);
  ModelConfig c;
  BAQ_ASSIGN_OR_RETURN(c.model_type, f.String("model_type", std::nullopt));
  const bool is_opt = c.model_type == "opt";
  if (f.Find("vision_config") != nullptr || f.Find("vision_tower") != nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": model_type \"", c.model_type,
        "\" has a vision tower (vision_config); baq quantizes decoder-only text models: "
        "quantize its text model (e.g. gemma3_text) on its own"));
  }
  BAQ_ASSIGN_OR_RETURN(bool encoder_decoder, f.Bool("is_encoder_decoder", false));
  if (encoder_decoder) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": model_type \"", c.model_type,
        "\" is an encoder-decoder model (is_encoder_decoder); baq quantizes decoder-only LMs"));
  }
  if (!is_opt && !IsDecoderType(c.model_type)) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": unsupported model_type \"",
                                                   c.model_type, "\" (supported: ", kSupportedTypes,
                                                   ")"));
  }
  BAQ_ASSIGN_OR_RETURN(c.dtype, ParseTorchDType(f));
  BAQ_ASSIGN_OR_RETURN(c.vocab_size, f.PositiveInt("vocab_size"));
  BAQ_ASSIGN_OR_RETURN(c.hidden_size, f.PositiveInt("hidden_size"));
  BAQ_ASSIGN_OR_RETURN(c.num_layers, f.PositiveInt("num_hidden_layers"));
  BAQ_ASSIGN_OR_RETURN(c.num_attention_heads, f.PositiveInt("num_attention_heads"));
  BAQ_RETURN_IF_ERROR(Validate(f, c));
  BAQ_RETURN_IF_ERROR(is_opt ? ParseOpt(f, c) : ParseDecoderFamily(f, json, c));
  BAQ_RETURN_IF_ERROR(Validate(f, c));
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir) {
  const std::string path = absl::StrCat(model_dir, "/config.json");
  BAQ_ASSIGN_OR_RETURN(const std::string text, ReadFileContents(path));
  return ParseModelConfig(text, path);
}

}  // namespace baq

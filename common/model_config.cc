#include "common/model_config.h"

#include <cstdint>
#include <limits>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "common/config_fields.h"
#include "common/file_contents.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace baq {
namespace {

using Json = nlohmann::json;
using config_internal::Fields;
using config_internal::ParseDecoderFamily;
using config_internal::Unsupported;

constexpr absl::string_view kSupportedTypes =
    "opt, llama, mistral, qwen2, qwen3, phi3, gemma2, gemma3_text, mixtral, qwen2_moe, qwen3_moe";

bool IsDecoderType(absl::string_view t) {
  for (absl::string_view s : {"llama", "mistral", "qwen2", "qwen3", "phi3", "gemma2",
                              "gemma3_text", "mixtral", "qwen2_moe", "qwen3_moe"}) {
    if (t == s) return true;
  }
  return false;
}

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

absl::Status ParseOpt(const Fields& f, ModelConfig& c) {
  c.family = ModelFamily::kOpt;
  BAQ_ASSIGN_OR_RETURN(c.intermediate_size, f.PositiveInt("ffn_dim"));
  BAQ_ASSIGN_OR_RETURN(c.max_position_embeddings, f.PositiveInt("max_position_embeddings", 2048));
  BAQ_ASSIGN_OR_RETURN(c.tie_word_embeddings, f.Bool("tie_word_embeddings", true));
  BAQ_ASSIGN_OR_RETURN(c.do_layer_norm_before, f.Bool("do_layer_norm_before", true));
  BAQ_ASSIGN_OR_RETURN(c.enable_bias, f.Bool("enable_bias", true));
  // word_embed_proj_dim != hidden_size adds project_in/project_out (opt-350m).
  BAQ_ASSIGN_OR_RETURN(c.word_embed_proj_dim, f.PositiveInt("word_embed_proj_dim", c.hidden_size));
  BAQ_ASSIGN_OR_RETURN(c.hidden_act, f.String("activation_function", std::string("relu")));
  if (c.hidden_act != "relu") {
    return Unsupported(f, "activation_function", absl::StrCat("\"", c.hidden_act, "\""));
  }
  BAQ_ASSIGN_OR_RETURN(c.remove_final_layer_norm, f.Bool("_remove_final_layer_norm", false));
  BAQ_ASSIGN_OR_RETURN(bool affine, f.Bool("layer_norm_elementwise_affine", true));
  if (!affine) return Unsupported(f, "layer_norm_elementwise_affine", "= false");
  BAQ_ASSIGN_OR_RETURN(c.layer_norm_eps, f.Double("layer_norm_eps", 1e-5));
  c.num_key_value_heads = c.num_attention_heads;
  c.head_dim = c.hidden_size / c.num_attention_heads;
  c.attention_bias = c.o_proj_bias = c.mlp_bias = c.enable_bias;
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
  spec.tie_group = group;
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

int64_t ModelConfig::EmbeddingWidth() const {
  return family == ModelFamily::kOpt ? word_embed_proj_dim : hidden_size;
}

bool ModelConfig::HasOptProjections() const {
  return family == ModelFamily::kOpt && word_embed_proj_dim != hidden_size;
}

std::string ModelConfig::OptProjectInName() const { return "model.decoder.project_in.weight"; }

std::string ModelConfig::OptProjectOutName() const { return "model.decoder.project_out.weight"; }

bool ModelConfig::HasFinalNorm() const {
  return family != ModelFamily::kOpt || (do_layer_norm_before && !remove_final_layer_norm);
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
  const size_t first_expert_layer = layers.size();
  for (int64_t e = 0; e < num_experts; ++e, group += 2) {
    const std::string p = absl::StrCat(moe, ".experts.", e, ".");
    layers.push_back(Linear(*this, block, p + (mixtral ? "w1" : "gate_proj"), h, e_f, false, group));
    layers.push_back(Linear(*this, block, p + (mixtral ? "w3" : "up_proj"), h, e_f, false, group));
    layers.push_back(
        Linear(*this, block, p + (mixtral ? "w2" : "down_proj"), e_f, h, false, group + 1));
  }
  for (size_t i = first_expert_layer; i < layers.size(); ++i) layers[i].tie_group = 2;
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

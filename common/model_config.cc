#include "common/model_config.h"

#include <cstdint>
#include <limits>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_contents.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace baq {
namespace {

using Json = nlohmann::json;

constexpr absl::string_view kSupportedTypes = "opt, llama, mistral, qwen2";

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

absl::Status ParseLlamaFamily(const Fields& f, ModelConfig& c) {
  c.family = ModelFamily::kLlama;
  const bool is_llama = c.model_type == "llama";
  const bool is_qwen2 = c.model_type == "qwen2";
  // transformers' per-family defaults (LlamaConfig, MistralConfig,
  // Qwen2Config).
  const int64_t default_positions = is_llama ? 2048 : is_qwen2 ? 32768 : 4096 * 32;
  BAQ_ASSIGN_OR_RETURN(c.intermediate_size, f.PositiveInt("intermediate_size"));
  BAQ_ASSIGN_OR_RETURN(c.max_position_embeddings,
                       f.PositiveInt("max_position_embeddings", default_positions));
  BAQ_ASSIGN_OR_RETURN(c.tie_word_embeddings, f.Bool("tie_word_embeddings", false));
  BAQ_ASSIGN_OR_RETURN(c.num_key_value_heads,
                       f.PositiveInt("num_key_value_heads", c.num_attention_heads));
  BAQ_ASSIGN_OR_RETURN(c.head_dim,
                       f.PositiveInt("head_dim", c.hidden_size / c.num_attention_heads));
  BAQ_ASSIGN_OR_RETURN(c.rms_norm_eps, f.Double("rms_norm_eps", 1e-6));
  if (!(c.rms_norm_eps > 0)) return f.Error("rms_norm_eps", "must be positive");
  BAQ_ASSIGN_OR_RETURN(c.hidden_act, f.String("hidden_act", std::string("silu")));
  if (c.hidden_act != "silu") {
    return Unsupported(f, "hidden_act", absl::StrCat("\"", c.hidden_act, "\""));
  }

  // RoPE: transformers 5 nests theta and type in "rope_parameters"; older
  // configs have a top-level "rope_theta" and an optional "rope_scaling".
  c.rope_theta = 10000.0;
  c.rope_type = "default";
  BAQ_ASSIGN_OR_RETURN(c.rope_theta, f.Double("rope_theta", c.rope_theta));
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    const Json* rope = f.Find(key);
    if (rope == nullptr) continue;
    if (!rope->is_object()) return f.Error(key, "must be an object");
    Fields rf(*rope, absl::StrCat(f.source(), ": ", key));
    BAQ_ASSIGN_OR_RETURN(c.rope_theta, rf.Double("rope_theta", c.rope_theta));
    const char* type_key = rf.Find("rope_type") != nullptr ? "rope_type" : "type";
    BAQ_ASSIGN_OR_RETURN(c.rope_type, rf.String(type_key, c.rope_type));
  }
  if (!(c.rope_theta > 0)) return f.Error("rope_theta", "must be positive");

  // Biases: LlamaAttention uses attention_bias for q/k/v and o; Qwen2 always
  // has q/k/v biases (no config key) and none on o_proj; Mistral has none.
  if (is_llama) {
    BAQ_ASSIGN_OR_RETURN(c.attention_bias, f.Bool("attention_bias", false));
    c.o_proj_bias = c.attention_bias;
    BAQ_ASSIGN_OR_RETURN(c.mlp_bias, f.Bool("mlp_bias", false));
  } else {
    c.attention_bias = is_qwen2;
    c.o_proj_bias = false;
    c.mlp_bias = false;
  }
  c.sliding_window = 0;
  if (!is_llama) {
    BAQ_ASSIGN_OR_RETURN(bool use_sw, f.Bool("use_sliding_window", !is_qwen2));
    if (use_sw) {
      BAQ_ASSIGN_OR_RETURN(c.sliding_window, f.Int("sliding_window", 0));
    }
    if (c.sliding_window < 0) return f.Error("sliding_window", "must not be negative");
  }
  return absl::OkStatus();
}

absl::Status Validate(const Fields& f, const ModelConfig& c) {
  if (c.hidden_size % c.num_attention_heads != 0) {
    return f.Error(
        "num_attention_heads",
        absl::StrCat("= ", c.num_attention_heads, " does not divide hidden_size ", c.hidden_size));
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
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
  return {Linear(*this, block, "self_attn.q_proj", h, q, attention_bias, 0),
          Linear(*this, block, "self_attn.k_proj", h, kv, attention_bias, 0),
          Linear(*this, block, "self_attn.v_proj", h, kv, attention_bias, 0),
          Linear(*this, block, "self_attn.o_proj", q, h, o_proj_bias, 1),
          Linear(*this, block, "mlp.gate_proj", h, f, mlp_bias, 2),
          Linear(*this, block, "mlp.up_proj", h, f, mlp_bias, 2),
          Linear(*this, block, "mlp.down_proj", f, h, mlp_bias, 3)};
}

int64_t ModelConfig::QuantizableElements() const {
  int64_t per_block = 0;
  for (const LinearLayerSpec& l : BlockLinearLayers(0)) per_block += l.in_features * l.out_features;
  return per_block * num_layers;
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
  if (!is_opt && c.model_type != "llama" && c.model_type != "mistral" && c.model_type != "qwen2") {
    return absl::InvalidArgumentError(absl::StrCat(source, ": unsupported model_type \"",
                                                   c.model_type, "\" (supported: ", kSupportedTypes,
                                                   ")"));
  }
  BAQ_ASSIGN_OR_RETURN(c.dtype, ParseTorchDType(f));
  BAQ_ASSIGN_OR_RETURN(c.vocab_size, f.PositiveInt("vocab_size"));
  BAQ_ASSIGN_OR_RETURN(c.hidden_size, f.PositiveInt("hidden_size"));
  BAQ_ASSIGN_OR_RETURN(c.num_layers, f.PositiveInt("num_hidden_layers"));
  BAQ_ASSIGN_OR_RETURN(c.num_attention_heads, f.PositiveInt("num_attention_heads"));
  if (c.hidden_size % c.num_attention_heads != 0) BAQ_RETURN_IF_ERROR(Validate(f, c));
  BAQ_RETURN_IF_ERROR(is_opt ? ParseOpt(f, c) : ParseLlamaFamily(f, c));
  BAQ_RETURN_IF_ERROR(Validate(f, c));
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir) {
  const std::string path = absl::StrCat(model_dir, "/config.json");
  BAQ_ASSIGN_OR_RETURN(const std::string text, ReadFileContents(path));
  return ParseModelConfig(text, path);
}

}  // namespace baq

// common/model_config.h
//
// ModelConfig: the typed description of a decoder-only LM parsed from a
// Hugging Face `config.json`, for the families baq executes: OPT and the
// LLaMA family (llama, mistral, qwen2: GQA, RoPE, RMSNorm, SiLU-gated MLP,
// optional q/k/v biases). Also names every tensor of the checkpoint and the
// quantizable linear layers of each block, so worker/ and coordinator/ agree
// on names without knowing the family.
//
// Unknown `model_type` or a missing/invalid field is InvalidArgument naming
// the file and field (and, for model_type, listing what is supported). A valid
// config using a feature baq does not execute (an activation other than
// relu/silu, OPT LayerNorms without affine parameters) is Unimplemented.
// Absent "dtype"/"torch_dtype" means F32, as transformers loads it.
//
// OPT-350M's shape is executed: post-LayerNorm (do_layer_norm_before false,
// hence no final LayerNorm) and word_embed_proj_dim != hidden_size (the
// unquantized project_in/project_out linears around the blocks; see
// docs/model-support.md).
//
// Plain value type; thread-compatible.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(ModelConfig cfg, LoadModelConfig("/models/opt-125m"));
//   for (const LinearLayerSpec& l : cfg.BlockLinearLayers(0)) ...
#ifndef BAQ_COMMON_MODEL_CONFIG_H_
#define BAQ_COMMON_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/dtype.h"
#include "common/rope_parameters.h"

namespace baq {

// Which block implementation runs the model: kOpt (opt), kLlama (llama,
// mistral, qwen2, qwen3, phi3, and the MoE families mixtral, qwen2_moe,
// qwen3_moe), kGemma (gemma2, gemma3_text).
enum class ModelFamily { kOpt, kLlama, kGemma };

// One quantizable linear layer of a block. Weight is [out_features, in_features].
struct LinearLayerSpec {
  std::string name;         // Full tensor prefix, e.g. "model.layers.3.mlp.up_proj".
  std::string short_name;   // Block-relative, e.g. "mlp.up_proj".
  int64_t in_features = 0;
  int64_t out_features = 0;
  bool has_bias = false;
  // Layers with the same group index read the same input (q/k/v; gate/up),
  // so they share one Hessian. Groups are numbered in forward order.
  int input_group = 0;
  // Layers with the same tie group are fused by serving engines and must
  // share one width (allocation module): the input group (q/k/v, gate/up),
  // except that all routed experts of a MoE block form one tie group, as
  // vLLM's FusedMoE takes one quantization scheme for all of them
  // (compressed_tensors_moe.py get_moe_method: "multiple schemes found").
  int tie_group = 0;
};

struct ModelConfig {
  std::string model_type;  // "opt", "llama", "mistral", "qwen2", "qwen3", "phi3", ...
  ModelFamily family = ModelFamily::kLlama;
  DType dtype = DType::kF16;  // From "torch_dtype"/"dtype"; F16, BF16 or F32.
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;  // OPT: ffn_dim.
  int64_t num_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // == num_attention_heads without GQA.
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;
  bool tie_word_embeddings = false;
  // LLaMA and Gemma families.
  RopeParameters rope;        // Every layer (Gemma-3: full-attention layers).
  RopeParameters rope_local;  // Gemma-3 sliding-window layers (else == rope).
  int64_t sliding_window = 0;  // Sliding-window attention width; 0 = none.
  // Per layer: whether it uses the sliding window (Gemma's alternating
  // layer_types; all true for Mistral/Qwen2/Phi-3 with a window). Empty = all
  // layers alike.
  std::vector<bool> sliding_layers;
  bool qk_norm = false;    // RMSNorm over head_dim on q and k (qwen3, gemma3).
  bool fused_qkv = false;  // phi3: self_attn.qkv_proj and mlp.gate_up_proj.
  double rms_norm_eps = 1e-6;
  bool attention_bias = false;  // Biases on q/k/v (qwen2: true).
  bool o_proj_bias = false;
  bool mlp_bias = false;
  std::string hidden_act = "silu";  // silu; gelu_pytorch_tanh (Gemma).
  // Gemma: attention scale query_pre_attn_scalar^-0.5; tanh soft-caps (0 = off).
  double query_pre_attn_scalar = 0;
  double attn_logit_softcapping = 0;
  double final_logit_softcapping = 0;
  // Mixture of experts (mixtral, qwen2_moe, qwen3_moe); num_experts 0 = dense.
  int64_t num_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;  // Per expert (mixtral: intermediate_size).
  bool norm_topk_prob = false;        // Renormalize the top-k weights (mixtral: always).
  int64_t shared_expert_intermediate_size = 0;  // qwen2_moe; 0 = none.
  std::vector<int64_t> mlp_only_layers;         // qwen MoE: dense MLP layers.
  int64_t decoder_sparse_step = 1;              // qwen MoE: every n-th layer is MoE.
  // OPT.
  bool do_layer_norm_before = true;
  bool enable_bias = true;
  int64_t word_embed_proj_dim = 0;  // == hidden_size unless the model has projections.
  bool remove_final_layer_norm = false;  // "_remove_final_layer_norm" (pre-4.20 fine-tunes).
  double layer_norm_eps = 1e-5;

  // Tensor names.
  std::string BlockPrefix(int64_t block) const;  // "model.layers.3." / "model.decoder.layers.3."
  std::string EmbedTokensName() const;
  std::string FinalNormPrefix() const;  // "model.norm" / "model.decoder.final_layer_norm"
  std::string LmHeadName() const;       // Embedding name when tied.
  // Whether `block` uses the sliding window / a mixture-of-experts MLP.
  bool IsSlidingLayer(int64_t block) const;
  bool IsMoeLayer(int64_t block) const;
  // Per-expert tensor names: "block_sparse_moe" (mixtral) or "mlp".
  std::string MoePrefix() const;
  // Width of the token embeddings and of the LM head's input: OPT's
  // word_embed_proj_dim, else hidden_size.
  int64_t EmbeddingWidth() const;
  // OPT with word_embed_proj_dim != hidden_size (opt-350m): project_in
  // [hidden, proj] after the token embeddings, project_out [proj, hidden]
  // before the LM head, both without bias (transformers' OPTDecoder).
  bool HasOptProjections() const;
  std::string OptProjectInName() const;   // "model.decoder.project_in.weight"
  std::string OptProjectOutName() const;  // "model.decoder.project_out.weight"
  // False for OPT with post-LayerNorm or _remove_final_layer_norm, as
  // OPTDecoder (final_layer_norm = None).
  bool HasFinalNorm() const;
  // Quantizable linear layers of `block` in forward (= GPTQ sequential) order.
  // MoE blocks list the attention, then each expert's gate/up (one input
  // group per expert: the tokens routed to it) and down, then the shared
  // expert; the router and the shared-expert gate are not quantized.
  std::vector<LinearLayerSpec> BlockLinearLayers(int64_t block) const;
  // Number of weight elements in all quantizable linear layers of the model.
  int64_t QuantizableElements() const;
};

// Parses config.json text; `source` names the file in errors.
absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text,
                                             absl::string_view source);
// Reads `<model_dir>/config.json`.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir);

}  // namespace baq

#endif  // BAQ_COMMON_MODEL_CONFIG_H_

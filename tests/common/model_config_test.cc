#include "common/model_config.h"

#include <cmath>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/test_paths.h"

namespace baq {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

Json MistralJson() {
  return Json::parse(R"({
    "architectures": ["MistralForCausalLM"], "model_type": "mistral",
    "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 32000,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
    "sliding_window": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "hidden_act": "silu", "head_dim": null})");
}

Json Qwen2Json() {
  return Json::parse(R"({
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
    "hidden_size": 896, "intermediate_size": 4864, "num_attention_heads": 14,
    "num_hidden_layers": 24, "num_key_value_heads": 2, "vocab_size": 151936,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "sliding_window": 32768, "use_sliding_window": false, "tie_word_embeddings": true,
    "torch_dtype": "bfloat16", "hidden_act": "silu"})");
}

Json OptJson() {
  return Json::parse(
      R"({"model_type": "opt", "hidden_size": 768, "ffn_dim": 3072,
    "num_attention_heads": 12, "num_hidden_layers": 12, "vocab_size": 50272,
    "max_position_embeddings": 2048, "torch_dtype": "float16", "word_embed_proj_dim": 768})");
}

absl::StatusOr<ModelConfig> Parse(const Json& json) {
  return ParseModelConfig(json.dump(), "test/config.json");
}

// Expects `json` to be rejected with `code`, naming the file and `needle`.
void ExpectError(const Json& json, absl::StatusCode code, const std::string& needle) {
  absl::StatusOr<ModelConfig> cfg = Parse(json);
  ASSERT_FALSE(cfg.ok()) << json.dump();
  EXPECT_EQ(cfg.status().code(), code) << cfg.status();
  EXPECT_THAT(std::string(cfg.status().message()), HasSubstr("test/config.json"));
  EXPECT_THAT(std::string(cfg.status().message()), HasSubstr(needle));
}

TEST(ModelConfigTest, LoadsOptFixture) {
  if (!testing::HaveSharedData()) GTEST_SKIP() << "no shared data";
  absl::StatusOr<ModelConfig> cfg =
      LoadModelConfig(testing::SharedDataDir() + "/models/opt-fixture");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->family, ModelFamily::kOpt);
  EXPECT_EQ(cfg->dtype, DType::kF16);
  EXPECT_EQ(cfg->vocab_size, 8192);
  EXPECT_EQ(cfg->hidden_size, 384);
  EXPECT_EQ(cfg->intermediate_size, 1536);
  EXPECT_EQ(cfg->num_layers, 6);
  EXPECT_EQ(cfg->num_attention_heads, 6);
  EXPECT_EQ(cfg->num_key_value_heads, 6);
  EXPECT_EQ(cfg->head_dim, 64);
  EXPECT_EQ(cfg->max_position_embeddings, 2048);
  EXPECT_TRUE(cfg->tie_word_embeddings);
  EXPECT_TRUE(cfg->do_layer_norm_before);
  EXPECT_TRUE(cfg->enable_bias);
  EXPECT_EQ(cfg->hidden_act, "relu");
  EXPECT_EQ(cfg->EmbedTokensName(), "model.decoder.embed_tokens.weight");
  EXPECT_EQ(cfg->LmHeadName(), "model.decoder.embed_tokens.weight");
  EXPECT_EQ(cfg->FinalNormPrefix(), "model.decoder.final_layer_norm");
  EXPECT_EQ(cfg->BlockPrefix(3), "model.decoder.layers.3.");

  const std::vector<LinearLayerSpec> layers = cfg->BlockLinearLayers(2);
  ASSERT_EQ(layers.size(), 6u);
  const char* names[] = {"self_attn.q_proj",
                         "self_attn.k_proj",
                         "self_attn.v_proj",
                         "self_attn.out_proj",
                         "fc1",
                         "fc2"};
  const int groups[] = {0, 0, 0, 1, 2, 3};
  for (size_t i = 0; i < layers.size(); ++i) {
    EXPECT_EQ(layers[i].short_name, names[i]);
    EXPECT_EQ(layers[i].name, std::string("model.decoder.layers.2.") + names[i]);
    EXPECT_EQ(layers[i].input_group, groups[i]);
    EXPECT_TRUE(layers[i].has_bias);
  }
  EXPECT_EQ(layers[4].in_features, 384);
  EXPECT_EQ(layers[4].out_features, 1536);
  EXPECT_EQ(layers[5].in_features, 1536);
  EXPECT_EQ(layers[5].out_features, 384);
  EXPECT_EQ(cfg->QuantizableElements(), 6 * (4 * 384 * 384 + 2 * 384 * 1536));
}

TEST(ModelConfigTest, LoadsLlamaFixtureWithRopeParameters) {
  if (!testing::HaveSharedData()) GTEST_SKIP() << "no shared data";
  absl::StatusOr<ModelConfig> cfg =
      LoadModelConfig(testing::SharedDataDir() + "/models/llama-fixture");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->family, ModelFamily::kLlama);
  EXPECT_EQ(cfg->dtype, DType::kBF16);  // From "dtype" (transformers 5).
  EXPECT_EQ(cfg->hidden_size, 256);
  EXPECT_EQ(cfg->intermediate_size, 688);
  EXPECT_EQ(cfg->num_attention_heads, 4);
  EXPECT_EQ(cfg->num_key_value_heads, 2);
  EXPECT_EQ(cfg->head_dim, 64);
  EXPECT_DOUBLE_EQ(cfg->rope.theta, 10000.0);
  EXPECT_EQ(cfg->rope.type, "default");
  EXPECT_DOUBLE_EQ(cfg->rms_norm_eps, 1e-5);
  EXPECT_FALSE(cfg->tie_word_embeddings);
  EXPECT_FALSE(cfg->attention_bias);
  EXPECT_EQ(cfg->LmHeadName(), "lm_head.weight");
  EXPECT_EQ(cfg->EmbedTokensName(), "model.embed_tokens.weight");
  EXPECT_EQ(cfg->FinalNormPrefix(), "model.norm");

  const std::vector<LinearLayerSpec> layers = cfg->BlockLinearLayers(5);
  ASSERT_EQ(layers.size(), 7u);
  const char* names[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                         "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                         "mlp.down_proj"};
  const int groups[] = {0, 0, 0, 1, 2, 2, 3};
  const int64_t outs[] = {256, 128, 128, 256, 688, 688, 256};
  for (size_t i = 0; i < layers.size(); ++i) {
    EXPECT_EQ(layers[i].name, std::string("model.layers.5.") + names[i]);
    EXPECT_EQ(layers[i].input_group, groups[i]);
    EXPECT_EQ(layers[i].tie_group, groups[i]);  // q/k/v and gate/up share a width.
    EXPECT_EQ(layers[i].out_features, outs[i]) << names[i];
    EXPECT_FALSE(layers[i].has_bias);
  }
  EXPECT_EQ(layers[6].in_features, 688);
}

TEST(ModelConfigTest, ParsesMistralWithGqaAndNullDefaults) {
  absl::StatusOr<ModelConfig> cfg = Parse(MistralJson());
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->model_type, "mistral");
  EXPECT_EQ(cfg->family, ModelFamily::kLlama);
  EXPECT_EQ(cfg->dtype, DType::kBF16);  // From "torch_dtype".
  EXPECT_EQ(cfg->num_key_value_heads, 8);
  EXPECT_EQ(cfg->head_dim, 128);  // null -> hidden / heads.
  EXPECT_DOUBLE_EQ(cfg->rope.theta, 1e6);
  EXPECT_EQ(cfg->sliding_window, 0);
  EXPECT_FALSE(cfg->attention_bias);
  const std::vector<LinearLayerSpec> layers = cfg->BlockLinearLayers(0);
  EXPECT_EQ(layers[1].out_features, 8 * 128);
  EXPECT_EQ(layers[3].in_features, 4096);
}

TEST(ModelConfigTest, Qwen2HasQkvBiasWithoutKey) {
  absl::StatusOr<ModelConfig> cfg = Parse(Qwen2Json());
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_TRUE(cfg->attention_bias);
  EXPECT_FALSE(cfg->o_proj_bias);
  EXPECT_TRUE(cfg->tie_word_embeddings);
  EXPECT_EQ(cfg->sliding_window, 0);  // use_sliding_window: false.
  EXPECT_EQ(cfg->head_dim, 64);
  const std::vector<LinearLayerSpec> layers = cfg->BlockLinearLayers(0);
  EXPECT_TRUE(layers[0].has_bias);
  EXPECT_TRUE(layers[2].has_bias);
  EXPECT_FALSE(layers[3].has_bias);
  EXPECT_FALSE(layers[4].has_bias);
  EXPECT_EQ(cfg->LmHeadName(), "model.embed_tokens.weight");
}

TEST(ModelConfigTest, LlamaBiasFlagsAndDefaults) {
  Json j = MistralJson();
  j["model_type"] = "llama";
  j["attention_bias"] = true;
  j["mlp_bias"] = true;
  j.erase("num_key_value_heads");
  j.erase("rope_theta");
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  j.erase("torch_dtype");
  absl::StatusOr<ModelConfig> cfg = Parse(j);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_TRUE(cfg->attention_bias);
  EXPECT_TRUE(cfg->o_proj_bias);
  EXPECT_TRUE(cfg->mlp_bias);
  EXPECT_EQ(cfg->num_key_value_heads, 32);
  EXPECT_DOUBLE_EQ(cfg->rope.theta, 10000.0);
  EXPECT_EQ(cfg->rope.type, "llama3");
  EXPECT_EQ(cfg->rope.original_max_position_embeddings, 8192);
  EXPECT_EQ(cfg->dtype, DType::kF32);
}

TEST(ModelConfigTest, OptDefaults) {
  Json j = OptJson();
  j["enable_bias"] = false;
  absl::StatusOr<ModelConfig> cfg = Parse(j);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_TRUE(cfg->tie_word_embeddings);
  EXPECT_EQ(cfg->head_dim, 64);
  EXPECT_FALSE(cfg->BlockLinearLayers(0)[0].has_bias);
}

TEST(ModelConfigTest, RejectsUnknownModelTypeListingSupported) {
  Json j = OptJson();
  j["model_type"] = "gpt2";
  ExpectError(j, absl::StatusCode::kInvalidArgument, "gpt2");
  ExpectError(j, absl::StatusCode::kInvalidArgument, "opt, llama, mistral, qwen2");
}

TEST(ModelConfigTest, RejectsBadJson) {
  absl::StatusOr<ModelConfig> cfg = ParseModelConfig("{\"model_type\": ", "x/config.json");
  EXPECT_EQ(cfg.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(cfg.status().message()), HasSubstr("x/config.json"));
  EXPECT_EQ(ParseModelConfig("[1, 2]", "x").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ModelConfigTest, RejectsMissingFields) {
  for (const char* key : {"model_type", "hidden_size", "num_attention_heads", "num_hidden_layers",
                          "vocab_size", "intermediate_size"}) {
    Json j = MistralJson();
    j.erase(key);
    ExpectError(j, absl::StatusCode::kInvalidArgument, key);
  }
  Json opt = OptJson();
  opt.erase("ffn_dim");
  ExpectError(opt, absl::StatusCode::kInvalidArgument, "ffn_dim");
}

TEST(ModelConfigTest, RejectsWrongTypes) {
  Json j = MistralJson();
  j["hidden_size"] = "4096";
  ExpectError(j, absl::StatusCode::kInvalidArgument, "hidden_size");
  j = MistralJson();
  j["num_hidden_layers"] = 2.5;
  ExpectError(j, absl::StatusCode::kInvalidArgument, "num_hidden_layers");
  j = MistralJson();
  j["tie_word_embeddings"] = 1;
  ExpectError(j, absl::StatusCode::kInvalidArgument, "tie_word_embeddings");
  j = MistralJson();
  j["rms_norm_eps"] = "small";
  ExpectError(j, absl::StatusCode::kInvalidArgument, "rms_norm_eps");
  j = MistralJson();
  j["model_type"] = 7;
  ExpectError(j, absl::StatusCode::kInvalidArgument, "model_type");
}

TEST(ModelConfigTest, RejectsUnsupportedDType) {
  Json j = MistralJson();
  j["torch_dtype"] = "int8";
  ExpectError(j, absl::StatusCode::kInvalidArgument, "torch_dtype");
  j = OptJson();
  j["dtype"] = "float64";
  ExpectError(j, absl::StatusCode::kInvalidArgument, "dtype");
}

TEST(ModelConfigTest, RejectsNonPositiveSizes) {
  for (const char* key :
       {"hidden_size", "vocab_size", "num_hidden_layers", "num_attention_heads",
        "intermediate_size", "num_key_value_heads", "head_dim", "max_position_embeddings"}) {
    Json j = MistralJson();
    j[key] = 0;
    ExpectError(j, absl::StatusCode::kInvalidArgument, key);
    j[key] = -4;
    ExpectError(j, absl::StatusCode::kInvalidArgument, key);
  }
}

TEST(ModelConfigTest, RejectsHeadsNotDividingHidden) {
  Json j = MistralJson();
  j["num_attention_heads"] = 30;
  ExpectError(j, absl::StatusCode::kInvalidArgument, "num_attention_heads");
  j = OptJson();
  j["num_attention_heads"] = 7;
  ExpectError(j, absl::StatusCode::kInvalidArgument, "does not divide hidden_size");
}

TEST(ModelConfigTest, RejectsKvHeadsNotDividingHeads) {
  Json j = MistralJson();
  j["num_key_value_heads"] = 5;
  ExpectError(j, absl::StatusCode::kInvalidArgument, "num_key_value_heads");
}

// facebook/opt-350m's config.json (the fields baq reads).
TEST(ModelConfigTest, ParsesOpt350mShape) {
  Json j = OptJson();
  j["hidden_size"] = 1024;
  j["ffn_dim"] = 4096;
  j["num_attention_heads"] = 16;
  j["num_hidden_layers"] = 24;
  j["word_embed_proj_dim"] = 512;
  j["do_layer_norm_before"] = false;
  absl::StatusOr<ModelConfig> cfg = Parse(j);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_TRUE(cfg->HasOptProjections());
  EXPECT_FALSE(cfg->HasFinalNorm());
  EXPECT_EQ(cfg->EmbeddingWidth(), 512);
  EXPECT_EQ(cfg->OptProjectInName(), "model.decoder.project_in.weight");
  EXPECT_EQ(cfg->OptProjectOutName(), "model.decoder.project_out.weight");
  // project_in/project_out are not quantized, so not in the bit budget.
  EXPECT_EQ(cfg->QuantizableElements(), 24 * (4 * 1024 * 1024 + 2 * 1024 * 4096));

  absl::StatusOr<ModelConfig> plain = Parse(OptJson());
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->HasOptProjections());
  EXPECT_TRUE(plain->HasFinalNorm());
  EXPECT_EQ(plain->EmbeddingWidth(), 768);
  j = OptJson();
  j["_remove_final_layer_norm"] = true;
  plain = Parse(j);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->HasFinalNorm());
}

TEST(ModelConfigTest, RejectsUnsupportedOptFeatures) {
  Json j = OptJson();
  j["layer_norm_elementwise_affine"] = false;
  ExpectError(j, absl::StatusCode::kUnimplemented, "layer_norm_elementwise_affine");
  j = OptJson();
  j["activation_function"] = "gelu";
  ExpectError(j, absl::StatusCode::kUnimplemented, "activation_function");
  j = MistralJson();
  j["hidden_act"] = "gelu_pytorch_tanh";
  ExpectError(j, absl::StatusCode::kUnimplemented, "hidden_act");
}

TEST(ModelConfigTest, RejectsBadRopeParameters) {
  Json j = MistralJson();
  j["rope_parameters"] = "fast";
  ExpectError(j, absl::StatusCode::kInvalidArgument, "rope_parameters");
  j = MistralJson();
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_theta", -1.0}};
  ExpectError(j, absl::StatusCode::kInvalidArgument, "rope_theta");
}

// Real config.json files (transformers 4.4x key layout), trimmed to the keys
// baq reads.
TEST(ModelConfigTest, ParsesQwen3WithExplicitHeadDim) {
  Json j = Json::parse(R"({"model_type": "qwen3", "hidden_size": 1024,
    "intermediate_size": 3072, "num_attention_heads": 16, "num_key_value_heads": 8,
    "head_dim": 128, "num_hidden_layers": 28, "vocab_size": 151936, "rms_norm_eps": 1e-06,
    "rope_theta": 1000000, "rope_scaling": null, "attention_bias": false,
    "use_sliding_window": false, "sliding_window": null, "max_window_layers": 28,
    "tie_word_embeddings": true, "torch_dtype": "bfloat16", "hidden_act": "silu"})");
  absl::StatusOr<ModelConfig> cfg = Parse(j);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->family, ModelFamily::kLlama);
  EXPECT_TRUE(cfg->qk_norm);
  EXPECT_EQ(cfg->head_dim, 128);
  EXPECT_EQ(cfg->sliding_window, 0);
  const std::vector<LinearLayerSpec> layers = cfg->BlockLinearLayers(0);
  EXPECT_EQ(layers[0].out_features, 16 * 128);  // != hidden_size.
  EXPECT_EQ(layers[3].in_features, 16 * 128);
  EXPECT_FALSE(layers[0].has_bias);
}

TEST(ModelConfigTest, ParsesPhi3FusedLayersAndLongrope) {
  Json j = Json::parse(R"({"model_type": "phi3", "hidden_size": 3072,
    "intermediate_size": 8192, "num_attention_heads": 32, "num_key_value_heads": 32,
    "num_hidden_layers": 32, "vocab_size": 32064, "max_position_embeddings": 131072,
    "original_max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
    "sliding_window": 262144, "torch_dtype": "bfloat16", "hidden_act": "silu",
    "rope_scaling": {"type": "su", "short_factor": [], "long_factor": []}})");
  std::vector<double> factors(48, 1.5);
  j["rope_scaling"]["short_factor"] = factors;
  j["rope_scaling"]["long_factor"] = factors;
  absl::StatusOr<ModelConfig> cfg = Parse(j);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_TRUE(cfg->fused_qkv);
  EXPECT_EQ(cfg->rope.type, "longrope");  // Phi3Config maps "su" to longrope.
  EXPECT_EQ(cfg->rope.original_max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(cfg->rope.factor, 32.0);
  EXPECT_NEAR(cfg->rope.attention_factor, std::sqrt(1 + std::log(32.0) / std::log(4096.0)),
              1e-12);
  EXPECT_EQ(cfg->sliding_window, 262144);
  const std::vector<LinearLayerSpec> layers = cfg->BlockLinearLayers(3);
  ASSERT_EQ(layers.size(), 4u);
  EXPECT_EQ(layers[0].short_name, "self_attn.qkv_proj");
  EXPECT_EQ(layers[0].out_features, 3 * 3072);
  EXPECT_EQ(layers[2].short_name, "mlp.gate_up_proj");
  EXPECT_EQ(layers[2].out_features, 2 * 8192);
  EXPECT_EQ(layers[3].in_features, 8192);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(layers[i].input_group, i);
}

TEST(ModelConfigTest, ParsesGemma2) {
  Json j = Json::parse(R"({"model_type": "gemma2", "hidden_size": 2304,
    "intermediate_size": 9216, "num_attention_heads": 8, "num_key_value_heads": 4,
    "head_dim": 256, "num_hidden_layers": 26, "vocab_size": 256000,
    "query_pre_attn_scalar": 256, "sliding_window": 4096, "attn_logit_softcapping": 50.0,
    "final_logit_softcapping": 30.0, "hidden_act": "gelu_pytorch_tanh",
    "hidden_activation": "gelu_pytorch_tanh", "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
    "torch_dtype": "float32"})");
  absl::StatusOr<ModelConfig> cfg = Parse(j);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->family, ModelFamily::kGemma);
  EXPECT_TRUE(cfg->tie_word_embeddings);
  EXPECT_TRUE(cfg->IsSlidingLayer(0));
  EXPECT_FALSE(cfg->IsSlidingLayer(1));
  EXPECT_DOUBLE_EQ(cfg->attn_logit_softcapping, 50.0);
  EXPECT_DOUBLE_EQ(cfg->final_logit_softcapping, 30.0);
  EXPECT_EQ(cfg->BlockLinearLayers(0)[0].out_features, 8 * 256);
}

TEST(ModelConfigTest, ParsesGemma3TextPerLayerRope) {
  Json j = Json::parse(R"({"model_type": "gemma3_text", "hidden_size": 1152,
    "intermediate_size": 6912, "num_attention_heads": 4, "num_key_value_heads": 1,
    "head_dim": 256, "num_hidden_layers": 26, "vocab_size": 262144,
    "query_pre_attn_scalar": 256, "sliding_window": 512, "sliding_window_pattern": 6,
    "rope_theta": 1000000, "rope_local_base_freq": 10000, "rope_scaling": null,
    "final_logit_softcapping": null, "attn_logit_softcapping": null,
    "hidden_activation": "gelu_pytorch_tanh", "torch_dtype": "bfloat16"})");
  absl::StatusOr<ModelConfig> cfg = Parse(j);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_TRUE(cfg->qk_norm);
  EXPECT_DOUBLE_EQ(cfg->rope.theta, 1e6);
  EXPECT_DOUBLE_EQ(cfg->rope_local.theta, 1e4);
  EXPECT_TRUE(cfg->IsSlidingLayer(4));
  EXPECT_FALSE(cfg->IsSlidingLayer(5));
  EXPECT_EQ(cfg->attn_logit_softcapping, 0);
  // transformers 5: per-layer-type rope_parameters.
  j.erase("rope_theta");
  j.erase("rope_local_base_freq");
  j.erase("rope_scaling");
  j["rope_parameters"] = Json::parse(R"({
    "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
    "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}})");
  cfg = Parse(j);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->rope.type, "linear");
  EXPECT_DOUBLE_EQ(cfg->rope.factor, 8.0);
  EXPECT_EQ(cfg->rope_local.type, "default");
  EXPECT_DOUBLE_EQ(cfg->rope_local.theta, 1e4);
}

TEST(ModelConfigTest, ParsesMixtralExperts) {
  Json j = MistralJson();
  j["model_type"] = "mixtral";
  j["num_local_experts"] = 8;
  j["num_experts_per_tok"] = 2;
  absl::StatusOr<ModelConfig> cfg = Parse(j);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_TRUE(cfg->IsMoeLayer(0));
  EXPECT_TRUE(cfg->norm_topk_prob);
  const std::vector<LinearLayerSpec> layers = cfg->BlockLinearLayers(1);
  ASSERT_EQ(layers.size(), 4u + 8 * 3);
  EXPECT_EQ(layers[4].name, "model.layers.1.block_sparse_moe.experts.0.w1");
  EXPECT_EQ(layers[5].short_name, "block_sparse_moe.experts.0.w3");
  EXPECT_EQ(layers[6].short_name, "block_sparse_moe.experts.0.w2");
  EXPECT_EQ(layers[4].input_group, 2);
  EXPECT_EQ(layers[6].input_group, 3);
  EXPECT_EQ(layers[27].input_group, 2 + 2 * 7 + 1);
  // All routed experts (gate, up and down) share one width: vLLM's FusedMoE.
  for (size_t i = 4; i < layers.size(); ++i) EXPECT_EQ(layers[i].tie_group, 2) << i;
  EXPECT_EQ(layers[3].tie_group, 1);
  EXPECT_EQ(layers[6].in_features, 14336);
  // The budget counts every expert.
  EXPECT_EQ(cfg->QuantizableElements(),
            32 * (4096LL * 4096 * 2 + 4096LL * 1024 * 2 + 8 * 3 * 4096LL * 14336));
}

TEST(ModelConfigTest, ParsesQwenMoeSharedExpertAndDenseLayers) {
  Json j = Qwen2Json();
  j["model_type"] = "qwen2_moe";
  j["num_experts"] = 4;
  j["num_experts_per_tok"] = 2;
  j["moe_intermediate_size"] = 32;
  j["shared_expert_intermediate_size"] = 64;
  j["mlp_only_layers"] = {1};
  absl::StatusOr<ModelConfig> cfg = Parse(j);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_FALSE(cfg->norm_topk_prob);
  EXPECT_TRUE(cfg->attention_bias);
  EXPECT_TRUE(cfg->IsMoeLayer(0));
  EXPECT_FALSE(cfg->IsMoeLayer(1));
  const std::vector<LinearLayerSpec> moe = cfg->BlockLinearLayers(0);
  ASSERT_EQ(moe.size(), 4u + 4 * 3 + 3);
  EXPECT_EQ(moe[4].short_name, "mlp.experts.0.gate_proj");
  EXPECT_EQ(moe[16].short_name, "mlp.shared_expert.gate_proj");
  EXPECT_EQ(moe[16].input_group, 10);
  EXPECT_EQ(moe[18].input_group, 11);
  EXPECT_EQ(moe[15].tie_group, 2);   // The last routed expert's down_proj.
  EXPECT_EQ(moe[16].tie_group, 10);  // The shared expert is a plain MLP: gate/up tied.
  EXPECT_EQ(moe[17].tie_group, 10);
  EXPECT_EQ(moe[18].tie_group, 11);
  EXPECT_EQ(cfg->BlockLinearLayers(1).size(), 7u);  // Dense MLP.
  j["model_type"] = "qwen3_moe";
  j["norm_topk_prob"] = true;
  cfg = Parse(j);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_TRUE(cfg->qk_norm);
  EXPECT_EQ(cfg->BlockLinearLayers(0).size(), 4u + 4 * 3);  // No shared expert.
  j.erase("num_experts");  // transformers 5 writes Qwen3-MoE's as num_local_experts.
  j["num_local_experts"] = 6;
  cfg = Parse(j);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->num_experts, 6);
}

TEST(ModelConfigTest, RefusesVisionTowersAndEncoderDecoders) {
  Json j = MistralJson();
  j["model_type"] = "gemma3";
  j["vision_config"] = {{"hidden_size", 1152}};
  ExpectError(j, absl::StatusCode::kInvalidArgument, "vision tower");
  j = MistralJson();
  j["model_type"] = "t5";
  j["is_encoder_decoder"] = true;
  ExpectError(j, absl::StatusCode::kInvalidArgument, "encoder-decoder");
  j = MistralJson();
  j["rope_scaling"] = {{"rope_type", "mrope"}};
  ExpectError(j, absl::StatusCode::kUnimplemented, "rope_type \"mrope\"");
}

TEST(ModelConfigTest, MissingFileIsNotFound) {
  absl::StatusOr<ModelConfig> cfg = LoadModelConfig(testing::MakeScratchDir());
  EXPECT_EQ(cfg.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(cfg.status().message()), HasSubstr("config.json"));
}

}  // namespace
}  // namespace baq

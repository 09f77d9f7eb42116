// The runtimes' metadata of the exports: GPTQ `bits` is the most common module
// width and only other widths become `dynamic` overrides (with vLLM's fused
// name when the fused group agrees; none when every width is the same);
// compressed-tensors gets one config group per width with exact module
// names, channel or group strategy from the job; the model card states
// method, bits, calibration and the gate's perplexity.
#include "coordinator/export_metadata.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "tests/fakes/fake_job_config.h"

namespace baq::coordinator {
namespace {

using ::testing::HasSubstr;

JobConfig Job() {
  JobConfig c = baq::testing::FakeJobConfig("/tmp/out", "/models/m");
  c.quant.target_bits = 2.5;
  return c;
}

nlohmann::json Report(const nlohmann::json& module_bits) {
  return {{"achieved_bits", 2.5}, {"gptq_default_bits", 3}, {"gptq_module_bits", module_bits},
          {"allocation", "global"}, {"total_proxy_loss", 1.5}};
}

const nlohmann::json kMixed = {{"model.layers.0.self_attn.q_proj", 2},
                               {"model.layers.0.self_attn.k_proj", 2},
                               {"model.layers.0.self_attn.v_proj", 2},
                               {"model.layers.0.self_attn.o_proj", 3},
                               {"model.layers.0.mlp.gate_proj", 3},
                               {"model.layers.0.mlp.up_proj", 2},
                               {"model.layers.0.mlp.down_proj", 3}};

// The width vLLM/GPTQModel give `module`: the first `dynamic` rule that
// re.match()es (std::regex_search anchored by the pattern's own ^...$).
int GptqBits(const nlohmann::json& cfg, const std::string& module) {
  if (cfg.contains("dynamic")) {
    for (const auto& [pattern, override] : cfg["dynamic"].items()) {
      if (std::regex_search(module, std::regex(pattern.substr(2)))) return override["bits"];
    }
  }
  return cfg["bits"];
}

TEST(GptqConfigJsonTest, MostCommonWidthIsTheDefaultAndTheOthersAreDynamic) {
  const nlohmann::json cfg = GptqConfigJson(Job(), Report(kMixed));
  EXPECT_EQ(cfg["quant_method"], "gptq");
  EXPECT_EQ(cfg["bits"], 2);  // four modules at 2 bits, three at 3
  EXPECT_EQ(cfg["lm_head"], false);
  for (const auto& [module, bits] : kMixed.items()) {
    EXPECT_EQ(GptqBits(cfg, module), bits.get<int>()) << module;
  }
  // vLLM names: q/k/v agree (2, the default); gate/up differ, so gate_up_proj is not named.
  EXPECT_EQ(GptqBits(cfg, "model.layers.0.self_attn.qkv_proj"), 2);
  EXPECT_EQ(cfg["dynamic"].size(), 3u);  // o_proj, gate_proj, down_proj
  EXPECT_EQ(GptqBits(cfg, "model.layers.10.self_attn.o_proj"), 2);  // anchored: no prefix match
}

TEST(GptqConfigJsonTest, FusedNameJoinsAnOverrideWhenTheGroupAgrees) {
  const nlohmann::json cfg = GptqConfigJson(
      Job(), Report({{"a.q_proj", 8}, {"a.k_proj", 8}, {"a.v_proj", 8}, {"a.o_proj", 4},
                     {"a.down_proj", 4}, {"a.fc1", 4}}));
  EXPECT_EQ(cfg["bits"], 4);
  EXPECT_EQ(GptqBits(cfg, "a.qkv_proj"), 8);
  EXPECT_EQ(GptqBits(cfg, "a.k_proj"), 8);
}

TEST(GptqConfigJsonTest, NoDynamicWhenEveryWidthIsTheSame) {
  const nlohmann::json cfg = GptqConfigJson(Job(), Report({{"a.q_proj", 4}, {"a.k_proj", 4}}));
  EXPECT_EQ(cfg["bits"], 4);
  EXPECT_FALSE(cfg.contains("dynamic"));
}

TEST(CompressedTensorsConfigJsonTest, OneGroupPerWidthWithExactTargets) {
  JobConfig job = Job();
  job.quant.group_size = 128;
  const nlohmann::json cfg = CompressedTensorsConfigJson(job, Report(kMixed));
  EXPECT_EQ(cfg["quant_method"], "compressed-tensors");
  EXPECT_EQ(cfg["format"], "pack-quantized");
  EXPECT_EQ(cfg["quantization_status"], "compressed");
  EXPECT_EQ(cfg["ignore"], nlohmann::json::array({"lm_head"}));
  ASSERT_EQ(cfg["config_groups"].size(), 2u);
  const nlohmann::json& g2 = cfg["config_groups"]["group_0"];
  EXPECT_EQ(g2["weights"]["num_bits"], 2);
  EXPECT_EQ(g2["weights"]["strategy"], "group");
  EXPECT_EQ(g2["weights"]["group_size"], 128);
  EXPECT_EQ(g2["weights"]["symmetric"], false);
  EXPECT_EQ(g2["format"], "pack-quantized");
  EXPECT_EQ(g2["targets"].size(), 4u);
  EXPECT_EQ(cfg["config_groups"]["group_1"]["weights"]["num_bits"], 3);
  EXPECT_EQ(cfg["config_groups"]["group_1"]["targets"].size(), 3u);

  job.quant.group_size = -1;
  const nlohmann::json channel = CompressedTensorsConfigJson(job, Report(kMixed));
  EXPECT_EQ(channel["config_groups"]["group_0"]["weights"]["strategy"], "channel");
  EXPECT_TRUE(channel["config_groups"]["group_0"]["weights"]["group_size"].is_null());
}

TEST(ModelCardMarkdownTest, StatesMethodBitsCalibrationAndPerplexity) {
  nlohmann::json report = Report(kMixed);
  std::string card = ModelCardMarkdown(OutputFormat::kCompressedTensors, Job(), report);
  EXPECT_THAT(card, HasSubstr("# m quantized with baq (compressed-tensors)"));
  EXPECT_THAT(card, HasSubstr("| base model | /models/m |"));
  EXPECT_THAT(card, HasSubstr("| method | baq"));
  EXPECT_THAT(card, HasSubstr("| target bits | 2.5 |"));
  EXPECT_THAT(card, HasSubstr("4 × 2-bit, 3 × 3-bit"));
  EXPECT_THAT(card, HasSubstr("| calibration |"));
  EXPECT_THAT(card, HasSubstr("not measured"));
  report["eval_gate"] = {{"data", "wiki.txt"}, {"seqlen", 2048}, {"ppl", 21.5},
                         {"base_ppl", nullptr}};
  card = ModelCardMarkdown(OutputFormat::kGptq, Job(), report);
  EXPECT_THAT(card, HasSubstr("| perplexity (fake-quant, wiki.txt, seqlen 2048) | 21.5000 |"));
  EXPECT_THAT(card, ::testing::Not(HasSubstr("unquantized")));
}

}  // namespace
}  // namespace baq::coordinator

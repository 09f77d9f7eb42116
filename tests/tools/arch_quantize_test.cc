// Issue 18: GPTQ and BAQ quantize every architecture's tiny model
// (tests/worker/model/testdata/arch, made by tools/golden/make_arch_goldens.py)
// end to end through `baq quantize`'s code path, to exactly the average bits
// asked for, with finite weights everywhere, MoE experts included; and a MoE
// whose router starves one expert (mixtral_starved) quantizes without NaN.
#include <cmath>
#include <fstream>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/model_config.h"
#include "common/safetensors_checkpoint.h"
#include "coordinator/job_runner.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/local_job.h"
#include "tests/testing/arch_goldens.h"
#include "tests/testing/test_paths.h"
#include "worker/model/tensor_convert.h"

namespace baq {
namespace {

constexpr double kBitsTolerance = 1e-3;  // BAQ's global allocation promise.

class ArchQuantizeTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    if (!std::ifstream(testing::ArchGoldenDir(GetParam()) + "/tokenizer.json")) {
      GTEST_SKIP() << "no " << testing::ArchGoldenDir(GetParam())
                   << ": run tools/golden/make_arch_goldens.py tests/worker/model/testdata/arch";
    }
  }

  // 4 windows of 64 tokens of examples/calibration.txt (byte-level ids).
  JobConfig Job(const std::string& out) {
    JobConfig config = testing::ExampleFixtureJob(out);
    config.model_dir = testing::ArchGoldenDir(GetParam());
    config.calibration.seqlen = 64;
    config.formats = {OutputFormat::kFakeQuant};
    return config;
  }

  // Every quantized layer of the fake-quant output is finite, and there is
  // one per layer of the model (all experts).
  void ExpectFiniteLayers(const std::string& out) {
    const nlohmann::json report = testing::ReadJsonFile(out + "/quant_report.json");
    absl::StatusOr<ModelConfig> config = LoadModelConfig(testing::ArchGoldenDir(GetParam()));
    ASSERT_TRUE(config.ok()) << config.status();
    size_t layers = 0;
    for (int64_t b = 0; b < config->num_layers; ++b) layers += config->BlockLinearLayers(b).size();
    EXPECT_EQ(report["layers"].size(), layers);
    auto fake = SafetensorsCheckpoint::Open(out);
    ASSERT_TRUE(fake.ok()) << fake.status();
    for (const auto& layer : report["layers"]) {
      const std::string name = layer["name"];
      EXPECT_TRUE(std::isfinite(layer["proxy_loss"].get<double>())) << name;
      absl::StatusOr<TensorView> w = (*fake)->Get(name + ".weight");
      ASSERT_TRUE(w.ok()) << w.status();
      absl::StatusOr<at::Tensor> t = worker::CopyTensorFromView(*w, at::kCPU, at::kFloat);
      ASSERT_TRUE(t.ok()) << t.status();
      EXPECT_TRUE(at::isfinite(*t).all().item<bool>()) << name;
    }
  }
};

TEST_P(ArchQuantizeTest, GptqFourBits) {
  const std::string out = testing::MakeScratchDir() + "/out";
  JobConfig config = Job(out);
  config.quant.method = QuantMethod::kGptq;
  config.quant.target_bits = 4;
  absl::StatusOr<coordinator::JobSummary> s = testing::RunLocalJob(config);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_DOUBLE_EQ(s->achieved_bits, 4.0);
  absl::StatusOr<ModelConfig> model = LoadModelConfig(config.model_dir);
  ASSERT_TRUE(model.ok());
  EXPECT_EQ(s->quantized_elements, model->QuantizableElements());  // Every expert.
  ExpectFiniteLayers(out);
  if (model->num_experts == 0) return;
  // quant_report.json names each expert's calibration tokens: 4 windows x 64
  // tokens x top-k routed per block; mixtral_starved's expert 3 gets none and
  // is calibrated on the floor rule's tokens.
  const nlohmann::json report = testing::ReadJsonFile(out + "/quant_report.json");
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& layer : report["layers"]) by_name[layer["name"]] = layer;
  for (int64_t b = 0; b < model->num_layers; ++b) {
    int64_t routed = 0;
    for (int64_t e = 0; e < model->num_experts; ++e) {
      const std::string prefix = absl::StrCat(model->BlockPrefix(b), model->MoePrefix(),
                                              ".experts.", e, ".");
      const std::string gate = prefix + (model->model_type == "mixtral" ? "w1" : "gate_proj");
      ASSERT_EQ(by_name.count(gate), 1u) << gate;
      ASSERT_TRUE(by_name[gate].contains("calibration_tokens")) << gate;
      const int64_t tokens = by_name[gate]["calibration_tokens"];
      const int64_t top_up = by_name[gate]["top_up_tokens"];
      routed += tokens;
      if (std::string(GetParam()) == "mixtral_starved" && e == 3) {
        EXPECT_EQ(tokens, 0) << gate;
        EXPECT_GT(top_up, 0) << gate;
        EXPECT_LE(top_up, 4 * 16) << gate;
      }
    }
    EXPECT_EQ(routed, 4 * 64 * model->num_experts_per_tok) << "block " << b;
  }
  for (const auto& layer : report["layers"]) {
    const std::string name = layer["name"];
    if (name.find(".experts.") == std::string::npos) {
      EXPECT_FALSE(layer.contains("calibration_tokens")) << name;
    }
  }
}

TEST_P(ArchQuantizeTest, BaqFractionalTarget) {
  const std::string out = testing::MakeScratchDir() + "/out";
  JobConfig config = Job(out);
  config.quant.target_bits = 2.5;
  config.formats = {OutputFormat::kFakeQuant, OutputFormat::kPacked, OutputFormat::kGptq};
  absl::StatusOr<coordinator::JobSummary> s = testing::RunLocalJob(config);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_NEAR(s->achieved_bits, 2.5, kBitsTolerance);
  ExpectFiniteLayers(out + "/fake-quant");
  // packed and gptq hold every quantized layer too (experts, fused layers).
  const nlohmann::json report = testing::ReadJsonFile(out + "/fake-quant/quant_report.json");
  auto packed = SafetensorsCheckpoint::Open(out + "/packed");
  auto gptq = SafetensorsCheckpoint::Open(out + "/gptq");
  ASSERT_TRUE(packed.ok() && gptq.ok());
  for (const auto& layer : report["layers"]) {
    const std::string name = layer["name"];
    EXPECT_TRUE((*packed)->Info(name + ".qcodes").ok()) << name;
    EXPECT_TRUE((*gptq)->Info(name + ".qweight").ok()) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Families, ArchQuantizeTest,
                         ::testing::ValuesIn(testing::kArchGoldenFamilies),
                         testing::ArchGoldenFamilyName);

}  // namespace
}  // namespace baq

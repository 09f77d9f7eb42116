// OPT-350M's shape (post-LayerNorm; project_in/project_out around the
// blocks) quantizes end to end in local mode to exactly the bit budget,
// with BAQ and GPTQ, on a tiny random checkpoint of that shape
// (tests/testing/tiny_model.h). project_in/project_out are not quantized:
// they are copied unchanged and are not in the budget (issue 23). The
// pre-LayerNorm layout of the other OPT sizes (make_random_model.py's, as
// used for the OPT-30B-shaped scale run) is checked the same way.
#include <cstdio>
#include <string>

#include "common/model_config.h"
#include "common/safetensors_checkpoint.h"
#include "coordinator/job_runner.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/local_job.h"
#include "tests/testing/test_paths.h"
#include "tests/testing/tiny_model.h"

namespace baq {
namespace {

constexpr double kBitsTolerance = 1e-3;  // As local_quantize_test (global allocation).

JobConfig Job(const std::string& model, const std::string& out) {
  JobConfig c = testing::ExampleFixtureJob(out);
  c.model_dir = model;
  c.calibration.seqlen = 64;
  c.formats = {OutputFormat::kFakeQuant, OutputFormat::kPacked};
  // The gate's perplexities (unquantized and result) run the head stage:
  // no final norm, project_out, the 32-wide tied head.
  // The first 4 KB of examples/eval.txt: a few dozen windows, not thousands.
  c.eval_gate.text_file = testing::MakeScratchDir() + "/eval_head.txt";
  testing::WriteFileOrDie(c.eval_gate.text_file,
                          testing::ReadFileOrDie(testing::SourceDir() + "/examples/eval.txt")
                              .substr(0, 4096));
  c.eval_gate.seqlen = 64;
  c.eval_gate.max_ppl_ratio = 1.5;
  return c;
}

std::string Bytes(const SafetensorsCheckpoint& ckpt, const std::string& name) {
  absl::StatusOr<TensorView> v = ckpt.Get(name);
  EXPECT_TRUE(v.ok()) << name << ": " << v.status();
  if (!v.ok()) return "";
  return std::string(reinterpret_cast<const char*>(v->bytes.data()), v->bytes.size());
}

class Opt350mQuantizeTest : public ::testing::TestWithParam<QuantMethod> {};
class OptPreLnQuantizeTest : public ::testing::TestWithParam<QuantMethod> {};

TEST_P(OptPreLnQuantizeTest, HitsTheBudget) {
  const std::string model = testing::TinyOptPreLnDir();
  ASSERT_FALSE(model.empty()) << "make_random_model.py failed";
  absl::StatusOr<ModelConfig> cfg = LoadModelConfig(model);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  ASSERT_FALSE(cfg->HasOptProjections());
  ASSERT_TRUE(cfg->HasFinalNorm());
  JobConfig config = Job(model, testing::MakeScratchDir() + "/out");
  config.quant.method = GetParam();
  config.quant.target_bits = GetParam() == QuantMethod::kBaq ? 2.5 : 3.0;
  absl::StatusOr<coordinator::JobSummary> s = testing::RunLocalJob(config);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_NEAR(s->achieved_bits, config.quant.target_bits,
              GetParam() == QuantMethod::kBaq ? kBitsTolerance : 0.0);
  EXPECT_EQ(s->quantized_elements, cfg->QuantizableElements());
}

TEST_P(Opt350mQuantizeTest, HitsTheBudgetAndKeepsProjections) {
  const std::string model = testing::TinyOpt350mDir();
  ASSERT_FALSE(model.empty()) << "make_random_model.py failed";
  absl::StatusOr<ModelConfig> cfg = LoadModelConfig(model);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  ASSERT_TRUE(cfg->HasOptProjections());
  ASSERT_FALSE(cfg->do_layer_norm_before);

  const std::string out = testing::MakeScratchDir() + "/out";
  JobConfig config = Job(model, out);
  config.quant.method = GetParam();
  config.quant.target_bits = GetParam() == QuantMethod::kBaq ? 2.5 : 3.0;
  absl::StatusOr<coordinator::JobSummary> s = testing::RunLocalJob(config);
  ASSERT_TRUE(s.ok()) << s.status();
  if (GetParam() == QuantMethod::kBaq) {
    EXPECT_NEAR(s->achieved_bits, 2.5, kBitsTolerance);
  } else {
    EXPECT_DOUBLE_EQ(s->achieved_bits, 3.0);
  }
  // A random model: perplexity near the vocabulary size, barely moved.
  EXPECT_TRUE(s->published) << s->gate_status;
  EXPECT_GT(s->eval_gate_base_ppl, 1000);
  EXPECT_LT(s->eval_gate_ppl, 1.5 * s->eval_gate_base_ppl);
  std::printf("eval gate ppl %.2f (unquantized %.2f)\n", s->eval_gate_ppl, s->eval_gate_base_ppl);
  // The budget counts the blocks' linears only: 2 x (4 x 64^2 + 2 x 64 x 128).
  EXPECT_EQ(s->quantized_elements, cfg->QuantizableElements());
  EXPECT_EQ(s->quantized_elements, 2 * (4 * 64 * 64 + 2 * 64 * 128));

  const nlohmann::json report = testing::ReadJsonFile(out + "/packed/quant_report.json");
  ASSERT_EQ(report["layers"].size(), 12u);  // 2 blocks x 6 linear layers.
  for (const auto& layer : report["layers"]) {
    EXPECT_EQ(std::string(layer["name"]).find("project"), std::string::npos) << layer["name"];
  }
  auto input = SafetensorsCheckpoint::Open(model);
  auto fake = SafetensorsCheckpoint::Open(out + "/fake-quant");
  ASSERT_TRUE(input.ok() && fake.ok());
  EXPECT_EQ((*fake)->TensorNames(), (*input)->TensorNames());
  for (const std::string& name : {cfg->OptProjectInName(), cfg->OptProjectOutName(),
                                 cfg->EmbedTokensName()}) {
    EXPECT_EQ(Bytes(**fake, name), Bytes(**input, name)) << name << " changed";
  }
  const std::string q = "model.decoder.layers.1.fc1.weight";
  EXPECT_NE(Bytes(**fake, q), Bytes(**input, q)) << "blocks were not quantized";
}

INSTANTIATE_TEST_SUITE_P(Methods, Opt350mQuantizeTest,
                         ::testing::Values(QuantMethod::kBaq, QuantMethod::kGptq),
                         [](const ::testing::TestParamInfo<QuantMethod>& info) {
                           return info.param == QuantMethod::kBaq ? "Baq" : "Gptq";
                         });

INSTANTIATE_TEST_SUITE_P(Methods, OptPreLnQuantizeTest,
                         ::testing::Values(QuantMethod::kBaq, QuantMethod::kGptq),
                         [](const ::testing::TestParamInfo<QuantMethod>& info) {
                           return info.param == QuantMethod::kBaq ? "Baq" : "Gptq";
                         });

TEST(QuantizeProjectionsTest, IsUnimplemented) {
  const std::string model = testing::TinyOpt350mDir();
  ASSERT_FALSE(model.empty());
  JobConfig config = Job(model, testing::MakeScratchDir() + "/out");
  config.quantize_projections = true;
  absl::StatusOr<coordinator::JobSummary> s = testing::RunLocalJob(config);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnimplemented) << s.status();
}

}  // namespace
}  // namespace baq

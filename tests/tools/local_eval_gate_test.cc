// The evaluation gate end to end in local mode (`baq quantize`'s code path:
// JobRunner driving an in-process TorchBlockEngine) on the bundled OPT
// fixture: a gate that cannot pass publishes nothing and names the measured
// perplexity and the limit; a loose ratio gate publishes, with the numbers
// in quant_report.json, and its perplexity is the one `baq eval` computes.
#include <filesystem>
#include <fstream>

#include "coordinator/eval_gate.h"
#include "coordinator/job_runner.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/local_job.h"
#include "tests/testing/test_paths.h"
#include "worker/model/checkpoint_perplexity.h"
#include "worker/torch_block_engine.h"

namespace baq {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kGateSeqlen = 128;

// The first ~3 KB of the bundled evaluation text: a few 128-token windows.
std::string GateText(const std::string& dir) {
  std::ifstream in(testing::SourceDir() + "/examples/eval.txt");
  std::string text(3072, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  const std::string path = dir + "/gate.txt";
  testing::WriteFileOrDie(path, text);
  return path;
}

using testing::ReadJsonFile;
using testing::RunLocalJob;

JobConfig GatedJob(const std::string& scratch) {
  JobConfig c = testing::ExampleFixtureJob(scratch + "/out");
  c.calibration.seqlen = 64;
  // RTN: the gate does not care how the weights were quantized, and RTN
  // keeps the test fast (no Hessians, no GPTQ passes).
  c.quant.method = QuantMethod::kRtn;
  c.quant.target_bits = 4.0;
  c.formats = {OutputFormat::kFakeQuant};
  c.eval_gate.text_file = GateText(scratch);
  c.eval_gate.seqlen = kGateSeqlen;
  return c;
}

double EvalPerplexity(const std::string& model_dir, const std::string& text) {
  worker::CheckpointPerplexityOptions options;
  absl::StatusOr<worker::PerplexityResult> r =
      worker::EvaluateCheckpointPerplexity(model_dir, text, kGateSeqlen, options);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->perplexity : 0;
}

TEST(LocalEvalGateTest, GateThatCannotPassPublishesNothing) {
  const std::string scratch = testing::MakeScratchDir();
  JobConfig config = GatedJob(scratch);
  config.eval_gate.max_ppl = 1.0;  // A perplexity is >= 1.
  absl::StatusOr<coordinator::JobSummary> s = RunLocalJob(config);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition) << s.status();
  EXPECT_NE(s.status().message().find("evaluation gate failed"), std::string::npos) << s.status();
  EXPECT_NE(s.status().message().find("limit 1.0000"), std::string::npos) << s.status();
  std::optional<coordinator::EvalGateResult> gate = coordinator::EvalGateResultOf(s.status());
  ASSERT_TRUE(gate.has_value());
  EXPECT_GT(gate->ppl, 1.0);
  EXPECT_FALSE(gate->passed);
  EXPECT_FALSE(fs::exists(config.output_dir));
  // Nor any staged leftover next to it.
  for (const auto& entry : fs::directory_iterator(scratch)) {
    EXPECT_EQ(entry.path().filename().string().rfind(".out", 0), std::string::npos)
        << entry.path();
  }
}

TEST(LocalEvalGateTest, LooseRatioGatePublishesWithTheNumbers) {
  const std::string scratch = testing::MakeScratchDir();
  JobConfig config = GatedJob(scratch);
  config.eval_gate.max_ppl_ratio = 10.0;
  absl::StatusOr<coordinator::JobSummary> s = RunLocalJob(config);
  ASSERT_TRUE(s.ok()) << s.status();
  nlohmann::json gate = ReadJsonFile(config.output_dir + "/quant_report.json")["eval_gate"];
  ASSERT_TRUE(gate.is_object());
  EXPECT_EQ(gate["data"], config.eval_gate.text_file);
  EXPECT_EQ(gate["seqlen"], kGateSeqlen);
  EXPECT_EQ(gate["limit_kind"], "max_ppl_ratio");
  EXPECT_EQ(gate["limit"], 10.0);
  EXPECT_EQ(gate["passed"], true);
  const double ppl = gate["ppl"];
  const double base_ppl = gate["base_ppl"];
  EXPECT_EQ(s->eval_gate_ppl, ppl);
  EXPECT_EQ(s->eval_gate_base_ppl, base_ppl);
  // The numbers are `baq eval`'s on the published and the original model.
  EXPECT_EQ(ppl, EvalPerplexity(config.output_dir, config.eval_gate.text_file));
  EXPECT_EQ(base_ppl, EvalPerplexity(config.model_dir, config.eval_gate.text_file));
  EXPECT_GT(ppl, 1.0);
  EXPECT_GT(base_ppl, 1.0);
  EXPECT_LE(ppl, 10.0 * base_ppl);
}

}  // namespace
}  // namespace baq

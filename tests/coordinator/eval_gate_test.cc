// The evaluation gate's decision, report JSON and status payload, and
// RunEvalGate's calls on an engine (which checkpoints it evaluates, errors).
#include "coordinator/eval_gate.h"

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "common/engine_capabilities.h"
#include "gtest/gtest.h"

namespace baq::coordinator {
namespace {

EvalGate Gate(double max_ppl, double max_ratio) {
  EvalGate g;
  g.text_file = "/data/eval.txt";
  g.seqlen = 128;
  g.max_ppl = max_ppl;
  g.max_ppl_ratio = max_ratio;
  return g;
}

TEST(EvalGateTest, MaxPplPassesAtOrBelowTheLimit) {
  EXPECT_TRUE(DecideEvalGate(Gate(20, 0), 19.5, 0).passed);
  EXPECT_TRUE(DecideEvalGate(Gate(20, 0), 20.0, 0).passed);
  EvalGateResult r = DecideEvalGate(Gate(20, 0), 20.01, 0);
  EXPECT_FALSE(r.passed);
  EXPECT_EQ(r.limit_kind, "max_ppl");
  EXPECT_EQ(r.limit, 20);
  EXPECT_EQ(r.data, "/data/eval.txt");
  EXPECT_EQ(r.seqlen, 128);
}

TEST(EvalGateTest, RatioComparesToTheUnquantizedModel) {
  EXPECT_TRUE(DecideEvalGate(Gate(0, 1.5), 15.0, 10.0).passed);
  EXPECT_FALSE(DecideEvalGate(Gate(0, 1.5), 15.1, 10.0).passed);
  EXPECT_EQ(DecideEvalGate(Gate(0, 1.5), 15.0, 10.0).limit_kind, "max_ppl_ratio");
}

TEST(EvalGateTest, NonFiniteOrMissingNumbersFail) {
  EXPECT_FALSE(DecideEvalGate(Gate(20, 0), std::nan(""), 0).passed);
  EXPECT_FALSE(DecideEvalGate(Gate(20, 0), INFINITY, 0).passed);
  EXPECT_FALSE(DecideEvalGate(Gate(0, 2), 5.0, 0).passed);
  EXPECT_FALSE(DecideEvalGate(Gate(0, 2), 5.0, std::nan("")).passed);
}

TEST(EvalGateTest, JsonCarriesTheNumbers) {
  nlohmann::json j = EvalGateJson(DecideEvalGate(Gate(0, 1.5), 15.0, 10.0));
  EXPECT_EQ(j["data"], "/data/eval.txt");
  EXPECT_EQ(j["seqlen"], 128);
  EXPECT_EQ(j["ppl"], 15.0);
  EXPECT_EQ(j["base_ppl"], 10.0);
  EXPECT_EQ(j["limit"], 1.5);
  EXPECT_EQ(j["limit_kind"], "max_ppl_ratio");
  EXPECT_EQ(j["passed"], true);
  EXPECT_TRUE(EvalGateJson(DecideEvalGate(Gate(20, 0), 15.0, 0))["base_ppl"].is_null());
}

TEST(EvalGateTest, FailedGateStatusNamesAndCarriesTheNumbers) {
  const EvalGateResult r = DecideEvalGate(Gate(1.0, 0), 37.25, 0);
  const absl::Status s = GateFailedError(r);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("37.25"), std::string::npos) << s;
  EXPECT_NE(s.message().find("limit 1.0000"), std::string::npos) << s;
  std::optional<EvalGateResult> back = EvalGateResultOf(s);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->ppl, 37.25);
  EXPECT_EQ(back->limit, 1.0);
  EXPECT_FALSE(back->passed);
  EXPECT_FALSE(EvalGateResultOf(absl::FailedPreconditionError("other")).has_value());
  EXPECT_FALSE(EvalGateResultOf(absl::OkStatus()).has_value());
}

// Answers Evaluate() from a table by directory and records the calls.
class TableEngine : public BlockEngine, public CheckpointEvaluator {
 public:
  explicit TableEngine(std::map<std::string, absl::StatusOr<double>> ppl) : ppl_(std::move(ppl)) {}
  std::string name() const override { return "table engine"; }
  CheckpointEvaluator* checkpoint_evaluator() override { return this; }
  void Cancel() override {}
  absl::Status Start(const JobConfig&) override { return absl::OkStatus(); }
  int64_t num_blocks() const override { return 0; }
  absl::StatusOr<BlockMeasurement> Measure(int64_t) override {
    return absl::UnimplementedError("Measure");
  }
  absl::StatusOr<BlockOutput> Quantize(int64_t, const std::vector<LayerAllocation>&) override {
    return absl::UnimplementedError("Quantize");
  }
  void Reset() override {}
  absl::StatusOr<double> Evaluate(const std::string& model_dir, const std::string& text_file,
                                  int64_t seqlen) override {
    calls.push_back(model_dir + "|" + text_file + "|" + std::to_string(seqlen));
    return ppl_.at(model_dir);
  }
  std::vector<std::string> calls;

 private:
  std::map<std::string, absl::StatusOr<double>> ppl_;
};

TEST(EvalGateTest, MaxPplGateEvaluatesOnlyTheStagedOutput) {
  TableEngine engine({{"/stage", 12.0}, {"/model", 10.0}});
  absl::StatusOr<EvalGateResult> r = RunEvalGate(Gate(11, 0), "/model", "/stage", engine);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->passed);
  EXPECT_EQ(r->ppl, 12.0);
  EXPECT_EQ(r->base_ppl, 0);
  EXPECT_EQ(engine.calls, std::vector<std::string>{"/stage|/data/eval.txt|128"});
}

TEST(EvalGateTest, RatioGateEvaluatesBoth) {
  TableEngine engine({{"/stage", 12.0}, {"/model", 10.0}});
  absl::StatusOr<EvalGateResult> r = RunEvalGate(Gate(0, 1.25), "/model", "/stage", engine);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->passed);
  EXPECT_EQ(r->base_ppl, 10.0);
  EXPECT_EQ(engine.calls.size(), 2u);
}

TEST(EvalGateTest, EvaluationErrorsAreReturnedNamingTheCheckpoint) {
  TableEngine engine({{"/stage", 12.0}, {"/model", absl::NotFoundError("no tokenizer.json")}});
  absl::StatusOr<EvalGateResult> r = RunEvalGate(Gate(0, 1.25), "/model", "/stage", engine);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("unquantized model"), std::string::npos) << r.status();
  EXPECT_EQ(RunEvalGate(Gate(11, 0), "/model", "", engine).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(EvalGateTest, EngineWithoutEvaluatorIsFailedPrecondition) {
  class Plain : public TableEngine {
   public:
    Plain() : TableEngine({}) {}
    CheckpointEvaluator* checkpoint_evaluator() override { return nullptr; }
  } engine;
  absl::Status s = RunEvalGate(Gate(11, 0), "/model", "/stage", engine).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("table engine has no checkpoint evaluation capability"),
            std::string::npos)
      << s;
  EXPECT_TRUE(engine.calls.empty());
}

}  // namespace
}  // namespace baq::coordinator

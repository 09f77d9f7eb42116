// JobConfig::Validate: the evaluation gate's rules (a text file and exactly
// one limit > 0, a window of >= 2 tokens, the fake-quant format present).
#include "common/job_config.h"

#include <cmath>
#include <limits>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baq {
namespace {

JobConfig Valid() {
  JobConfig c;
  c.model_dir = "/m";
  c.output_dir = "/o";
  c.calibration.files = {"/c.txt"};
  return c;
}

JobConfig WithGate(double max_ppl, double max_ratio) {
  JobConfig c = Valid();
  c.eval_gate.text_file = "/eval.txt";
  c.eval_gate.seqlen = 128;
  c.eval_gate.max_ppl = max_ppl;
  c.eval_gate.max_ppl_ratio = max_ratio;
  return c;
}

void ExpectInvalid(const JobConfig& c, const std::string& needle) {
  absl::Status s = c.Validate();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(needle), std::string::npos) << s;
}

TEST(JobConfigTest, NoGateIsValid) {
  EXPECT_TRUE(Valid().Validate().ok());
  EXPECT_FALSE(Valid().eval_gate.enabled());
}

TEST(JobConfigTest, GateWithExactlyOneLimitIsValid) {
  EXPECT_TRUE(WithGate(20.0, 0).Validate().ok());
  EXPECT_TRUE(WithGate(0, 1.1).Validate().ok());
}

TEST(JobConfigTest, GateNeedsExactlyOneLimit) {
  ExpectInvalid(WithGate(0, 0), "exactly one limit");
  ExpectInvalid(WithGate(20.0, 1.1), "exactly one limit");
}

TEST(JobConfigTest, GateRejectsNegativeOrNonFiniteLimits) {
  ExpectInvalid(WithGate(-1.0, 0), "eval_gate.max_ppl");
  ExpectInvalid(WithGate(0, -2.0), "eval_gate.max_ppl_ratio");
  ExpectInvalid(WithGate(std::numeric_limits<double>::infinity(), 0), "eval_gate.max_ppl");
  ExpectInvalid(WithGate(0, std::nan("")), "eval_gate.max_ppl_ratio");
}

TEST(JobConfigTest, GateLimitWithoutTextIsRejected) {
  JobConfig c = Valid();
  c.eval_gate.max_ppl = 20.0;
  ExpectInvalid(c, "no text_file");
}

TEST(JobConfigTest, GateNeedsTwoTokenWindows) {
  JobConfig c = WithGate(20.0, 0);
  c.eval_gate.seqlen = 1;
  ExpectInvalid(c, "eval_gate.seqlen");
}

TEST(JobConfigTest, GateNeedsFakeQuantFormat) {
  JobConfig c = WithGate(20.0, 0);
  c.formats = {OutputFormat::kPacked};
  ExpectInvalid(c, "fake-quant");
  c.formats = {OutputFormat::kPacked, OutputFormat::kFakeQuant};
  EXPECT_TRUE(c.Validate().ok());
}

TEST(JobConfigTest, SeveralTargetsNeedParallelModeAndDistinctValidWidths) {
  JobConfig c = Valid();
  c.extra_target_bits = {2.5, 4};
  EXPECT_THAT(c.Validate().message(), ::testing::HasSubstr("parallel mode"));
  c.mode = ExecutionMode::kParallel;
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
  EXPECT_EQ(c.AllTargets(), (std::vector<double>{c.quant.target_bits, 2.5, 4}));
  c.extra_target_bits = {c.quant.target_bits};
  EXPECT_THAT(c.Validate().message(), ::testing::HasSubstr("extra_target_bits[0]"));
  c.extra_target_bits = {3.5, 9};
  EXPECT_THAT(c.Validate().message(), ::testing::HasSubstr("extra_target_bits[1] = 9"));
  c.quant.method = QuantMethod::kGptq;
  c.quant.target_bits = 4;
  c.extra_target_bits = {3.5};
  EXPECT_THAT(c.Validate().message(), ::testing::HasSubstr("fractional widths need method baq"));
  c.extra_target_bits = std::vector<double>(16, 2.0);
  EXPECT_THAT(c.Validate().message(), ::testing::HasSubstr("at most 15"));
}

TEST(JobConfigTest, EachTargetGetsItsOwnOutputDirOnlyWhenThereAreSeveral) {
  JobConfig c = Valid();
  c.output_dir = "/out/m";
  EXPECT_EQ(c.TargetOutputDir(3), "/out/m");
  c.mode = ExecutionMode::kParallel;
  c.extra_target_bits = {2.5};
  EXPECT_EQ(c.TargetOutputDir(3), "/out/m/bits-3");
  EXPECT_EQ(c.TargetOutputDir(2.5), "/out/m/bits-2.5");
  JobConfig one = c.ForTarget(2.5);
  EXPECT_EQ(one.quant.target_bits, 2.5);
  EXPECT_EQ(one.output_dir, "/out/m/bits-2.5");
  EXPECT_TRUE(one.extra_target_bits.empty());
  EXPECT_TRUE(one.Validate().ok());
}

// OPT's project_in/project_out are never quantized yet; asking for it is a
// clear Unimplemented, not a silent no-op.
TEST(JobConfigTest, FormatNamesAndShardLimit) {
  absl::StatusOr<OutputFormat> f = ParseOutputFormat("compressed-tensors");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(*f, OutputFormat::kCompressedTensors);
  EXPECT_EQ(OutputFormatName(OutputFormat::kCompressedTensors), "compressed-tensors");
  JobConfig c = Valid();
  c.max_shard_bytes = 0;
  ExpectInvalid(c, "max_shard_bytes");
}

TEST(JobConfigTest, ForwardDtypeNamesRoundTrip) {
  for (ForwardDtype d : {ForwardDtype::kAuto, ForwardDtype::kFloat32, ForwardDtype::kBFloat16,
                         ForwardDtype::kFloat16}) {
    auto parsed = ParseForwardDtype(ForwardDtypeName(d));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, d);
  }
  EXPECT_EQ(ParseForwardDtype("fp8").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(JobConfig().forward_dtype, ForwardDtype::kAuto);
}

TEST(JobConfigTest, QuantizeProjectionsIsUnimplemented) {
  JobConfig c = Valid();
  c.quantize_projections = true;
  EXPECT_EQ(c.Validate().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(c.Validate().message(), ::testing::HasSubstr("project_in/project_out"));
}

TEST(JobConfigTest, MeasurementDirNeedsParallelMode) {
  JobConfig c = Valid();
  c.measurement_dir = "/data/m";
  EXPECT_THAT(c.Validate().message(), ::testing::HasSubstr("needs mode parallel"));
  c.mode = ExecutionMode::kParallel;
  EXPECT_TRUE(c.Validate().ok());
}

TEST(JobConfigTest, CalibrationShardsAreBoundedAndSequentialOnly) {
  JobConfig c = Valid();
  c.calibration.num_samples = 17;  // Chunks of 8, 8 and 1 window.
  c.calibration_shards = 3;
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
  c.calibration_shards = 4;
  EXPECT_THAT(c.Validate().message(), ::testing::HasSubstr("at most the 3 calibration chunk(s)"));
  for (int bad : {-1, 65}) {
    c.calibration_shards = bad;
    EXPECT_THAT(c.Validate().message(), ::testing::HasSubstr("calibration_shards"));
  }
  c.calibration.num_samples = 64 * 8;
  c.calibration_shards = 64;
  EXPECT_TRUE(c.Validate().ok());
  c.mode = ExecutionMode::kParallel;
  EXPECT_THAT(c.Validate().message(), ::testing::HasSubstr("needs mode sequential"));
  c.calibration_shards = 1;
  EXPECT_TRUE(c.Validate().ok());
}

TEST(JobConfigTest, ZeroShardsMeansOnePerEngineWithinTheChunks) {
  JobConfig c = Valid();
  c.calibration.num_samples = 17;  // 3 chunks.
  c.calibration_shards = 0;
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
  EXPECT_EQ(ResolveCalibrationShards(c, 1), 1);
  EXPECT_EQ(ResolveCalibrationShards(c, 2), 2);
  EXPECT_EQ(ResolveCalibrationShards(c, 8), 3);  // Not more than the chunks.
  c.mode = ExecutionMode::kParallel;
  EXPECT_EQ(ResolveCalibrationShards(c, 2), 1);  // Shards are sequential-only.
  c.calibration_shards = 2;
  EXPECT_EQ(ResolveCalibrationShards(c, 8), 2);  // Explicit counts stay.
}

TEST(JobConfigTest, ModuleAllocationRules) {
  JobConfig c = Valid();
  c.quant.allocation_scope = AllocationScope::kModule;
  c.quant.method = QuantMethod::kGptq;
  c.quant.target_bits = 2.5;  // Fractional: widths mix per module.
  c.quant.group_size = 128;
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
  c.quant.method = QuantMethod::kBaq;  // BAQ's per-column group rule does not apply.
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
  JobConfig rtn = c;
  rtn.quant.method = QuantMethod::kRtn;
  ExpectInvalid(rtn, "not rtn");
  JobConfig order = c;
  order.quant.candidate_bits = {2, 4, 3};
  ExpectInvalid(order, "strictly increasing");
  JobConfig range = c;
  range.quant.candidate_bits = {0, 4};
  ExpectInvalid(range, "[1, 8]");
  JobConfig below = c;
  below.quant.candidate_bits = {3, 4};
  ExpectInvalid(below, "below the narrowest candidate");
  JobConfig gptq = c;
  gptq.quant.candidate_bits = {2, 5};
  gptq.formats = {OutputFormat::kGptq};
  ExpectInvalid(gptq, "2, 3, 4 or 8");
  EXPECT_EQ(ParseAllocationScope("module").value(), AllocationScope::kModule);
  EXPECT_EQ(AllocationScopeName(AllocationScope::kModule), "module");
}

}  // namespace
}  // namespace baq

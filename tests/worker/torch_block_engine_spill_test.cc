// TorchBlockEngine with calibration activations spilled to disk
// (EngineOptions::activation_spill): a job's outputs are byte-identical to
// the in-memory run, in sequential and parallel mode, and the activations
// really live in a spill mapping while the job runs.
#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/block_engine.h"
#include "tests/testing/test_paths.h"
#include "tests/testing/tiny_model.h"
#include "worker/torch_block_engine.h"

namespace baq::worker {
namespace {

using ::testing::HasSubstr;

std::string ProcMaps() {
  std::ifstream in("/proc/self/maps");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

JobConfig Job(QuantMethod method, ExecutionMode mode) {
  JobConfig c;
  c.model_dir = ::baq::testing::TinyLlamaDir();  // The subject is the spilling, not the model.
  c.output_dir = ::baq::testing::MakeScratchDir() + "/unused";
  c.calibration.files = {::baq::testing::SourceDir() + "/examples/calibration.txt"};
  c.calibration.num_samples = 10;  // Two forward chunks, the second short.
  c.calibration.seqlen = 32;
  c.formats = {OutputFormat::kFakeQuant, OutputFormat::kPacked};
  c.mode = mode;
  c.quant.method = method;
  c.quant.target_bits = 3;
  return c;
}

// Every output tensor of the job, in order, as "name:bytes"; and whether a
// spill mapping of `spill_dir` was live after Start().
struct RunResult {
  std::vector<std::string> tensors;
  bool spilled_while_running = false;
};

RunResult RunJob(const JobConfig& config, const std::string& spill_dir, int64_t limit) {
  RunResult result;
  EngineOptions o;
  o.activation_spill.memory_limit_bytes = limit;
  o.activation_spill.spill_dir = spill_dir;
  auto engine = MakeTorchBlockEngine(o);
  EXPECT_TRUE(engine.ok()) << engine.status();
  if (!engine.ok()) return result;
  BlockEngine& e = **engine;
  absl::Status started = e.Start(config);
  EXPECT_TRUE(started.ok()) << started;
  if (!started.ok()) return result;
  result.spilled_while_running = ProcMaps().find(spill_dir + "/baq-activations-") !=
                                 std::string::npos;
  auto quantize = [&](const BlockMeasurement& m) {
    std::vector<LayerAllocation> alloc;
    for (const LayerMeasurement& l : m.layers) alloc.push_back({l.name, {}, 0});
    absl::StatusOr<BlockOutput> out = e.Quantize(m.block, alloc);
    EXPECT_TRUE(out.ok()) << out.status();
    if (!out.ok()) return;
    for (const TensorBytes& t : out->tensors) result.tensors.push_back(t.name + ":" + t.bytes);
  };
  std::vector<BlockMeasurement> measured;
  for (int64_t b = 0; b < e.num_blocks(); ++b) {
    absl::StatusOr<BlockMeasurement> m = e.Measure(b);
    EXPECT_TRUE(m.ok()) << m.status();
    if (!m.ok()) return result;
    if (config.mode == ExecutionMode::kSequential) {
      quantize(*m);
    } else {
      measured.push_back(*m);
    }
  }
  for (const BlockMeasurement& m : measured) quantize(m);
  e.Reset();
  return result;
}

// Name of the first tensor whose bytes differ ("" if none).
std::string FirstDifference(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    if (a[i] != b[i]) return a[i].substr(0, a[i].find(':'));
  }
  return a.size() == b.size() ? "" : "(tensor count)";
}

class SpillTest : public ::testing::TestWithParam<ExecutionMode> {};

TEST_P(SpillTest, OutputsAreByteIdenticalWithAndWithoutSpilling) {
  const JobConfig config = Job(QuantMethod::kGptq, GetParam());
  const std::string dir = ::baq::testing::MakeScratchDir();
  const RunResult in_memory = RunJob(config, dir, /*limit=*/0);
  const RunResult in_memory_again = RunJob(config, dir, /*limit=*/0);
  const RunResult spilled = RunJob(config, dir, /*limit=*/1);
  EXPECT_FALSE(in_memory.spilled_while_running);
  EXPECT_TRUE(spilled.spilled_while_running);
  // Every layer: fake-quant weight + packed qcodes, levels, scales, zeros, g_idx.
  ASSERT_EQ(in_memory.tensors.size(),
            6u * ::baq::testing::kTinyLlamaBlocks * ::baq::testing::kTinyLlamaLinearLayers);
  ASSERT_EQ(spilled.tensors.size(), in_memory.tensors.size());
  // The baseline: the engine is deterministic run to run.
  EXPECT_EQ(FirstDifference(in_memory.tensors, in_memory_again.tensors), "");
  EXPECT_EQ(FirstDifference(in_memory.tensors, spilled.tensors), "");
  // Reset() released every mapping.
  EXPECT_EQ(ProcMaps().find(dir + "/baq-activations-"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Modes, SpillTest,
                         ::testing::Values(ExecutionMode::kSequential, ExecutionMode::kParallel),
                         [](const ::testing::TestParamInfo<ExecutionMode>& i) {
                           return std::string(i.param == ExecutionMode::kSequential ? "Sequential"
                                                                                    : "Parallel");
                         });

TEST(SpillTest, MissingSpillDirFailsStartNamingIt) {
  EngineOptions o;
  o.activation_spill.memory_limit_bytes = 1;
  o.activation_spill.spill_dir = ::baq::testing::MakeScratchDir() + "/missing";
  auto engine = MakeTorchBlockEngine(o);
  ASSERT_TRUE(engine.ok());
  absl::Status s = (*engine)->Start(Job(QuantMethod::kRtn, ExecutionMode::kSequential));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr(o.activation_spill.spill_dir));
}

}  // namespace
}  // namespace baq::worker

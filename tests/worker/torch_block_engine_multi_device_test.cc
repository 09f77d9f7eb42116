// One TorchBlockEngine spanning several devices (EngineOptions::device
// "cpu+cpu": two CPU ranks on two threads, the in-process communicator in
// place of NCCL): its measurements, output tensors and final activations must
// be byte-identical to one device with the same number of Hessian partials,
// in sequential and parallel mode, with an uneven split of calibration chunks.
// The same test on two GPUs is bench/device/multi_gpu.sh (docs/performance.md).
// The model is a tiny random LLaMA (tests/testing/tiny_model.h): the subject
// is the engine's split, not the model.
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/block_engine.h"
#include "common/engine_capabilities.h"
#include "common/job_config.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"
#include "tests/testing/tiny_model.h"
#include "worker/torch_block_engine.h"

namespace baq::worker {
namespace {

// 24 windows of 16 tokens = 3 chunks of kWindowsPerForward (8): rank 0 forwards chunks 0
// and 2, rank 1 chunk 1.
JobConfig SmallJob(ExecutionMode mode) {
  JobConfig c;
  c.model_dir = testing::TinyLlamaDir();
  c.output_dir = testing::MakeScratchDir() + "/unused";
  c.calibration.files = {testing::SourceDir() + "/examples/calibration.txt"};
  c.calibration.num_samples = 24;
  c.calibration.seqlen = 16;
  c.formats = {OutputFormat::kFakeQuant, OutputFormat::kPacked};
  c.quant.method = QuantMethod::kBaq;
  c.mode = mode;
  return c;
}

struct JobResult {
  std::vector<BlockMeasurement> measurements;
  std::vector<BlockOutput> outputs;
  std::string final_activations;  // Sequential mode: the last block's output.
};

// Drives the engine as the JobRunner does, with 3 bits on every column.
absl::StatusOr<JobResult> RunJob(const std::string& device, int hessian_partials,
                                 ExecutionMode mode) {
  EngineOptions options;
  options.device = device;
  options.num_threads = 1;
  options.hessian_partials = hessian_partials;
  absl::StatusOr<std::unique_ptr<BlockEngine>> engine = MakeTorchBlockEngine(options);
  if (!engine.ok()) return engine.status();
  BlockEngine& e = **engine;
  if (absl::Status s = e.Start(SmallJob(mode)); !s.ok()) return s;
  JobResult result;
  for (int64_t block = 0; block < e.num_blocks(); ++block) {
    absl::StatusOr<BlockMeasurement> m = e.Measure(block);
    if (!m.ok()) return m.status();
    std::vector<LayerAllocation> allocation;
    for (const LayerMeasurement& l : m->layers) {
      allocation.push_back(
          LayerAllocation{l.name, std::vector<int32_t>(l.column_loss.size(), 8), 0});
    }
    result.measurements.push_back(*m);
    absl::StatusOr<BlockOutput> out = e.Quantize(block, allocation);
    if (!out.ok()) return out.status();
    result.outputs.push_back(*std::move(out));
  }
  if (mode == ExecutionMode::kSequential) {
    absl::StatusOr<std::string> acts = CapabilityOf<ActivationTransfer>(e)->ExportInputs(e.num_blocks());
    if (!acts.ok()) return acts.status();
    result.final_activations = *std::move(acts);
  }
  return result;
}

void ExpectIdentical(const JobResult& a, const JobResult& b) {
  ASSERT_EQ(a.measurements.size(), b.measurements.size());
  for (size_t i = 0; i < a.measurements.size(); ++i) {
    ASSERT_EQ(a.measurements[i].layers.size(), b.measurements[i].layers.size());
    for (size_t l = 0; l < a.measurements[i].layers.size(); ++l) {
      const LayerMeasurement& x = a.measurements[i].layers[l];
      const LayerMeasurement& y = b.measurements[i].layers[l];
      EXPECT_EQ(x.name, y.name);
      ASSERT_FALSE(x.column_loss.empty()) << x.name;
      EXPECT_EQ(x.column_loss, y.column_loss) << x.name;  // Exact doubles.
    }
  }
  ASSERT_EQ(a.outputs.size(), b.outputs.size());
  for (size_t i = 0; i < a.outputs.size(); ++i) {
    ASSERT_EQ(a.outputs[i].tensors.size(), b.outputs[i].tensors.size());
    for (size_t t = 0; t < a.outputs[i].tensors.size(); ++t) {
      EXPECT_EQ(a.outputs[i].tensors[t].name, b.outputs[i].tensors[t].name);
      EXPECT_TRUE(a.outputs[i].tensors[t].bytes == b.outputs[i].tensors[t].bytes)
          << a.outputs[i].tensors[t].name;
    }
    EXPECT_EQ(a.outputs[i].tensor_format, b.outputs[i].tensor_format);
    ASSERT_EQ(a.outputs[i].layers.size(), b.outputs[i].layers.size());
    for (size_t l = 0; l < a.outputs[i].layers.size(); ++l) {
      EXPECT_EQ(a.outputs[i].layers[l].proxy_loss, b.outputs[i].layers[l].proxy_loss);
    }
  }
  EXPECT_TRUE(a.final_activations == b.final_activations);
}

TEST(TorchBlockEngineMultiDeviceTest, TwoRanksSequentialMatchOneDeviceWithTwoPartials) {
  absl::StatusOr<JobResult> one = RunJob("cpu", /*hessian_partials=*/2, ExecutionMode::kSequential);
  ASSERT_TRUE(one.ok()) << one.status();
  absl::StatusOr<JobResult> two = RunJob("cpu+cpu", 0, ExecutionMode::kSequential);
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_FALSE(one->final_activations.empty());
  ExpectIdentical(*one, *two);
}

TEST(TorchBlockEngineMultiDeviceTest, TwoRanksParallelMatchOneDeviceWithTwoPartials) {
  absl::StatusOr<JobResult> one = RunJob("cpu", 2, ExecutionMode::kParallel);
  ASSERT_TRUE(one.ok()) << one.status();
  absl::StatusOr<JobResult> two = RunJob("cpu,cpu", 2, ExecutionMode::kParallel);
  ASSERT_TRUE(two.ok()) << two.status();
  ExpectIdentical(*one, *two);
}

TEST(TorchBlockEngineMultiDeviceTest, RejectsPartialsThatDoNotFitTheDevices) {
  EngineOptions options;
  options.device = "cpu+cpu";
  options.hessian_partials = 3;
  absl::StatusOr<std::unique_ptr<BlockEngine>> e = MakeTorchBlockEngine(options);
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(e.status().message().find("hessian_partials"), std::string::npos);
  options.device = "cpu+";
  EXPECT_EQ(MakeTorchBlockEngine(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.device = "cpu";
  options.hessian_partials = -1;
  EXPECT_EQ(MakeTorchBlockEngine(options).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace baq::worker

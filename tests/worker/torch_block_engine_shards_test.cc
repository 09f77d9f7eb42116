// Calibration shards on TorchBlockEngines (CPU): a job split into S = 3
// shards must give byte-identical measurements, output tensors and final
// activations whether one engine holds every shard (Measure merges them
// itself), three engines hold one shard each, or two engines hold them
// unevenly, with the coordinator's driver (coordinator/calibration_shards.h)
// merging the fp64 partials in between; and one engine with S = 3 must equal
// the unsharded engine with hessian_partials = 3 (the same partials, the
// same merge order). Allocation module's candidate losses (GPTQ at every
// candidate width) are byte-identical the same way, so the coordinator's
// deterministic solve gives the same widths. Plus the engine's failure paths.
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/block_engine.h"
#include "common/engine_capabilities.h"
#include "common/job_config.h"
#include "coordinator/calibration_shards.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"
#include "tests/testing/tiny_model.h"
#include "worker/torch_block_engine.h"

namespace baq::worker {
namespace {

// The engine's capabilities (a TorchBlockEngine offers them all).
ShardedCalibration& Shards(BlockEngine& e) { return *CapabilityOf<ShardedCalibration>(e); }
ActivationTransfer& Transfer(BlockEngine& e) { return *CapabilityOf<ActivationTransfer>(e); }

constexpr int kShards = 3;

// A job's method and how many of the model's blocks run: BAQ's pass 1
// dominates the CPU time, so the BAQ comparison runs one block (its final
// activations are block 1's inputs, from the quantized block 0 per shard)
// and the GPTQ ones two (block 1 sees quantized, sharded inputs).
struct Plan {
  QuantMethod method = QuantMethod::kGptq;
  int64_t blocks = 2;
  bool module_allocation = false;
};

// 24 windows of 16 tokens = 3 chunks of 8 windows: one per shard; the
// uneven two-engine split gives engine 0 chunks 0 and 2.
JobConfig SmallJob(int shards, QuantMethod method = QuantMethod::kGptq, bool module = false) {
  JobConfig c;
  c.model_dir = testing::TinyLlamaDir();  // The subject is the split, not the model.
  c.output_dir = testing::MakeScratchDir() + "/unused";
  c.calibration.files = {testing::SourceDir() + "/examples/calibration.txt"};
  c.calibration.num_samples = 24;
  c.calibration.seqlen = 16;
  c.formats = {OutputFormat::kFakeQuant, OutputFormat::kPacked};
  c.quant.method = method;
  c.quant.target_bits = 3;
  c.mode = ExecutionMode::kSequential;
  c.calibration_shards = shards;
  if (module) c.quant.allocation_scope = AllocationScope::kModule;
  return c;
}

std::unique_ptr<BlockEngine> MakeEngine(int hessian_partials = 0) {
  EngineOptions options;
  options.device = "cpu";
  options.num_threads = 1;
  options.hessian_partials = hessian_partials;
  absl::StatusOr<std::unique_ptr<BlockEngine>> engine = MakeTorchBlockEngine(options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? *std::move(engine) : nullptr;
}

// 3 bits (8 levels) on every column for BAQ; GPTQ ignores the levels;
// allocation module reads the width (3).
std::vector<LayerAllocation> ThreeBits(const BlockMeasurement& m) {
  std::vector<LayerAllocation> allocation;
  for (const LayerMeasurement& l : m.layers) {
    allocation.push_back(LayerAllocation{l.name, std::vector<int32_t>(l.column_loss.size(), 8), 3});
  }
  return allocation;
}

struct JobResult {
  std::vector<BlockMeasurement> measurements;
  std::vector<BlockOutput> outputs;
  std::vector<std::string> final_activations;  // Per shard (or one: unsharded).
};

// One engine, driven by plain Measure/Quantize.
absl::StatusOr<JobResult> RunOneEngine(int shards, int hessian_partials, Plan plan) {
  std::unique_ptr<BlockEngine> e = MakeEngine(hessian_partials);
  if (e == nullptr) return absl::InternalError("no engine");
  const JobConfig job = SmallJob(shards, plan.method, plan.module_allocation);
  if (absl::Status s = e->Start(job); !s.ok()) return s;
  JobResult r;
  for (int64_t b = 0; b < plan.blocks; ++b) {
    absl::StatusOr<BlockMeasurement> m = e->Measure(b);
    if (!m.ok()) return m.status();
    absl::StatusOr<BlockOutput> out = e->Quantize(b, ThreeBits(*m));
    if (!out.ok()) return out.status();
    r.measurements.push_back(*std::move(m));
    r.outputs.push_back(*std::move(out));
  }
  for (int k = 0; k < shards; ++k) {
    absl::StatusOr<std::string> x =
        shards > 1 ? Shards(*e).ExportShardInputs(plan.blocks, k)
                   : Transfer(*e).ExportInputs(plan.blocks);
    if (!x.ok()) return x.status();
    r.final_activations.push_back(*std::move(x));
  }
  return r;
}

// `engines` engines, driven as the JobRunner drives a sharded job.
absl::StatusOr<JobResult> RunSharded(int engines, Plan plan) {
  std::vector<std::unique_ptr<BlockEngine>> owned;
  std::vector<BlockEngine*> live;
  for (int i = 0; i < engines; ++i) {
    owned.push_back(MakeEngine());
    if (owned.back() == nullptr) return absl::InternalError("no engine");
    const JobConfig job = SmallJob(kShards, plan.method, plan.module_allocation);
    if (absl::Status s = owned.back()->Start(job); !s.ok()) return s;
    live.push_back(owned.back().get());
  }
  coordinator::ShardedBlock run(kShards);
  run.Assign(live);
  JobResult r;
  for (int64_t b = 0; b < plan.blocks; ++b) {
    absl::StatusOr<BlockMeasurement> m = run.Measure(b);
    if (!m.ok()) return m.status();
    absl::StatusOr<BlockOutput> out = run.Quantize(b, ThreeBits(*m));
    if (!out.ok()) return out.status();
    r.measurements.push_back(*std::move(m));
    r.outputs.push_back(*std::move(out));
  }
  absl::StatusOr<std::vector<std::string>> acts = run.ExportInputs(plan.blocks);
  if (!acts.ok()) return acts.status();
  r.final_activations = *std::move(acts);
  return r;
}

void ExpectIdentical(const JobResult& a, const JobResult& b, bool activations = true) {
  ASSERT_EQ(a.measurements.size(), b.measurements.size());
  for (size_t i = 0; i < a.measurements.size(); ++i) {
    ASSERT_EQ(a.measurements[i].layers.size(), b.measurements[i].layers.size());
    for (size_t l = 0; l < a.measurements[i].layers.size(); ++l) {
      const LayerMeasurement& x = a.measurements[i].layers[l];
      EXPECT_EQ(x.column_loss, b.measurements[i].layers[l].column_loss) << x.name;  // Exact.
      EXPECT_EQ(x.candidate_loss, b.measurements[i].layers[l].candidate_loss) << x.name;
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
    for (size_t l = 0; l < a.outputs[i].layers.size(); ++l) {
      EXPECT_EQ(a.outputs[i].layers[l].proxy_loss, b.outputs[i].layers[l].proxy_loss);
    }
  }
  if (!activations) return;
  ASSERT_EQ(a.final_activations.size(), b.final_activations.size());
  for (size_t k = 0; k < a.final_activations.size(); ++k) {
    EXPECT_FALSE(a.final_activations[k].empty());
    EXPECT_TRUE(a.final_activations[k] == b.final_activations[k]) << "shard " << k;
  }
}

TEST(TorchBlockEngineShardsTest, ThreeEnginesMatchOneEngineHoldingEveryShard) {
  const Plan baq{QuantMethod::kBaq, 1};
  absl::StatusOr<JobResult> one = RunOneEngine(kShards, 0, baq);
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_FALSE(one->measurements[0].layers[0].column_loss.empty());
  absl::StatusOr<JobResult> three = RunSharded(3, baq);
  ASSERT_TRUE(three.ok()) << three.status();
  ExpectIdentical(*one, *three);
}

TEST(TorchBlockEngineShardsTest, TwoEnginesOwningUnevenShardsMatchOneEngine) {
  absl::StatusOr<JobResult> one = RunOneEngine(kShards, 0, Plan{});
  ASSERT_TRUE(one.ok()) << one.status();
  // Engine 0 owns shards 0 and 2, engine 1 shard 1: the same bytes.
  absl::StatusOr<JobResult> two = RunSharded(2, Plan{});
  ASSERT_TRUE(two.ok()) << two.status();
  ExpectIdentical(*one, *two);
}

TEST(TorchBlockEngineShardsTest, ModuleAllocationLossesMatchAcrossEngines) {
  const Plan module{QuantMethod::kGptq, 1, /*module_allocation=*/true};
  absl::StatusOr<JobResult> one = RunOneEngine(kShards, 0, module);
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_EQ(one->measurements[0].layers[0].candidate_loss.size(), 4u);  // 2, 3, 4, 8 bits.
  absl::StatusOr<JobResult> three = RunSharded(3, module);
  ASSERT_TRUE(three.ok()) << three.status();
  ExpectIdentical(*one, *three);
}

TEST(TorchBlockEngineShardsTest, OneEngineWithShardsEqualsUnshardedPartials) {
  // S = 3 on one engine makes the partials and the merge of the unsharded
  // engine with hessian_partials = 3: the same outputs.
  absl::StatusOr<JobResult> sharded = RunOneEngine(kShards, 0, Plan{});
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  absl::StatusOr<JobResult> partials = RunOneEngine(1, 3, Plan{});
  ASSERT_TRUE(partials.ok()) << partials.status();
  ExpectIdentical(*sharded, *partials, /*activations=*/false);
}

TEST(TorchBlockEngineShardsTest, UnshardedJobRefusesShardCalls) {
  std::unique_ptr<BlockEngine> e = MakeEngine();
  ASSERT_TRUE(e->Start(SmallJob(1)).ok());
  EXPECT_EQ(Shards(*e).AccumulateHessians(0, {0}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Shards(*e).ExportShardInputs(0, 0).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // And a sharded job refuses whole-block transfers.
  std::unique_ptr<BlockEngine> s = MakeEngine();
  ASSERT_TRUE(s->Start(SmallJob(kShards)).ok());
  absl::StatusOr<std::string> x = Transfer(*s).ExportInputs(0);
  EXPECT_EQ(x.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(x.status().message().find("ExportShardInputs"), std::string::npos);
}

TEST(TorchBlockEngineShardsTest, RejectsEnginesThatCannotShard) {
  std::unique_ptr<BlockEngine> p2 = MakeEngine(/*hessian_partials=*/2);
  absl::Status s = p2->Start(SmallJob(kShards));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("hessian_partials = 2"), std::string::npos) << s;
  EngineOptions options;
  options.device = "cpu+cpu";
  absl::StatusOr<std::unique_ptr<BlockEngine>> two = MakeTorchBlockEngine(options);
  ASSERT_TRUE(two.ok());
  s = (*two)->Start(SmallJob(2));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("single-device"), std::string::npos) << s;
  // More shards than calibration chunks: the config is refused.
  JobConfig c = SmallJob(4);
  EXPECT_EQ(c.Validate().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TorchBlockEngineShardsTest, ShardCallsCheckTheirArguments) {
  std::unique_ptr<BlockEngine> e = MakeEngine();
  ASSERT_TRUE(e->Start(SmallJob(kShards)).ok());
  EXPECT_EQ(Shards(*e).AccumulateHessians(0, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Shards(*e).AccumulateHessians(0, {1, 0}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Shards(*e).AccumulateHessians(0, {3}).status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::vector<HessianPartial>> parts = Shards(*e).AccumulateHessians(0, {1});
  ASSERT_TRUE(parts.ok()) << parts.status();
  ASSERT_FALSE(parts->empty());
  for (const HessianPartial& p : *parts) EXPECT_EQ(p.shard, 1);
  // The engine now owns shard 1 only: shard 0's inputs were dropped.
  absl::StatusOr<std::vector<HessianPartial>> again = Shards(*e).AccumulateHessians(0, {0});
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(again.status().message().find("shard 0"), std::string::npos);
  // Measure would need every shard.
  EXPECT_EQ(e->Measure(0).status().code(), absl::StatusCode::kFailedPrecondition);
  // A merged sum with the wrong width is refused, naming the layer.
  std::vector<HessianPartial> wrong = *parts;
  wrong[0].bytes = parts->back().bytes;  // fc2's (wider) sum as q/k/v's.
  absl::Status s = Shards(*e).ImportHessians(0, wrong);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("columns"), std::string::npos) << s;
  // A subset of the groups is taken (LayerOwnership: owners get only their
  // layers' groups); measuring a layer of a missing group fails, naming it.
  s = Shards(*e).ImportHessians(0, {(*parts)[0]});
  EXPECT_TRUE(s.ok()) << s;
  s = e->Measure(0).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("no Hessian for"), std::string::npos) << s;
}

}  // namespace
}  // namespace baq::worker

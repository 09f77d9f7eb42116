// LayerOwnership on TorchBlockEngines (CPU, the OPT fixture): two engines
// holding one calibration shard each, driven through the resident protocol
// (AccumulateHessians, a merge in shard order, ImportHessians of the owners'
// groups only, MeasureLayers/QuantizeLayers split between them,
// AdvanceShards with the other's weights), must give byte-identical
// measurements, output tensors and next-block inputs to one engine holding
// both shards with Measure + Quantize, over every block. A shard restored
// from a checkpoint (or embedded again) on a third engine and replayed with
// every layer's weights must reach the same inputs. Plus the error paths.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/block_engine.h"
#include "common/engine_capabilities.h"
#include "common/file_contents.h"
#include "common/job_config.h"
#include "gtest/gtest.h"
#include "tests/testing/layer_ownership_driver.h"
#include "tests/testing/test_paths.h"
#include "worker/engine/compact_weight.h"
#include "worker/torch_block_engine.h"

namespace baq::worker {
namespace {

using testing::BlockResult;
using testing::Checkpoint;
using testing::ExpectIdentical;
using testing::Owner;
using testing::Shards;
using testing::ThreeBits;

constexpr int kBlocks = 6;  // examples/opt-fixture.

// 16 windows of 16 tokens = 2 chunks of 8 windows: one per shard.
JobConfig SmallJob(int shards, QuantMethod method = QuantMethod::kGptq) {
  JobConfig c;
  c.model_dir = testing::SourceDir() + "/examples/opt-fixture";
  c.output_dir = testing::MakeScratchDir() + "/unused";
  c.calibration.files = {testing::SourceDir() + "/examples/calibration.txt"};
  c.calibration.num_samples = 16;
  c.calibration.seqlen = 16;
  c.formats = {OutputFormat::kFakeQuant, OutputFormat::kPacked};
  c.quant.method = method;
  c.quant.target_bits = 3;
  c.mode = ExecutionMode::kSequential;
  c.calibration_shards = shards;
  return c;
}

std::unique_ptr<BlockEngine> StartedEngine(const JobConfig& job, bool async_checkpoints = false) {
  EngineOptions options;
  options.device = "cpu";
  options.num_threads = 1;
  options.async_shard_checkpoints = async_checkpoints;
  absl::StatusOr<std::unique_ptr<BlockEngine>> engine = MakeTorchBlockEngine(options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  if (!engine.ok()) return nullptr;
  absl::Status s = (*engine)->Start(job);
  EXPECT_TRUE(s.ok()) << s;
  return s.ok() ? *std::move(engine) : nullptr;
}

// One engine (all shards, or unsharded), Measure + Quantize.
std::vector<BlockResult> RunPlain(const JobConfig& job, int64_t blocks) {
  std::unique_ptr<BlockEngine> e = StartedEngine(job);
  if (e == nullptr) return {};
  return testing::RunPlain(e.get(), blocks);
}

// Two engines, one shard each.
std::vector<BlockResult> RunResident(const JobConfig& job, int64_t blocks,
                                     const std::string& checkpoint_dir = "",
                                     int64_t checkpoint_block = -1) {
  std::unique_ptr<BlockEngine> a = StartedEngine(job);
  std::unique_ptr<BlockEngine> b = StartedEngine(job);
  if (a == nullptr || b == nullptr) return {};
  return testing::RunResident(a.get(), b.get(), blocks, checkpoint_dir, checkpoint_block);
}

TEST(TorchBlockEngineLayerOwnershipTest, TwoOwnersMatchOneEngineOverEveryBlock) {
  const JobConfig job = SmallJob(2);
  std::vector<BlockResult> one = RunPlain(job, kBlocks);
  ASSERT_EQ(one.size(), static_cast<size_t>(kBlocks));
  ASSERT_EQ(one[0].next_inputs.size(), 2u);
  std::vector<BlockResult> two = RunResident(job, kBlocks);
  ExpectIdentical(one, two);
}

TEST(TorchBlockEngineLayerOwnershipTest, TwoBaqOwnersMatchOneEngine) {
  const JobConfig job = SmallJob(2, QuantMethod::kBaq);
  std::vector<BlockResult> one = RunPlain(job, 2);
  ASSERT_EQ(one.size(), 2u);
  ASSERT_FALSE(one[0].measurement.layers[0].column_loss.empty());
  ExpectIdentical(one, RunResident(job, 2));
}

TEST(TorchBlockEngineLayerOwnershipTest, QuantizeLayersAndAdvanceEqualQuantize) {
  // Unsharded: shard 0 is the job's inputs.
  const JobConfig job = SmallJob(1);
  std::vector<BlockResult> plain = RunPlain(job, kBlocks);
  ASSERT_EQ(plain.size(), static_cast<size_t>(kBlocks));
  std::unique_ptr<BlockEngine> e = StartedEngine(job);
  ASSERT_NE(e, nullptr);
  const std::string dir = testing::MakeScratchDir();
  std::vector<BlockResult> owned;
  for (int64_t b = 0; b < kBlocks; ++b) {
    BlockResult r;
    absl::StatusOr<BlockMeasurement> m = e->Measure(b);
    ASSERT_TRUE(m.ok()) << m.status();
    std::vector<int32_t> all;
    for (size_t i = 0; i < m->layers.size(); ++i) all.push_back(static_cast<int32_t>(i));
    absl::StatusOr<OwnedLayersOutput> q = Owner(*e).QuantizeLayers(b, all, ThreeBits(*m));
    ASSERT_TRUE(q.ok()) << q.status();
    ASSERT_TRUE(Owner(*e).AdvanceShards(b, {}).ok());
    r.measurement = *std::move(m);
    r.output = q->output;
    r.next_inputs = Checkpoint(*e, b + 1, dir);
    owned.push_back(std::move(r));
  }
  ExpectIdentical(plain, owned);
}

TEST(TorchBlockEngineLayerOwnershipTest, ReplayFromCheckpointAndFromEmbeddings) {
  const JobConfig job = SmallJob(2);
  const std::string ckpt = testing::MakeScratchDir();
  constexpr int64_t kFrom = 2;
  std::vector<BlockResult> run = RunResident(job, kBlocks, ckpt, kFrom);
  ASSERT_EQ(run.size(), static_cast<size_t>(kBlocks));
  ASSERT_TRUE(std::filesystem::exists(ckpt + "/shard-0.block-2.baqa"));
  ASSERT_TRUE(std::filesystem::exists(ckpt + "/shard-1.block-2.baqa"));
  // Shard 0 from the checkpoint of block 2, shard 1 embedded again; replayed
  // with every layer's weights. The last block's inputs must match the run's.
  std::unique_ptr<BlockEngine> e = StartedEngine(job);
  ASSERT_NE(e, nullptr);
  // Drop what Start embedded, so shard 1 really comes from RestoreShard.
  ASSERT_TRUE(Shards(*e).ExportShardInputs(0, 0).ok());
  ASSERT_TRUE(Shards(*e).ExportShardInputs(0, 1).ok());
  ASSERT_TRUE(Owner(*e).RestoreShard(kFrom, 0, ckpt).ok());
  ASSERT_TRUE(Owner(*e).RestoreShard(0, 1, "").ok());
  const std::string dir = testing::MakeScratchDir();
  for (int64_t b = 0; b + 1 < kBlocks; ++b) {
    absl::Status s = Owner(*e).AdvanceShards(b, run[b].weights);
    ASSERT_TRUE(s.ok()) << s;
    std::map<int32_t, std::string> next = Checkpoint(*e, b + 1, dir);
    for (const auto& [k, bytes] : next) {
      EXPECT_TRUE(bytes == run[b].next_inputs.at(k)) << "block " << b + 1 << " shard " << k;
    }
    EXPECT_EQ(next.size(), b + 1 >= kFrom ? 2u : 1u) << "block " << b + 1;
  }
}

TEST(TorchBlockEngineLayerOwnershipTest, ErrorPaths) {
  const JobConfig job = SmallJob(2);
  std::unique_ptr<BlockEngine> e = StartedEngine(job);
  ASSERT_NE(e, nullptr);
  absl::StatusOr<std::vector<LayerShape>> layers = Owner(*e).BlockLayers(0);
  ASSERT_TRUE(layers.ok());
  ASSERT_EQ(layers->size(), 6u);  // q, k, v, out, fc1, fc2.
  EXPECT_EQ((*layers)[4].rows, 1536);
  EXPECT_EQ((*layers)[4].columns, 384);
  EXPECT_EQ(Owner(*e).BlockLayers(kBlocks).status().code(), absl::StatusCode::kInvalidArgument);

  absl::StatusOr<std::vector<HessianPartial>> parts = Shards(*e).AccumulateHessians(0, {0, 1});
  ASSERT_TRUE(parts.ok()) << parts.status();
  // fc1's group only (the partials list shard 0's groups first).
  std::vector<HessianPartial> fc1;
  for (const HessianPartial& p : *parts) {
    if (p.shard == 0 && p.input_group == (*layers)[4].input_group) fc1.push_back(p);
  }
  ASSERT_EQ(fc1.size(), 1u);
  ASSERT_TRUE(Shards(*e).ImportHessians(0, fc1).ok());
  // A layer without an imported Hessian: FailedPrecondition naming it.
  absl::StatusOr<BlockMeasurement> m = Owner(*e).MeasureLayers(0, {0});
  EXPECT_EQ(m.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(m.status().message().find((*layers)[0].name), std::string::npos) << m.status();
  EXPECT_EQ(e->Measure(0).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Owner(*e).MeasureLayers(0, {4, 4}).status().code(),
            absl::StatusCode::kInvalidArgument);
  m = Owner(*e).MeasureLayers(0, {4});
  ASSERT_TRUE(m.ok()) << m.status();
  absl::StatusOr<OwnedLayersOutput> q = Owner(*e).QuantizeLayers(0, {4}, ThreeBits(*m));
  ASSERT_TRUE(q.ok()) << q.status();
  ASSERT_EQ(q->weights.size(), 1u);
  EXPECT_EQ(q->weights[0].name, (*layers)[4].name);
  // The compact encoding (engine/compact_weight.h): a 3-bit layer in well
  // under a third of its float16 bytes.
  EXPECT_TRUE(IsCompactWeight(q->weights[0]));
  EXPECT_LT(q->weights[0].bytes.size() * 3, 1536u * 384u * 2u);
  // Quantized once: its weight is the quantized one now.
  EXPECT_EQ(Owner(*e).QuantizeLayers(0, {4}, ThreeBits(*m)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // Missing weights: FailedPrecondition naming the first missing layer.
  absl::Status s = Owner(*e).AdvanceShards(0, {});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find((*layers)[0].name), std::string::npos) << s;
  // A weight of an unknown layer or the wrong shape: InvalidArgument.
  TensorBytes bad = q->weights[0];
  bad.name = "model.decoder.layers.0.nope";
  EXPECT_EQ(Owner(*e).AdvanceShards(0, {bad}).code(), absl::StatusCode::kInvalidArgument);
  bad = q->weights[0];
  bad.name = (*layers)[0].name;
  s = Owner(*e).AdvanceShards(0, {bad});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find((*layers)[0].name), std::string::npos) << s;

  // RestoreShard: bad shard, missing file, malformed file, no dir past 0.
  const std::string dir = testing::MakeScratchDir();
  EXPECT_EQ(Owner(*e).RestoreShard(0, 2, dir).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Owner(*e).RestoreShard(0, -1, "").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Owner(*e).RestoreShard(1, 0, dir).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Owner(*e).RestoreShard(1, 0, "").code(), absl::StatusCode::kInvalidArgument);
  {
    std::FILE* f = std::fopen((dir + "/shard-0.block-1.baqa").c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fputs("not activations", f);
    std::fclose(f);
  }
  EXPECT_EQ(Owner(*e).RestoreShard(1, 0, dir).code(), absl::StatusCode::kDataLoss);
  // Checkpoint of a block this engine holds no shard of: nothing written.
  absl::StatusOr<std::vector<int32_t>> none = Owner(*e).CheckpointShards(3, dir);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());
}

TEST(TorchBlockEngineLayerOwnershipTest, AsynchronousCheckpointsReportErrorsOnTheNextCall) {
  const JobConfig job = SmallJob(2);
  std::unique_ptr<BlockEngine> sync = StartedEngine(job);
  std::unique_ptr<BlockEngine> async = StartedEngine(job, /*async_checkpoints=*/true);
  ASSERT_NE(sync, nullptr);
  ASSERT_NE(async, nullptr);
  // The same files, read back by RestoreShard (which waits for the write).
  const std::string a = testing::MakeScratchDir();
  const std::string b = testing::MakeScratchDir();
  std::map<int32_t, std::string> want = Checkpoint(*sync, 0, a);
  ASSERT_EQ(want.size(), 2u);
  absl::StatusOr<std::vector<int32_t>> shards = Owner(*async).CheckpointShards(0, b);
  ASSERT_TRUE(shards.ok()) << shards.status();
  EXPECT_EQ(*shards, (std::vector<int32_t>{0, 1}));
  ASSERT_TRUE(Owner(*async).RestoreShard(0, 1, b).ok());
  EXPECT_TRUE(*ReadFileContents(b + "/shard-1.block-0.baqa") == want.at(1));
  EXPECT_TRUE(*ReadFileContents(b + "/shard-0.block-0.baqa") == want.at(0));

  // A write that fails in the background (the target name is a non-empty
  // directory, so the rename fails) is reported by the next checkpoint call.
  const std::string bad = testing::MakeScratchDir();
  std::filesystem::create_directories(bad + "/shard-0.block-0.baqa/x");
  ASSERT_TRUE(Owner(*async).CheckpointShards(0, bad).ok());
  absl::StatusOr<std::vector<int32_t>> next = Owner(*async).CheckpointShards(0, b);
  EXPECT_EQ(next.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(next.status().message().find("shard-0.block-0.baqa"), std::string::npos)
      << next.status();
  EXPECT_NE(next.status().message().find("earlier"), std::string::npos) << next.status();
  // Reported once: the call after that writes again.
  EXPECT_TRUE(Owner(*async).CheckpointShards(0, b).ok());
  // Synchronous engines fail at once.
  EXPECT_EQ(Owner(*sync).CheckpointShards(0, bad).status().code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace baq::worker

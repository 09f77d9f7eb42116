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
#include "common/hessian_format.h"
#include "common/job_config.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"
#include "worker/torch_block_engine.h"

namespace baq::worker {
namespace {

ShardedCalibration& Shards(BlockEngine& e) { return *CapabilityOf<ShardedCalibration>(e); }
LayerOwnership& Owner(BlockEngine& e) { return *CapabilityOf<LayerOwnership>(e); }

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

std::unique_ptr<BlockEngine> StartedEngine(const JobConfig& job) {
  EngineOptions options;
  options.device = "cpu";
  options.num_threads = 1;
  absl::StatusOr<std::unique_ptr<BlockEngine>> engine = MakeTorchBlockEngine(options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  if (!engine.ok()) return nullptr;
  absl::Status s = (*engine)->Start(job);
  EXPECT_TRUE(s.ok()) << s;
  return s.ok() ? *std::move(engine) : nullptr;
}

// 3 bits (8 levels) on every column for BAQ; GPTQ ignores the levels.
std::vector<LayerAllocation> ThreeBits(const BlockMeasurement& m) {
  std::vector<LayerAllocation> allocation;
  for (const LayerMeasurement& l : m.layers) {
    allocation.push_back(LayerAllocation{l.name, std::vector<int32_t>(l.column_loss.size(), 8), 0});
  }
  return allocation;
}

// The checkpoint files of `e` at `block`, by shard.
std::map<int32_t, std::string> Checkpoint(BlockEngine& e, int64_t block, const std::string& dir) {
  std::map<int32_t, std::string> out;
  absl::StatusOr<std::vector<int32_t>> shards = Owner(e).CheckpointShards(block, dir);
  EXPECT_TRUE(shards.ok()) << shards.status();
  if (!shards.ok()) return out;
  for (int32_t k : *shards) {
    absl::StatusOr<std::string> bytes =
        ReadFileContents(absl::StrCat(dir, "/shard-", k, ".block-", block, ".baqa"));
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    if (bytes.ok()) out[k] = *std::move(bytes);
  }
  return out;
}

struct BlockResult {
  BlockMeasurement measurement;
  BlockOutput output;
  std::map<int32_t, std::string> next_inputs;  // Shard -> inputs of block + 1.
  std::vector<TensorBytes> weights;            // Every layer's (resident runs).
};

// One engine (all shards, or unsharded), Measure + Quantize.
std::vector<BlockResult> RunPlain(const JobConfig& job, int64_t blocks) {
  std::vector<BlockResult> out;
  std::unique_ptr<BlockEngine> e = StartedEngine(job);
  if (e == nullptr) return out;
  const std::string dir = testing::MakeScratchDir();
  for (int64_t b = 0; b < blocks; ++b) {
    BlockResult r;
    absl::StatusOr<BlockMeasurement> m = e->Measure(b);
    EXPECT_TRUE(m.ok()) << m.status();
    if (!m.ok()) return out;
    absl::StatusOr<BlockOutput> q = e->Quantize(b, ThreeBits(*m));
    EXPECT_TRUE(q.ok()) << q.status();
    if (!q.ok()) return out;
    r.measurement = *std::move(m);
    r.output = *std::move(q);
    r.next_inputs = Checkpoint(*e, b + 1, dir);
    out.push_back(std::move(r));
  }
  return out;
}

// Merges the two engines' partials group by group in shard order.
std::map<int32_t, HessianPartial> Merge(const std::vector<HessianPartial>& shard0,
                                        const std::vector<HessianPartial>& shard1) {
  std::map<int32_t, HessianPartial> merged;
  for (const HessianPartial& p : shard0) {
    HessianPartial m = p;
    m.shard = -1;
    merged[p.input_group] = std::move(m);
  }
  for (const HessianPartial& p : shard1) {
    absl::Status s = AddHessianSum(p.bytes, &merged.at(p.input_group).bytes);
    EXPECT_TRUE(s.ok()) << s;
  }
  return merged;
}

// Two engines, shard k on engine k; layer i owned by engine i % 2.
std::vector<BlockResult> RunResident(const JobConfig& job, int64_t blocks,
                                     const std::string& checkpoint_dir = "",
                                     int64_t checkpoint_block = -1) {
  std::vector<BlockResult> out;
  std::unique_ptr<BlockEngine> engines[2] = {StartedEngine(job), StartedEngine(job)};
  if (engines[0] == nullptr || engines[1] == nullptr) return out;
  const std::string dir = testing::MakeScratchDir();
  for (int64_t b = 0; b < blocks; ++b) {
    if (b == checkpoint_block) {
      for (auto& e : engines) EXPECT_TRUE(Owner(*e).CheckpointShards(b, checkpoint_dir).ok());
    }
    std::vector<HessianPartial> partials[2];
    for (int k = 0; k < 2; ++k) {
      absl::StatusOr<std::vector<HessianPartial>> p =
          Shards(*engines[k]).AccumulateHessians(b, {k});
      EXPECT_TRUE(p.ok()) << p.status();
      if (!p.ok()) return out;
      partials[k] = *std::move(p);
    }
    std::map<int32_t, HessianPartial> merged = Merge(partials[0], partials[1]);
    absl::StatusOr<std::vector<LayerShape>> layers = Owner(*engines[0]).BlockLayers(b);
    EXPECT_TRUE(layers.ok()) << layers.status();
    if (!layers.ok()) return out;
    std::vector<int32_t> owned[2];
    std::map<int32_t, bool> groups[2];
    for (size_t i = 0; i < layers->size(); ++i) {
      owned[i % 2].push_back(static_cast<int32_t>(i));
      groups[i % 2][(*layers)[i].input_group] = true;
    }
    BlockMeasurement parts_m[2];
    for (int k = 0; k < 2; ++k) {
      std::vector<HessianPartial> mine;
      for (const auto& [g, unused] : groups[k]) mine.push_back(merged.at(g));
      absl::Status s = Shards(*engines[k]).ImportHessians(b, std::move(mine));
      EXPECT_TRUE(s.ok()) << s;
      absl::StatusOr<BlockMeasurement> m = Owner(*engines[k]).MeasureLayers(b, owned[k]);
      EXPECT_TRUE(m.ok()) << m.status();
      if (!m.ok()) return out;
      EXPECT_EQ(m->layers.size(), owned[k].size());
      parts_m[k] = *std::move(m);
    }
    OwnedLayersOutput parts_q[2];
    for (int k = 0; k < 2; ++k) {
      absl::StatusOr<OwnedLayersOutput> q =
          Owner(*engines[k]).QuantizeLayers(b, owned[k], ThreeBits(parts_m[k]));
      EXPECT_TRUE(q.ok()) << q.status();
      if (!q.ok()) return out;
      EXPECT_EQ(q->weights.size(), owned[k].size());
      EXPECT_EQ(q->tensors_per_layer.size(), owned[k].size());
      parts_q[k] = *std::move(q);
    }
    // Interleave the owners' pieces in the block's layer order.
    BlockResult r;
    r.measurement.block = b;
    r.output.block = b;
    size_t next_tensor[2] = {0, 0};
    for (size_t i = 0; i < layers->size(); ++i) {
      const int k = i % 2;
      const size_t j = i / 2;
      r.measurement.layers.push_back(parts_m[k].layers[j]);
      r.output.layers.push_back(parts_q[k].output.layers[j]);
      for (int32_t t = 0; t < parts_q[k].tensors_per_layer[j]; ++t) {
        r.output.tensors.push_back(parts_q[k].output.tensors[next_tensor[k]]);
        r.output.tensor_format.push_back(parts_q[k].output.tensor_format[next_tensor[k]]);
        ++next_tensor[k];
      }
      r.weights.push_back(parts_q[k].weights[j]);
      EXPECT_EQ(r.weights.back().name, (*layers)[i].name);
    }
    for (int k = 0; k < 2; ++k) {
      absl::Status s = Owner(*engines[k]).AdvanceShards(b, parts_q[1 - k].weights);
      EXPECT_TRUE(s.ok()) << s;
      std::map<int32_t, std::string> next =
          Checkpoint(*engines[k], b + 1, dir);
      r.next_inputs.insert(next.begin(), next.end());
    }
    out.push_back(std::move(r));
  }
  return out;
}

void ExpectIdentical(const std::vector<BlockResult>& a, const std::vector<BlockResult>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("block ", i));
    ASSERT_EQ(a[i].measurement.layers.size(), b[i].measurement.layers.size());
    for (size_t l = 0; l < a[i].measurement.layers.size(); ++l) {
      EXPECT_EQ(a[i].measurement.layers[l].name, b[i].measurement.layers[l].name);
      EXPECT_EQ(a[i].measurement.layers[l].column_loss, b[i].measurement.layers[l].column_loss);
    }
    ASSERT_EQ(a[i].output.tensors.size(), b[i].output.tensors.size());
    for (size_t t = 0; t < a[i].output.tensors.size(); ++t) {
      EXPECT_EQ(a[i].output.tensors[t].name, b[i].output.tensors[t].name);
      EXPECT_EQ(a[i].output.tensor_format[t], b[i].output.tensor_format[t]);
      EXPECT_TRUE(a[i].output.tensors[t].bytes == b[i].output.tensors[t].bytes)
          << a[i].output.tensors[t].name;
    }
    ASSERT_EQ(a[i].output.layers.size(), b[i].output.layers.size());
    for (size_t l = 0; l < a[i].output.layers.size(); ++l) {
      EXPECT_EQ(a[i].output.layers[l].proxy_loss, b[i].output.layers[l].proxy_loss);
    }
    ASSERT_EQ(a[i].next_inputs.size(), b[i].next_inputs.size());
    for (const auto& [k, bytes] : a[i].next_inputs) {
      ASSERT_EQ(b[i].next_inputs.count(k), 1u) << "shard " << k;
      EXPECT_FALSE(bytes.empty());
      EXPECT_TRUE(bytes == b[i].next_inputs.at(k)) << "shard " << k;
    }
  }
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
  EXPECT_EQ(q->weights[0].dtype, DType::kF16);
  EXPECT_EQ(q->weights[0].bytes.size(), 1536u * 384u * 2u);
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

}  // namespace
}  // namespace baq::worker

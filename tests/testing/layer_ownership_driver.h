// tests/testing/layer_ownership_driver.h
//
// Drives BlockEngines through LayerOwnership (common/engine_capabilities.h)
// as the coordinator does, for tests that compare it with one engine's
// Measure + Quantize: RunPlain (one engine), RunResident (two engines with
// one calibration shard each: AccumulateHessians, a merge in shard order,
// ImportHessians of each owner's groups, MeasureLayers/QuantizeLayers split
// between them (layer i on engine i % 2), AdvanceShards with the other's
// weights), and ExpectIdentical on their measurements, output tensors and
// next-block inputs (read back through CheckpointShards). Works for local
// and remote engines alike. Header-only; gtest expectations; one thread.
//
// Example:
//   std::vector<BlockResult> one = RunPlain(all_shards.get(), 2);
//   ExpectIdentical(one, RunResident(a.get(), b.get(), 2));
#ifndef BAQ_TESTS_TESTING_LAYER_OWNERSHIP_DRIVER_H_
#define BAQ_TESTS_TESTING_LAYER_OWNERSHIP_DRIVER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/block_engine.h"
#include "common/engine_capabilities.h"
#include "common/file_contents.h"
#include "common/hessian_format.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace baq::testing {

inline ShardedCalibration& Shards(BlockEngine& e) { return *CapabilityOf<ShardedCalibration>(e); }
inline LayerOwnership& Owner(BlockEngine& e) { return *CapabilityOf<LayerOwnership>(e); }

// 3 bits (8 levels) on every column for BAQ; GPTQ ignores the levels.
inline std::vector<LayerAllocation> ThreeBits(const BlockMeasurement& m) {
  std::vector<LayerAllocation> allocation;
  for (const LayerMeasurement& l : m.layers) {
    allocation.push_back(LayerAllocation{l.name, std::vector<int32_t>(l.column_loss.size(), 8), 0});
  }
  return allocation;
}

// The checkpoint files of `e` at `block`, by shard.
inline std::map<int32_t, std::string> Checkpoint(BlockEngine& e, int64_t block, const std::string& dir) {
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

// One started engine (all shards, or unsharded), Measure + Quantize over
// blocks [0, blocks).
inline std::vector<BlockResult> RunPlain(BlockEngine* e, int64_t blocks) {
  std::vector<BlockResult> out;
  const std::string dir = MakeScratchDir();
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
inline std::map<int32_t, HessianPartial> MergeInShardOrder(const std::vector<HessianPartial>& shard0,
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

// Two started engines of a job with two shards, shard k on engine k, layer
// i owned by engine i % 2, over blocks [0, blocks); with a checkpoint dir,
// both engines checkpoint their shards there at `checkpoint_block`.
inline std::vector<BlockResult> RunResident(BlockEngine* e0, BlockEngine* e1, int64_t blocks,
                                            const std::string& checkpoint_dir = "",
                                            int64_t checkpoint_block = -1) {
  std::vector<BlockResult> out;
  BlockEngine* engines[2] = {e0, e1};
  const std::string dir = MakeScratchDir();
  for (int64_t b = 0; b < blocks; ++b) {
    if (b == checkpoint_block) {
      for (BlockEngine* e : engines) EXPECT_TRUE(Owner(*e).CheckpointShards(b, checkpoint_dir).ok());
    }
    std::vector<HessianPartial> partials[2];
    for (int k = 0; k < 2; ++k) {
      absl::StatusOr<std::vector<HessianPartial>> p =
          Shards(*engines[k]).AccumulateHessians(b, {k});
      EXPECT_TRUE(p.ok()) << p.status();
      if (!p.ok()) return out;
      partials[k] = *std::move(p);
    }
    std::map<int32_t, HessianPartial> merged = MergeInShardOrder(partials[0], partials[1]);
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

inline void ExpectIdentical(const std::vector<BlockResult>& a, const std::vector<BlockResult>& b) {
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

}  // namespace baq::testing

#endif  // BAQ_TESTS_TESTING_LAYER_OWNERSHIP_DRIVER_H_

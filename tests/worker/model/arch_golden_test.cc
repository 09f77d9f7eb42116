// Golden forward tests of every architecture of issue 18 against transformers
// 5.x: tiny random-weight models in tests/worker/model/testdata/arch/<family>
// made by tools/golden/make_arch_goldens.py (bfloat16 weights, goldens
// computed in float32 from them, eager attention). Each family's test skips,
// naming the generator, until its files exist.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "common/model_config.h"
#include "common/safetensors.h"
#include "common/safetensors_checkpoint.h"
#include "tests/testing/arch_goldens.h"
#include "tests/testing/test_paths.h"
#include "tests/worker/model/model_test_util.h"
#include "worker/model/block_factory.h"
#include "worker/model/model_head.h"
#include "worker/model/moe_mlp.h"
#include "worker/model/tensor_convert.h"

namespace baq::worker {
namespace {

using testing::Compare;
using testing::ErrorStats;

// Both sides compute in float32 from the same weights; only summation order
// (oneDNN vs transformers' matmuls, attention chunking) differs. Errors are
// max|ours - golden| / max|golden|.
constexpr double kEmbedTol = 1e-6;
constexpr double kBlockTol = 2e-5;    // One block from the golden input.
constexpr double kChainedTol = 5e-5;  // Blocks 0..i from the embeddings.
constexpr double kLogitsTol = 5e-5;

std::string Sci(double x) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2e", x);
  return buf;
}

class ArchGoldenTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    const std::string dir = ::baq::testing::ArchGoldenDir(GetParam());
    if (!std::ifstream(dir + "/golden_forward.safetensors")) {
      GTEST_SKIP() << "no " << dir << ": run python3 tools/golden/make_arch_goldens.py "
                   << "tests/worker/model/testdata/arch (torch + transformers 5.x)";
    }
    absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
    ASSERT_TRUE(config.ok()) << config.status();
    config_ = *config;
    absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> ckpt = SafetensorsCheckpoint::Open(dir);
    ASSERT_TRUE(ckpt.ok()) << ckpt.status();
    ckpt_ = std::move(*ckpt);
    auto file = SafetensorsFile::Open(dir + "/golden_forward.safetensors");
    ASSERT_TRUE(file.ok()) << file.status();
    for (const TensorInfo& info : (*file)->tensors()) {
      absl::StatusOr<TensorView> view = (*file)->Get(info.name);
      ASSERT_TRUE(view.ok()) << view.status();
      absl::StatusOr<at::Tensor> t = CopyTensorFromView(*view, at::kCPU, ToScalarType(info.dtype));
      ASSERT_TRUE(t.ok()) << t.status();
      golden_[info.name] = *t;
    }
  }

  at::Tensor Hidden(int64_t i) { return golden_.at("hidden_states." + std::to_string(i)); }
  std::unique_ptr<DecoderBlock> Block(int64_t i) {
    auto block = LoadDecoderBlock(config_, *ckpt_, i, BlockOptions{});
    EXPECT_TRUE(block.ok()) << block.status();
    return block.ok() ? std::move(*block) : nullptr;
  }

  ModelConfig config_;
  std::unique_ptr<SafetensorsCheckpoint> ckpt_;
  std::map<std::string, at::Tensor> golden_;
};

TEST_P(ArchGoldenTest, ForwardMatchesTransformers) {
  auto embed = TokenEmbedding::Load(config_, *ckpt_, BlockOptions{});
  ASSERT_TRUE(embed.ok()) << embed.status();
  auto hidden = (*embed)->Embed(golden_.at("input_ids"));
  ASSERT_TRUE(hidden.ok()) << hidden.status();
  EXPECT_LE(Compare(*hidden, Hidden(0)).max_rel, kEmbedTol);

  at::Tensor chained = *hidden;
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    auto block = Block(i);
    ASSERT_NE(block, nullptr);
    auto next = block->Forward(chained);
    ASSERT_TRUE(next.ok()) << next.status();
    chained = *next;
    if (i + 1 < config_.num_layers) {
      auto single = block->Forward(Hidden(i));
      ASSERT_TRUE(single.ok()) << single.status();
      const ErrorStats s = Compare(*single, Hidden(i + 1));
      EXPECT_LE(s.max_rel, kBlockTol) << "block " << i << " (abs " << s.max_abs << ")";
      EXPECT_LE(Compare(chained, Hidden(i + 1)).max_rel, kChainedTol) << "blocks 0.." << i;
      RecordProperty("block" + std::to_string(i) + "_rel", Sci(s.max_rel));
    }
  }
  auto head = OutputHead::Load(config_, *ckpt_, BlockOptions{});
  ASSERT_TRUE(head.ok()) << head.status();
  auto normalized = (*head)->Normalize(chained);
  ASSERT_TRUE(normalized.ok());
  EXPECT_LE(Compare(*normalized, Hidden(config_.num_layers)).max_rel, kChainedTol)
      << "final norm";
  auto logits = (*head)->Logits(chained);
  ASSERT_TRUE(logits.ok()) << logits.status();
  const ErrorStats l = Compare(*logits, golden_.at("logits"));
  EXPECT_LE(l.max_rel, kLogitsTol) << "logits (abs " << l.max_abs << ")";
  RecordProperty("logits_rel", Sci(l.max_rel));
}

// The observer sees every quantizable layer's input once per Forward(), the
// layers of one input group the same rows; MoE experts see their routed
// tokens (topped up to the floor) and the block reports the counts.
TEST_P(ArchGoldenTest, ObserverSeesEveryLayerAndExpertCounts) {
  auto block = Block(0);
  ASSERT_NE(block, nullptr);
  std::map<std::string, at::Tensor> seen;
  block->set_input_observer([&](const LinearLayerSpec& layer, const at::Tensor& x) {
    EXPECT_EQ(seen.count(layer.short_name), 0u) << layer.short_name;
    EXPECT_EQ(x.size(1), layer.in_features) << layer.short_name;
    seen[layer.short_name] = x.clone();
    return absl::OkStatus();
  });
  ASSERT_TRUE(block->Forward(Hidden(0)).ok());
  block->set_input_observer(nullptr);
  std::map<int, at::Tensor> group_input;
  for (const LinearLayerSpec& spec : config_.BlockLinearLayers(0)) {
    ASSERT_EQ(seen.count(spec.short_name), 1u) << spec.short_name;
    auto [it, inserted] = group_input.emplace(spec.input_group, seen.at(spec.short_name));
    if (!inserted) {
      EXPECT_TRUE(at::equal(it->second, seen.at(spec.short_name))) << spec.short_name;
    }
  }
  const MoeTokenCounts* counts = block->moe_token_counts();
  if (!config_.IsMoeLayer(0)) {
    EXPECT_EQ(counts, nullptr);
    return;
  }
  ASSERT_NE(counts, nullptr);
  int64_t routed = 0;
  for (int64_t e = 0; e < config_.num_experts; ++e) routed += counts->routed[e];
  EXPECT_EQ(routed, 64 * config_.num_experts_per_tok);
  if (std::string(GetParam()) == "mixtral_starved") {
    // The generator's router never picks expert 3; it is calibrated on the
    // floor (BlockOptions::moe_min_calibration_tokens) of tokens ranked next.
    EXPECT_EQ(counts->routed[3], 0);
    EXPECT_EQ(counts->top_up[3], BlockOptions{}.moe_min_calibration_tokens);
    EXPECT_EQ(seen.at("block_sparse_moe.experts.3.w1").size(0),
              BlockOptions{}.moe_min_calibration_tokens);
  }
}

INSTANTIATE_TEST_SUITE_P(Families, ArchGoldenTest,
                         ::testing::ValuesIn(::baq::testing::kArchGoldenFamilies),
                         ::baq::testing::ArchGoldenFamilyName);

}  // namespace
}  // namespace baq::worker

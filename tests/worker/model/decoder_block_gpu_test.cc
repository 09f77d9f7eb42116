// The block forward on CUDA in the checkpoint's dtype (the forward_dtype auto
// path: bf16/fp16 matmuls on tensor cores, fused attention with LibTorch >=
// 2.0) against the fixtures' goldens, which transformers computed in that
// dtype on an H100. CTest label gpu; skips without a CUDA device or the shared
// data. Tolerances as the CPU half-precision test (decoder_block_test.cc):
// max|ours - golden| / max|golden| in units of the dtype's epsilon.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <iostream>
#include <string>

#include "tests/worker/model/model_test_util.h"
#include "worker/model/block_factory.h"

namespace baq::worker {
namespace {

using testing::Compare;
using testing::ErrorStats;

constexpr double kSingleBlockTolEps = 2.0;
constexpr double kChainedBlockTolEps = 4.0;

class GoldenBlockGpuTest : public testing::GoldenFixtureTest {
 protected:
  void SetUp() override {
    if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
    testing::GoldenFixtureTest::SetUp();
  }
};

TEST_P(GoldenBlockGpuTest, EachBlockMatchesGoldenInCheckpointDtype) {
  BlockOptions options;
  options.device = at::Device(at::kCUDA, 0);
  options.compute_dtype = ToScalarType(model_.config.dtype);
  const auto hidden = [&](int i) {
    return golden_.at("hidden_states." + std::to_string(i)).to(options.device, options.compute_dtype);
  };
  at::Tensor chained = hidden(0);
  for (int i = 0; i + 1 < model_.config.num_layers; ++i) {
    auto block = LoadDecoderBlock(model_.config, *model_.ckpt, i, options);
    ASSERT_TRUE(block.ok()) << block.status();
    auto single = (*block)->Forward(hidden(i));
    ASSERT_TRUE(single.ok()) << single.status();
    auto next = (*block)->Forward(chained);
    ASSERT_TRUE(next.ok()) << next.status();
    chained = *next;
    const at::Tensor expected = golden_.at("hidden_states." + std::to_string(i + 1));
    const ErrorStats s = Compare(single->cpu(), expected);
    const ErrorStats c = Compare(chained.cpu(), expected);
    std::cout << GetParam().name << " block " << i << ": single " << s.max_rel / GetParam().eps
              << " eps, chained " << c.max_rel / GetParam().eps << " eps\n";
    EXPECT_LE(s.max_rel, kSingleBlockTolEps * GetParam().eps) << "block " << i;
    EXPECT_LE(c.max_rel, kChainedBlockTolEps * GetParam().eps) << "blocks 0.." << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenBlockGpuTest, testing::GoldenFixtures(),
                         testing::GoldenFixtureName);

}  // namespace
}  // namespace baq::worker

#include "worker/model/model_head.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <ostream>
#include <string>

#include "tests/worker/model/model_test_util.h"
#include "worker/model/block_factory.h"

namespace baq::worker {
namespace {

using testing::Compare;

// As decoder_block_test: max|ours - golden| / max|golden| in units of the
// golden dtype's epsilon (fp16 2^-10, bf16 2^-7). Measured (OPT, LLaMA):
// embeddings 0.26, 0 eps; final norm after all six blocks 1.10, 1.80 eps;
// logits 0.54, 1.41 eps.
constexpr double kEmbeddingTolEps = 0.5;
constexpr double kFinalNormTolEps = 2.5;
constexpr double kLogitsTolEps = 2.0;
// Measured on an H100 (LibTorch 2.11): blocks up to 1.19 eps (OPT) and 1.65
// eps (LLaMA), logits 0.55 and 1.38 eps.
constexpr double kCudaModelDtypeTolEps = 2.5;

class ModelHeadTest : public testing::GoldenFixtureTest {
 protected:
  void SetUp() override {
    GoldenFixtureTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    auto embed = TokenEmbedding::Load(model_.config, *model_.ckpt, BlockOptions{});
    auto head = OutputHead::Load(model_.config, *model_.ckpt, BlockOptions{});
    ASSERT_TRUE(embed.ok()) << embed.status();
    ASSERT_TRUE(head.ok()) << head.status();
    embed_ = std::move(*embed);
    head_ = std::move(*head);
  }

  std::unique_ptr<TokenEmbedding> embed_;
  std::unique_ptr<OutputHead> head_;
};

TEST_P(ModelHeadTest, WholeModelMatchesGolden) {
  auto hidden = embed_->Embed(golden_.at("input_ids"));
  ASSERT_TRUE(hidden.ok()) << hidden.status();
  EXPECT_LE(Compare(*hidden, golden_.at("hidden_states.0")).max_rel,
            kEmbeddingTolEps * GetParam().eps);
  at::Tensor h = *hidden;
  for (int64_t i = 0; i < model_.config.num_layers; ++i) {
    auto block = LoadDecoderBlock(model_.config, *model_.ckpt, i, BlockOptions{});
    ASSERT_TRUE(block.ok()) << block.status();
    auto out = (*block)->Forward(h);
    ASSERT_TRUE(out.ok()) << out.status();
    h = *out;
  }
  auto normalized = head_->Normalize(h);
  ASSERT_TRUE(normalized.ok()) << normalized.status();
  EXPECT_LE(Compare(*normalized, golden_.at("hidden_states.6")).max_rel,
            kFinalNormTolEps * GetParam().eps);
  auto logits = head_->Logits(h);
  ASSERT_TRUE(logits.ok()) << logits.status();
  EXPECT_LE(Compare(*logits, golden_.at("logits")).max_rel, kLogitsTolEps * GetParam().eps);
}

// On a GPU in the model's own dtype, as production runs: the same
// arithmetic class as the golden run (transformers on an H100), but other
// kernels, so differences of a few ulps remain.
TEST_P(ModelHeadTest, CudaInModelDtypeMatchesGolden) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  BlockOptions options;
  options.device = at::Device(at::kCUDA, 0);
  options.compute_dtype = ToScalarType(model_.config.dtype);
  auto embed = TokenEmbedding::Load(model_.config, *model_.ckpt, options);
  auto head = OutputHead::Load(model_.config, *model_.ckpt, options);
  ASSERT_TRUE(embed.ok() && head.ok());
  auto hidden = (*embed)->Embed(golden_.at("input_ids"));
  ASSERT_TRUE(hidden.ok()) << hidden.status();
  at::Tensor h = *hidden;
  for (int64_t i = 0; i < model_.config.num_layers; ++i) {
    auto block = LoadDecoderBlock(model_.config, *model_.ckpt, i, options);
    ASSERT_TRUE(block.ok()) << block.status();
    auto out = (*block)->Forward(h);
    ASSERT_TRUE(out.ok()) << out.status();
    if (i + 1 < model_.config.num_layers) {
      const double rel = Compare(out->cpu(), golden_.at("hidden_states." + std::to_string(i + 1)))
                             .max_rel;
      std::printf("%s cuda block %lld rel %.3g eps\n", GetParam().name,
                  static_cast<long long>(i), rel / GetParam().eps);
      EXPECT_LE(rel, kCudaModelDtypeTolEps * GetParam().eps) << "block " << i;
    }
    h = *out;
  }
  auto logits = (*head)->Logits(h);
  ASSERT_TRUE(logits.ok()) << logits.status();
  const double rel = Compare(logits->cpu(), golden_.at("logits")).max_rel;
  std::printf("%s cuda logits rel %.3g eps\n", GetParam().name, rel / GetParam().eps);
  EXPECT_LE(rel, kCudaModelDtypeTolEps * GetParam().eps);
}

TEST_P(ModelHeadTest, TokenNllIsChunkedCrossEntropy) {
  const at::Tensor x = golden_.at("hidden_states.5")[0];  // [64, hidden]
  const at::Tensor targets = golden_.at("input_ids")[0];
  auto logits = head_->Logits(x);
  auto h = head_->Normalize(x);
  ASSERT_TRUE(logits.ok() && h.ok());
  const at::Tensor expected =
      -at::log_softmax(*logits, -1).gather(1, targets.unsqueeze(1)).squeeze(1);
  for (int64_t chunk : {5, 64, 1000}) {
    auto nll = head_->TokenNll(*h, targets, chunk);
    ASSERT_TRUE(nll.ok()) << nll.status();
    ASSERT_EQ(nll->sizes(), at::IntArrayRef({64}));
    EXPECT_LE(Compare(*nll, expected).max_abs, 1e-5) << "chunk " << chunk;
  }
  EXPECT_EQ(head_->TokenNll(*h, targets.narrow(0, 0, 3)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(head_->TokenNll(*h, at::full({64}, model_.config.vocab_size, at::kLong))
                .status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(ModelHeadTest, EmbedRejectsBadIds) {
  const int64_t vocab = model_.config.vocab_size;
  EXPECT_EQ(embed_->Embed(at::full({1, 4}, vocab, at::kLong)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(embed_->Embed(at::full({1, 4}, -1, at::kLong)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(embed_->Embed(at::zeros({4}, at::kLong)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(embed_->Embed(at::zeros({1, 4}, at::kFloat)).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto ok = embed_->Embed(at::zeros({2, 4}, at::kInt));  // int32 ids are fine.
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->sizes(), at::IntArrayRef({2, 4, model_.config.hidden_size}));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ModelHeadTest, testing::GoldenFixtures(),
                         testing::GoldenFixtureName);

}  // namespace
}  // namespace baq::worker

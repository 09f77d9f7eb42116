#include "worker/model/moe_mlp.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "worker/model/decoder_block.h"

namespace baq::worker {
namespace {

constexpr int64_t kHidden = 8, kFfn = 6, kExperts = 4, kTokens = 40;

// A tiny MoE: layers 3e, 3e+1, 3e+2 are expert e's gate, up, down; 12..14 the
// shared expert. apply() records what each layer saw (the observer's view).
class TinyMoe {
 public:
  explicit TinyMoe(bool shared) {
    at::manual_seed(7);
    for (int64_t e = 0; e < kExperts + 1; ++e) {
      weights_.push_back(at::randn({kFfn, kHidden}) * 0.5);
      weights_.push_back(at::randn({kFfn, kHidden}) * 0.5);
      weights_.push_back(at::randn({kHidden, kFfn}) * 0.5);
    }
    router_ = at::randn({kExperts, kHidden});
    shared_gate_ = at::randn({1, kHidden});
    layout_.num_experts = kExperts;
    layout_.top_k = 2;
    for (int e = 0; e < kExperts; ++e) {
      layout_.gate.push_back(3 * e);
      layout_.up.push_back(3 * e + 1);
      layout_.down.push_back(3 * e + 2);
    }
    if (shared) {
      layout_.shared_gate = 3 * kExperts;
      layout_.shared_up = 3 * kExperts + 1;
      layout_.shared_down = 3 * kExperts + 2;
    }
  }

  at::Tensor Run(const at::Tensor& x, bool calibrating, MoeTokenCounts* counts = nullptr) {
    seen_.clear();
    auto out = MoeMlp(
        layout_, router_, shared_gate_, x,
        [&](int layer, const at::Tensor& in) -> absl::StatusOr<at::Tensor> {
          seen_[layer] = in.clone();
          return LinearOp(in, weights_[layer], at::Tensor());
        },
        calibrating, counts);
    EXPECT_TRUE(out.ok()) << out.status();
    return out.ok() ? *out : at::Tensor();
  }

  // Direct float64 formula: softmax, top-k, optional renormalization.
  at::Tensor Reference(const at::Tensor& x) const {
    const at::Tensor xd = x.to(at::kDouble);
    const at::Tensor probs = at::softmax(xd.matmul(router_.to(at::kDouble).t()), -1);
    at::Tensor out = at::zeros_like(xd);
    for (int64_t t = 0; t < x.size(0); ++t) {
      auto [w, idx] = at::topk(probs[t], layout_.top_k);
      if (layout_.norm_topk_prob) w = w / w.sum();
      for (int64_t k = 0; k < layout_.top_k; ++k) {
        out[t] += w[k] * Expert(idx[k].item<int64_t>(), xd[t]);
      }
      if (layout_.shared_gate >= 0) {
        out[t] += at::sigmoid(shared_gate_.to(at::kDouble).matmul(xd[t]))[0] * Expert(kExperts, xd[t]);
      }
    }
    return out;
  }

  at::Tensor Expert(int64_t e, const at::Tensor& x) const {
    const auto w = [&](int i) { return weights_[3 * e + i].to(at::kDouble); };
    return w(2).matmul(at::silu(w(0).matmul(x)) * w(1).matmul(x));
  }

  MoeLayout layout_;
  std::vector<at::Tensor> weights_;
  at::Tensor router_, shared_gate_;
  std::map<int, at::Tensor> seen_;
};

TEST(MoeMlpTest, MatchesFormulaWithAndWithoutRenormalization) {
  for (bool norm : {false, true}) {
    for (bool shared : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "norm " << norm << " shared " << shared);
      TinyMoe moe(shared);
      moe.layout_.norm_topk_prob = norm;
      const at::Tensor x = at::randn({kTokens, kHidden});
      const at::Tensor out = moe.Run(x, /*calibrating=*/false);
      EXPECT_LE((out.to(at::kDouble) - moe.Reference(x)).abs().max().item<double>(), 1e-5);
    }
  }
}

TEST(MoeMlpTest, ExpertsSeeOnlyTheirRoutedTokens) {
  TinyMoe moe(/*shared=*/true);
  const at::Tensor x = at::randn({kTokens, kHidden});
  MoeTokenCounts counts;
  moe.Run(x, /*calibrating=*/true, &counts);
  const at::Tensor top = std::get<1>(at::topk(x.matmul(moe.router_.t()), 2));
  int64_t total = 0;
  for (int64_t e = 0; e < kExperts; ++e) {
    const int64_t routed = (top == e).sum().item<int64_t>();
    EXPECT_EQ(counts.routed[e], routed) << e;
    total += counts.routed[e];
    if (routed >= 16) {  // Above the default floor: exactly its tokens.
      EXPECT_EQ(moe.seen_.at(3 * e).size(0), routed) << e;
      EXPECT_EQ(counts.top_up[e], 0) << e;
    }
  }
  EXPECT_EQ(total, kTokens * 2);
  EXPECT_EQ(moe.seen_.at(3 * kExperts).size(0), kTokens);  // Shared expert: all.
}

// Issue 18: a router biased so that one expert gets no tokens. The starved
// expert is calibrated on the floor of tokens the router ranks next for it
// (no empty Hessian, so no NaN), the output is unchanged, and the counts
// name it.
TEST(MoeMlpTest, StarvedExpertIsToppedUpToTheFloor) {
  TinyMoe moe(/*shared=*/false);
  moe.layout_.min_calibration_tokens = 8;
  const at::Tensor x = at::rand({kTokens, kHidden}) + 0.1;  // All positive.
  moe.router_[3].fill_(-5.0);  // Expert 3 always has the lowest logit.
  const at::Tensor plain = moe.Run(x, /*calibrating=*/false);
  EXPECT_EQ(moe.seen_.count(9), 0u);  // transformers skips the expert.
  MoeTokenCounts counts;
  const at::Tensor calibrated = moe.Run(x, /*calibrating=*/true, &counts);
  EXPECT_TRUE(at::equal(plain, calibrated));
  EXPECT_EQ(counts.routed[3], 0);
  EXPECT_EQ(counts.top_up[3], 8);
  ASSERT_EQ(moe.seen_.count(9), 1u);
  EXPECT_EQ(moe.seen_.at(9).size(0), 8);   // gate
  EXPECT_EQ(moe.seen_.at(11).size(0), 8);  // down: the expert run on them.
  EXPECT_TRUE(at::isfinite(moe.seen_.at(11)).all().item<bool>());
  // The top-up rows are the tokens with the highest probability for expert 3.
  const at::Tensor p3 = at::softmax(x.matmul(moe.router_.t()), -1).select(1, 3);
  const at::Tensor best = x.index_select(0, std::get<1>(at::topk(p3, 8)));
  EXPECT_TRUE(at::allclose(moe.seen_.at(9), best));
  // A second batch adds up.
  moe.Run(x, /*calibrating=*/true, &counts);
  EXPECT_EQ(counts.top_up[3], 16);
}

}  // namespace
}  // namespace baq::worker

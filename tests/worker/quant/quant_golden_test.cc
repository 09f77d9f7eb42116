// Golden tests: layer 0 self_attn.q_proj of the OPT fixture, quantized by the
// public reference codes on an H100 (../shared/data/README.md, golden/).
// GPU and CPU float32 arithmetic differ, so we compare the fraction of
// identical fp16 values / codes (>= 99 %) and the proxy loss (within 1 %).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/bit_allocation.h"
#include "common/safetensors.h"
#include "tests/testing/test_paths.h"
#include "worker/quant/baq.h"
#include "worker/quant/gptq.h"

namespace baq::worker {
namespace {

constexpr double kMinIdentical = 0.99;
constexpr double kProxyRtol = 0.01;
constexpr char kPrefix[] = "layers.0.self_attn.q_proj.";

class Golden {
 public:
  explicit Golden(const std::string& name) {
    auto f = SafetensorsFile::Open(testing::SharedDataDir() + "/golden/" + name + ".safetensors");
    EXPECT_TRUE(f.ok()) << f.status();
    if (f.ok()) file_ = std::move(*f);
  }
  bool ok() const { return file_ != nullptr; }

  at::Tensor Get(const std::string& suffix) const {
    auto v = file_->Get(kPrefix + suffix);
    EXPECT_TRUE(v.ok()) << v.status();
    const at::ScalarType t = v->dtype == DType::kF16 ? at::kHalf : at::kFloat;
    EXPECT_TRUE(v->dtype == DType::kF16 || v->dtype == DType::kF32);
    return at::from_blob(const_cast<uint8_t*>(v->bytes.data()), v->shape, t)
        .to(at::kFloat, /*non_blocking=*/false, /*copy=*/true);
  }

 private:
  std::unique_ptr<SafetensorsFile> file_;
};

// Fraction of entries equal after rounding both to fp16 (the golden's dtype).
double IdenticalFp16(const at::Tensor& ours, const at::Tensor& golden) {
  return (ours.to(at::kHalf) == golden.to(at::kHalf)).to(at::kDouble).mean().item<double>();
}

void ExpectClose(const char* what, const at::Tensor& ours, double our_loss,
                 const at::Tensor& golden, const at::Tensor& w, const at::Tensor& h) {
  const double same = IdenticalFp16(ours, golden);
  const double golden_loss = *ProxyLoss(w, golden, h);
  std::printf("[golden] %-28s identical %.4f%%  proxy ours %.6g golden %.6g (%+.3f%%)\n", what,
              100 * same, our_loss, golden_loss, 100 * (our_loss / golden_loss - 1));
  EXPECT_GE(same, kMinIdentical) << what;
  EXPECT_NEAR(our_loss, golden_loss, kProxyRtol * golden_loss) << what;
}

class QuantGoldenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::HaveSharedData()) GTEST_SKIP() << "no shared data";
  }
};

void RunGptqGolden(const std::string& name, GptqOptions o) {
  Golden g(name);
  ASSERT_TRUE(g.ok());
  const at::Tensor w = g.Get("W"), h = g.Get("H");
  auto r = Gptq(w, h, o);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(name.c_str(), r->weight, r->proxy_loss, g.Get("Q.fasterquant"), w, h);
}

TEST_F(QuantGoldenTest, GptqW3) {
  GptqOptions o;
  o.grid.levels = 8;
  RunGptqGolden("gptq_w3", o);
}

TEST_F(QuantGoldenTest, GptqW4Sym) {
  GptqOptions o;
  o.grid = GridOptions{16, /*symmetric=*/true};
  RunGptqGolden("gptq_w4_sym", o);
}

TEST_F(QuantGoldenTest, GptqW3ActOrderG128) {
  GptqOptions o;
  o.grid.levels = 8;
  o.act_order = true;
  o.group_size = 128;
  RunGptqGolden("gptq_w3_actorder_g128", o);
}

// gptq_baq.py's pass-2 allocation for one sublayer: loss_mean = (geo / ari) *
// mean(loss) = geomean(loss + 1e-8) of the same sublayer's pass-1 loss vector;
// 2^R_j = ((loss_j / loss_mean) * 2^(1.95 R))^(1 / 1.95), clamped >= 1, rounded.
std::vector<int32_t> ReferenceAllocation(const at::Tensor& loss, int bits, int* capped) {
  const at::Tensor l = loss.to(at::kFloat);  // the reference keeps float32 losses
  const at::Tensor ari = l.mean();
  const at::Tensor geo = at::exp(at::log(l + 1e-8).mean());
  const at::Tensor mean = (geo / ari) * ari;
  const at::Tensor two_pow_r =
      at::pow((l / mean) * std::exp2(1.95 * bits), 1 / 1.95).clamp_min(1.0).round();
  std::vector<int32_t> levels;
  *capped = 0;
  for (int64_t j = 0; j < l.size(0); ++j) {
    const double v = two_pow_r[j].item<double>();
    if (v > 256) ++*capped;
    levels.push_back(static_cast<int32_t>(std::min(v, 256.0)));
  }
  return levels;
}

void RunBaqGolden(const std::string& name, int bits) {
  Golden g(name);
  ASSERT_TRUE(g.ok());
  const at::Tensor w = g.Get("W"), h = g.Get("H");
  BaqOptions o;
  o.block_size = 1;  // the reference's structure; 128 is the same up to rounding
  auto m = BaqMeasure(w, h, 1 << bits, o);
  ASSERT_TRUE(m.ok()) << m.status();
  ExpectClose((name + " pass 1").c_str(), m->weight, m->proxy_loss,
              g.Get("Q.fasterquant_calib"), w, h);
  // Production path: common/bit_allocation's per-sublayer geomean reference.
  AllocationOptions ao;
  ao.reference_bits = bits;
  const std::vector<double> loss(m->column_loss.data_ptr<double>(),
                                 m->column_loss.data_ptr<double>() + m->column_loss.numel());
  auto alloc = SublayerAllocation(loss, ao);
  ASSERT_TRUE(alloc.ok()) << alloc.status();
  const std::vector<int32_t>& levels = alloc->levels;
  int capped = 0;
  const std::vector<int32_t> transcribed = ReferenceAllocation(m->column_loss, bits, &capped);
  int same = 0;
  double mean_bits = 0;
  for (size_t j = 0; j < levels.size(); ++j) {
    same += levels[j] == transcribed[j];
    mean_bits += std::log2(levels[j]) / levels.size();
  }
  std::printf("[golden] %s allocation: mean log2(L) %.4f, %d columns above 256, "
              "%d/%zu equal to the float32 transcription\n",
              name.c_str(), mean_bits, capped, same, levels.size());
  EXPECT_GE(same, 0.99 * levels.size());
  o.block_size = 128;
  auto q = BaqQuantize(w, h, levels, o);
  ASSERT_TRUE(q.ok()) << q.status();
  ExpectClose((name + " final").c_str(), q->weight, q->proxy_loss, g.Get("Q.fasterquant"), w,
              h);
}

TEST_F(QuantGoldenTest, BaqW3) { RunBaqGolden("baq_w3", 3); }
TEST_F(QuantGoldenTest, BaqW2) { RunBaqGolden("baq_w2", 2); }

}  // namespace
}  // namespace baq::worker

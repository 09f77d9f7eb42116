// Golden tests: layer 0 self_attn.q_proj of the OPT fixture, quantized by the
// public reference codes on an H100 (../shared/data/README.md, golden/).
// GPU and CPU float32 arithmetic differ, so we compare the fraction of
// identical fp16 values / codes (>= 99 %) and the proxy loss (within 1 %).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
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
  std::printf("[golden] %-36s identical %.4f%%  proxy ours %.6g golden %.6g (%+.3f%%)\n", what,
              100 * same, our_loss, golden_loss, 100 * (our_loss / golden_loss - 1));
  EXPECT_GE(same, kMinIdentical) << what;
  EXPECT_NEAR(our_loss, golden_loss, kProxyRtol * golden_loss) << what;
}

// Runs on the CPU, and on CUDA where LibTorch has it (the reference ran there).
class QuantGoldenTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(testing::SharedDataDir() + "/golden/gptq_w3.safetensors")) {
      GTEST_SKIP() << "no golden data in " << testing::SharedDataDir();
    }
    if (std::string(GetParam()) == "cuda" && !at::hasCUDA()) GTEST_SKIP() << "no CUDA";
  }
  at::Device device() const { return at::Device(GetParam()); }
};

void RunGptqGolden(const std::string& name, GptqOptions o, at::Device device) {
  Golden g(name);
  ASSERT_TRUE(g.ok());
  const at::Tensor w = g.Get("W"), h = g.Get("H");
  auto r = Gptq(w.to(device), h.to(device), o);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose((name + " " + device.str()).c_str(), r->weight.cpu(), r->proxy_loss,
              g.Get("Q.fasterquant"), w, h);
}

TEST_P(QuantGoldenTest, GptqW3) {
  GptqOptions o;
  o.grid.levels = 8;
  RunGptqGolden("gptq_w3", o, device());
}

TEST_P(QuantGoldenTest, GptqW4Sym) {
  GptqOptions o;
  o.grid = GridOptions{16, /*symmetric=*/true};
  RunGptqGolden("gptq_w4_sym", o, device());
}

TEST_P(QuantGoldenTest, GptqW3ActOrderG128) {
  GptqOptions o;
  o.grid.levels = 8;
  o.act_order = true;
  o.group_size = 128;
  RunGptqGolden("gptq_w3_actorder_g128", o, device());
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

// The level count of each column of the reference's final Q: the smallest L
// whose BAQ grid (the row range of W) holds >= 99 % of the column's fp16
// values. Lets pass 2 be checked apart from the allocation, which rounds and so
// can flip a column's level on a last-bit change of its pass-1 loss.
std::vector<int32_t> InferLevels(const at::Tensor& w, const at::Tensor& q) {
  const at::Tensor zeros = at::zeros({w.size(0)}, at::kDouble);
  const at::Tensor xmin = at::minimum(at::amin(w.to(at::kDouble), {1}), zeros).unsqueeze(0);
  const at::Tensor xmax = at::maximum(at::amax(w.to(at::kDouble), {1}), zeros).unsqueeze(0);
  const at::Tensor maxq = at::arange(0, 256, at::kDouble).unsqueeze(1);  // L - 1, [256, 1]
  const at::Tensor scale = (xmax - xmin) / maxq.clamp_min(1);
  const at::Tensor zero = at::round(-xmin / scale).masked_fill_((maxq == 0).expand_as(scale), 0);
  std::vector<int32_t> levels;
  for (int64_t j = 0; j < q.size(1); ++j) {
    const at::Tensor col = q.select(1, j).to(at::kDouble).unsqueeze(0);
    const at::Tensor v =
        scale * (at::minimum(at::round(col / scale) + zero, maxq).clamp_min(0) - zero);
    const at::Tensor match = (v.to(at::kHalf) == col.to(at::kHalf)).to(at::kDouble).mean(1);
    const at::Tensor ok = (match >= 0.99).nonzero();
    levels.push_back(ok.numel() == 0 ? -1 : static_cast<int32_t>(ok[0][0].item<int64_t>() + 1));
  }
  return levels;
}

void RunBaqGolden(const std::string& name, int bits, at::Device device) {
  Golden g(name);
  ASSERT_TRUE(g.ok());
  const at::Tensor w = g.Get("W"), h = g.Get("H"), golden_q = g.Get("Q.fasterquant");
  const at::Tensor wd = w.to(device), hd = h.to(device);
  const std::string tag = name + " " + device.str();
  BaqOptions o;
  o.block_size = 1;  // the reference's structure; 128 is the same up to rounding
  auto m = BaqMeasure(wd, hd, 1 << bits, o);
  ASSERT_TRUE(m.ok()) << m.status();
  ExpectClose((tag + " pass 1").c_str(), m->weight.cpu(), m->proxy_loss,
              g.Get("Q.fasterquant_calib"), w, h);
  o.block_size = 128;

  // Pass 2 on the reference's own levels (read back from its Q).
  const std::vector<int32_t> golden_levels = InferLevels(w, golden_q);
  ASSERT_EQ(std::count(golden_levels.begin(), golden_levels.end(), -1), 0);
  auto q = BaqQuantize(wd, hd, golden_levels, o);
  ASSERT_TRUE(q.ok()) << q.status();
  ExpectClose((tag + " final, reference levels").c_str(), q->weight.cpu(), q->proxy_loss, golden_q,
              w, h);

  // Our allocation (common/bit_allocation's per-sublayer geomean reference)
  // from our pass-1 losses, against the reference's levels and a float32
  // transcription of its formula.
  AllocationOptions ao;
  ao.reference_bits = bits;
  const at::Tensor column_loss = m->column_loss.cpu();
  const std::vector<double> loss(column_loss.data_ptr<double>(),
                                 column_loss.data_ptr<double>() + column_loss.numel());
  auto alloc = SublayerAllocation(loss, ao);
  ASSERT_TRUE(alloc.ok()) << alloc.status();
  const std::vector<int32_t>& levels = alloc->levels;
  int capped = 0;
  const std::vector<int32_t> transcribed = ReferenceAllocation(column_loss, bits, &capped);
  int same_transcribed = 0, same_golden = 0;
  double mean_bits = 0, golden_bits = 0;
  for (size_t j = 0; j < levels.size(); ++j) {
    same_transcribed += levels[j] == transcribed[j];
    same_golden += levels[j] == golden_levels[j];
    mean_bits += std::log2(levels[j]) / levels.size();
    golden_bits += std::log2(golden_levels[j]) / levels.size();
  }
  std::printf(
      "[golden] %s allocation: mean log2(L) %.4f (reference %.4f), %d/%zu columns equal to "
      "the reference's, %d/%zu to the float32 transcription, %d above 256\n",
      tag.c_str(), mean_bits, golden_bits, same_golden, levels.size(), same_transcribed,
      levels.size(), capped);
  EXPECT_EQ(same_transcribed, static_cast<int>(levels.size()));
  EXPECT_GE(same_golden, 0.95 * levels.size());
  // End to end: level flips move whole columns, so only the loss is bounded.
  auto e2e = BaqQuantize(wd, hd, levels, o);
  ASSERT_TRUE(e2e.ok()) << e2e.status();
  const double golden_loss = *ProxyLoss(w, golden_q, h);
  std::printf(
      "[golden] %-36s identical %.4f%%  proxy %+.3f%%\n", (tag + " final, our levels").c_str(),
      100 * IdenticalFp16(e2e->weight.cpu(), golden_q), 100 * (e2e->proxy_loss / golden_loss - 1));
  EXPECT_NEAR(e2e->proxy_loss, golden_loss, kProxyRtol * golden_loss);
}

TEST_P(QuantGoldenTest, BaqW3) { RunBaqGolden("baq_w3", 3, device()); }
TEST_P(QuantGoldenTest, BaqW2) { RunBaqGolden("baq_w2", 2, device()); }

INSTANTIATE_TEST_SUITE_P(Devices, QuantGoldenTest, ::testing::Values("cpu", "cuda"));

}  // namespace
}  // namespace baq::worker

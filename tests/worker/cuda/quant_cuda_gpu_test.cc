// GPTQ and BAQ on CUDA against the CPU float64 path (STYLE R25b), CTest label
// gpu. Without a CUDA device the CUDA cases skip; the "cpu" case runs anyway
// and measures CPU float32 against CPU float64: the deviation any float32
// device must stay near, so the CUDA tolerances below are a small multiple of
// what the CPU itself shows (printed by every case).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <iostream>
#include <string>
#include <vector>

#include "worker/quant/baq.h"
#include "worker/quant/gptq.h"
#include "worker/quant/hessian_accumulator.h"

namespace baq::worker {
namespace {

// Float32 against float64: a rounding difference flips a code where a value
// sits near a grid midpoint, and GPTQ's error feedback carries the flip on
// along the row, so a few percent of codes may differ (each by one step) while
// the layer's loss barely moves.
constexpr double kCodeMismatch32 = 0.02;    // fraction of codes
constexpr double kWeightRelErr32 = 0.02;    // ||W_dev - W_ref|| / ||W_ref||
constexpr double kProxyLossRtol32 = 0.005;  // relative change of tr(E H E^T)
constexpr double kColumnLossRtol32 = 0.005;  // relative change of sum_j loss_j
// Float64 on the device: only summation order differs from the CPU.
constexpr double kCodeMismatch64 = 1e-3;
constexpr double kWeightRelErr64 = 1e-3;
constexpr double kProxyLossRtol64 = 1e-6;
constexpr double kColumnLossRtol64 = 1e-6;
// The accumulated Hessian (float64 on both).
constexpr double kHessianRtol = 1e-12;

constexpr int64_t kRows = 384;
constexpr int64_t kCols = 512;

struct Layer {
  at::Tensor weight;   // float32 [rows, cols], CPU
  at::Tensor inputs;   // float32 [tokens, cols], CPU: correlated features
  at::Tensor hessian;  // float64 [cols, cols], CPU
};

Layer MakeLayer(uint64_t seed) {
  at::manual_seed(seed);
  Layer l;
  l.weight = at::randn({kRows, kCols}) * 0.05;
  const at::Tensor mix = at::eye(kCols) + at::randn({kCols, kCols}) * (0.3 / std::sqrt(kCols));
  l.inputs = at::randn({4096, kCols}).mm(mix) * at::rand({1, kCols}).add(0.1);
  HessianAccumulator acc(kCols);
  EXPECT_TRUE(acc.Add(l.inputs).ok());
  l.hessian = *acc.Finalize(at::kDouble);
  return l;
}

struct Tolerances {
  double code, weight, proxy, column;
};
Tolerances For(at::ScalarType dtype) {
  if (dtype == at::kDouble) {
    return {kCodeMismatch64, kWeightRelErr64, kProxyLossRtol64, kColumnLossRtol64};
  }
  return {kCodeMismatch32, kWeightRelErr32, kProxyLossRtol32, kColumnLossRtol32};
}

double RelDiff(double a, double b) { return std::abs(a - b) / std::abs(b); }

// What the comparison reads of a GptqResult or BaqResult.
struct View {
  at::Tensor codes, weight, column_loss;
  double proxy_loss;
};
template <typename R>
View Of(const R& r) {
  return {r.codes.cpu(), r.weight.cpu(), r.column_loss.cpu(), r.proxy_loss};
}

void ExpectClose(const View& got, const View& ref, at::ScalarType dtype, const std::string& what) {
  const Tolerances tol = For(dtype);
  const double mismatch = (got.codes != ref.codes).to(at::kDouble).mean().item<double>();
  const double werr = ((got.weight.to(at::kDouble) - ref.weight.to(at::kDouble)).norm() /
                       ref.weight.to(at::kDouble).norm())
                          .item<double>();
  const double proxy = RelDiff(got.proxy_loss, ref.proxy_loss);
  const double column = RelDiff(got.column_loss.sum().item<double>(),
                                ref.column_loss.sum().item<double>());
  std::cout << what << ": code mismatch " << mismatch << ", weight rel err " << werr
            << ", proxy loss rel diff " << proxy << ", column loss rel diff " << column << "\n";
  EXPECT_LE(mismatch, tol.code) << what;
  EXPECT_LE(werr, tol.weight) << what;
  EXPECT_LE(proxy, tol.proxy) << what;
  EXPECT_LE(column, tol.column) << what;
  EXPECT_TRUE(at::isfinite(got.weight).all().item<bool>()) << what;
}

struct Case {
  std::string device;  // "cpu" (float32 control) or "cuda"
  at::ScalarType dtype;
};

class QuantCudaGpuTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    if (GetParam().device != "cpu" && !at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  }
  at::Device device() const { return at::Device(GetParam().device); }
  at::ScalarType dtype() const { return GetParam().dtype; }
  std::string Name(const std::string& what) const {
    return what + " on " + GetParam().device + " " + std::string(at::toString(dtype()));
  }
};

TEST_P(QuantCudaGpuTest, HessianMatchesCpu) {
  const Layer l = MakeLayer(1);
  HessianAccumulator acc(kCols, device());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(acc.Add(l.inputs.narrow(0, i * 1024, 1024)).ok());
  const at::Tensor h = acc.Finalize(at::kDouble)->cpu();
  EXPECT_LT(((h - l.hessian).abs().max() / l.hessian.abs().max()).item<double>(), kHessianRtol);
}

// The CUDA path accumulates the upper triangle only (DSYRK) and mirrors it
// when read: the sum is exactly symmetric, merges with full sums (a CPU
// partial, a deserialized one) and round-trips through the wire format.
TEST_P(QuantCudaGpuTest, HessianTriangleMirrorsMergesAndSerializes) {
  const Layer l = MakeLayer(3);
  HessianAccumulator acc(kCols, device());
  ASSERT_TRUE(acc.Add(l.inputs.narrow(0, 0, 2048)).ok());
  HessianAccumulator cpu_half(kCols);
  ASSERT_TRUE(cpu_half.Add(l.inputs.narrow(0, 2048, 2048)).ok());
  ASSERT_TRUE(acc.Merge(cpu_half).ok());
  // Adding after a merge keeps the full sum's upper half.
  HessianAccumulator again(kCols, device());
  ASSERT_TRUE(again.Add(l.inputs.narrow(0, 0, 1024)).ok());
  ASSERT_TRUE(again.Merge(*HessianAccumulator::Deserialize(cpu_half.Serialize(), device())).ok());
  ASSERT_TRUE(again.Add(l.inputs.narrow(0, 1024, 1024)).ok());
  for (HessianAccumulator* a : {&acc, &again}) {
    const at::Tensor h = a->Finalize(at::kDouble)->cpu();
    EXPECT_TRUE(at::equal(h, h.t()));
    EXPECT_LT(((h - l.hessian).abs().max() / l.hessian.abs().max()).item<double>(), kHessianRtol);
    auto wire = HessianAccumulator::Deserialize(a->Serialize());
    ASSERT_TRUE(wire.ok()) << wire.status();
    EXPECT_TRUE(at::equal(wire->sum(), a->sum().cpu()));
  }
}

TEST_P(QuantCudaGpuTest, HessianNonFiniteInputIsReported) {
  at::Tensor x = at::randn({16, 8});
  x[3][5] = std::nan("");
  HessianAccumulator acc(8, device());
  const absl::Status added = acc.Add(x);
  // CPU: at Add(); CUDA (no per-batch sync): at Finalize().
  const absl::Status status = added.ok() ? acc.Finalize().status() : added;
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
}

TEST_P(QuantCudaGpuTest, GptqMatchesCpuFloat64) {
  const Layer l = MakeLayer(2);
  for (const bool act_order : {false, true}) {
    for (const int64_t group : {int64_t{-1}, int64_t{128}}) {
      GptqOptions opt;
      opt.grid.levels = 16;
      opt.act_order = act_order;
      opt.group_size = group;
      opt.compute_dtype = at::kDouble;
      auto ref = Gptq(l.weight, l.hessian, opt);
      ASSERT_TRUE(ref.ok()) << ref.status();
      opt.compute_dtype = dtype();
      auto got = Gptq(l.weight.to(device()), l.hessian.to(device(), dtype()), opt);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(got->weight.device().type(), device().type());
      ExpectClose(Of(*got), Of(*ref), dtype(),
                  Name("GPTQ 4-bit act_order=" + std::to_string(act_order) +
                       " group=" + std::to_string(group)));
    }
  }
}

TEST_P(QuantCudaGpuTest, BaqMeasureAndQuantizeMatchCpuFloat64) {
  const Layer l = MakeLayer(3);
  BaqOptions opt;
  opt.compute_dtype = at::kDouble;
  auto ref = BaqMeasure(l.weight, l.hessian, /*reference_levels=*/8, opt);
  ASSERT_TRUE(ref.ok()) << ref.status();
  opt.compute_dtype = dtype();
  const at::Tensor w = l.weight.to(device());
  const at::Tensor h = l.hessian.to(device(), dtype());
  auto got = BaqMeasure(w, h, 8, opt);
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectClose(Of(*got), Of(*ref), dtype(), Name("BaqMeasure R=3"));

  // Mixed levels 1..32 per column (as a bit allocation produces).
  std::vector<int32_t> levels(kCols);
  for (int64_t j = 0; j < kCols; ++j) levels[j] = std::vector<int32_t>{1, 2, 4, 8, 16, 32}[j % 6];
  opt.compute_dtype = at::kDouble;
  auto ref_q = BaqQuantize(l.weight, l.hessian, levels, opt);
  ASSERT_TRUE(ref_q.ok()) << ref_q.status();
  opt.compute_dtype = dtype();
  auto got_q = BaqQuantize(w, h, levels, opt);
  ASSERT_TRUE(got_q.ok()) << got_q.status();
  ExpectClose(Of(*got_q), Of(*ref_q), dtype(), Name("BaqQuantize mixed levels"));
}

INSTANTIATE_TEST_SUITE_P(Devices, QuantCudaGpuTest,
                         ::testing::Values(Case{"cpu", at::kFloat}, Case{"cuda", at::kFloat},
                                           Case{"cuda", at::kDouble}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.device + "_" +
                                  (info.param.dtype == at::kDouble ? "f64" : "f32");
                         });

}  // namespace
}  // namespace baq::worker

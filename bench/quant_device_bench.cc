// bench/quant_device_bench.cc
//
// Per-layer GPTQ, BAQ and Hessian accumulation on one device (CPU or CUDA):
// the numbers docs/performance.md reports for the GPU. Shapes and options
// match bench/device/reference_bench.py, which times the public reference
// codes (IST-DASLab/gptq, CSU-ModelCompression/BAQ) in the same device call.
//
//   quant_device_bench --device=cuda --shapes=4096x4096,11008x4096
//       --benchmark_out=out.json --benchmark_out_format=json
//
// Each timed call ends by reading a scalar back to the host, so device work
// is complete inside the timing (real time). One untimed warm-up call per
// benchmark keeps handle creation and module loading out of the numbers.
// Counters: proxy_loss / column_loss (float64 sums) to compare quality with
// the reference run.
#include <ATen/ATen.h>
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "worker/cuda/gptq_block_cuda.h"
#include "worker/quant/baq.h"
#include "worker/quant/gptq.h"
#include "worker/quant/hessian_accumulator.h"

namespace baq::worker {
namespace {

constexpr int64_t kWindowTokens = 2048;  // one calibration window (seqlen)
constexpr int kHessianWindows = 16;      // windows per timed Hessian iteration

struct Layer {
  at::Tensor weight;   // float32 [rows, cols] on the device
  at::Tensor hessian;  // float32 [cols, cols] on the device
};

// Random weight (std 0.02, like a trained LLM layer) and the Hessian of
// correlated random activations, as the reference bench builds them.
Layer MakeLayer(int64_t rows, int64_t cols, const at::Device& device) {
  at::manual_seed(0);
  const auto opt = at::TensorOptions(at::kFloat).device(device);
  Layer l;
  l.weight = at::randn({rows, cols}, opt) * 0.02;
  const at::Tensor scale = at::rand({1, cols}, opt).add(0.1);
  HessianAccumulator acc(cols, device);
  for (int i = 0; i < 8; ++i) {
    const at::Tensor x = at::randn({kWindowTokens, cols}, opt);
    (void)acc.Add(x.add(x.roll(1, 1) * 0.5).mul(scale));
  }
  l.hessian = *acc.Finalize(at::kFloat);
  return l;
}

void Sync(const at::Tensor& t) { benchmark::DoNotOptimize(t.sum().item<double>()); }

std::vector<int32_t> MixedLevels(int64_t cols) {
  std::vector<int32_t> levels(cols);
  const int32_t pattern[] = {8, 16, 16, 32, 16, 8, 16, 4};  // mean ~ 4 bits
  for (int64_t j = 0; j < cols; ++j) levels[j] = pattern[j % 8];
  return levels;
}

// GPTQ 4-bit with per-row grids (gptq.py's default, Gptq4bit below) on the
// fused batch kernel of worker/cuda/gptq_block_cuda.h: per 128-column batch
// one kernel launch and one GEMM. Same damping and factor as Gptq(); no dead
// columns in random data. Returns the proxy loss tr((W-Q) H (W-Q)^T).
double FusedGptq(const at::Tensor& w, const at::Tensor& h, int levels) {
  const int64_t rows = w.size(0), cols = w.size(1);
  const at::Tensor damped = h + at::eye(cols, h.options()) * (0.01 * h.diagonal().mean());
  const at::Tensor u = at::linalg_cholesky(
      at::cholesky_inverse(at::linalg_cholesky(damped)), /*upper=*/true);
  at::Tensor wt = w.t().contiguous();
  const at::Tensor xmin = at::clamp_max(std::get<0>(w.min(1)), 0);
  const at::Tensor xmax = at::clamp_min(std::get<0>(w.max(1)), 0);
  const at::Tensor scale = (xmax - xmin) / (levels - 1);  // no all-zero rows here
  const at::Tensor zero = at::round(-xmin / scale);
  const int64_t b = kMaxGptqBlock;
  const at::Tensor scale_b = scale.unsqueeze(0).expand({b, rows}).contiguous();
  const at::Tensor zero_b = zero.unsqueeze(0).expand({b, rows}).contiguous();
  const at::Tensor maxq_b = at::full({b}, levels - 1, w.options().dtype(at::kInt));
  at::Tensor qt = at::empty_like(wt);
  for (int64_t i1 = 0; i1 < cols; i1 += b) {
    const int64_t n = std::min(b, cols - i1), i2 = i1 + n;
    GptqBlock blk{wt.narrow(0, i1, n), u.narrow(0, i1, n).narrow(1, i1, n),
                  scale_b.narrow(0, 0, n), zero_b.narrow(0, 0, n), maxq_b.narrow(0, 0, n)};
    GptqBlockResult r = *GptqBlockCuda(blk);
    qt.narrow(0, i1, n).copy_(r.qt);
    if (i2 < cols) {
      wt.narrow(0, i2, cols - i2).sub_(u.narrow(0, i1, n).narrow(1, i2, cols - i2).t().mm(r.err_t));
    }
  }
  const at::Tensor e = (w - qt.t()).to(at::kDouble);
  return (e.mm(h.to(at::kDouble)) * e).sum().item<double>();
}

void Register(const std::string& device_name, int64_t rows, int64_t cols) {
  const at::Device device(device_name);
  const std::string shape = absl::StrCat(rows, "x", cols, "/", device_name);
  auto layer = std::make_shared<Layer>();
  auto get = [layer, rows, cols, device]() -> const Layer& {
    if (!layer->weight.defined()) *layer = MakeLayer(rows, cols, device);
    return *layer;
  };

  benchmark::RegisterBenchmark(
      absl::StrCat("HessianAdd/", shape).c_str(), [cols, device](benchmark::State& state) {
        const at::Tensor x =
            at::randn({kWindowTokens, cols}, at::TensorOptions(at::kHalf).device(device));
        HessianAccumulator warm(cols, device);
        (void)warm.Add(x);
        Sync(warm.sum());
        for (auto _ : state) {
          HessianAccumulator acc(cols, device);
          for (int i = 0; i < kHessianWindows; ++i) (void)acc.Add(x);
          Sync(acc.sum());
        }
        state.counters["windows"] = kHessianWindows;  // real_time / windows = per window
      })
      ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

  auto gptq = [get](GptqOptions opt) {
    return [get, opt](benchmark::State& state) mutable {
      const Layer& l = get();
      opt.compute_proxy_loss = true;  // untimed warm-up also gives the quality
      auto warm = Gptq(l.weight, l.hessian, opt);
      if (!warm.ok()) return state.SkipWithError(warm.status().ToString().c_str());
      opt.compute_proxy_loss = false;  // as the reference: no extra GEMM
      for (auto _ : state) Sync(Gptq(l.weight, l.hessian, opt)->column_loss);
      state.counters["proxy_loss"] = warm->proxy_loss;
      state.counters["column_loss"] = warm->column_loss.sum().item<double>();
    };
  };
  GptqOptions plain;
  plain.grid.levels = 16;
  benchmark::RegisterBenchmark(absl::StrCat("Gptq4bit/", shape).c_str(), gptq(plain))
      ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(5);
  GptqOptions ordered = plain;
  ordered.act_order = true;
  ordered.group_size = 128;
  benchmark::RegisterBenchmark(absl::StrCat("Gptq4bitActOrderG128/", shape).c_str(),
                               gptq(ordered))
      ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(5);

  if (HasCudaKernels() && device.is_cuda()) {
    benchmark::RegisterBenchmark(
        absl::StrCat("Gptq4bitFusedKernel/", shape).c_str(), [get](benchmark::State& state) {
          const Layer& l = get();
          const double proxy = FusedGptq(l.weight, l.hessian, 16);  // warm-up
          for (auto _ : state) benchmark::DoNotOptimize(FusedGptq(l.weight, l.hessian, 16));
          state.counters["proxy_loss"] = proxy;
        })
        ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(5);
  }

  benchmark::RegisterBenchmark(
      absl::StrCat("BaqMeasureR4/", shape).c_str(), [get](benchmark::State& state) {
        const Layer& l = get();
        BaqOptions opt;
        auto warm = BaqMeasure(l.weight, l.hessian, 16, opt);
        if (!warm.ok()) return state.SkipWithError(warm.status().ToString().c_str());
        opt.compute_proxy_loss = false;
        for (auto _ : state) Sync(BaqMeasure(l.weight, l.hessian, 16, opt)->column_loss);
        state.counters["proxy_loss"] = warm->proxy_loss;
        state.counters["column_loss"] = warm->column_loss.sum().item<double>();
      })
      ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(5);

  benchmark::RegisterBenchmark(
      absl::StrCat("BaqQuantizeMixed/", shape).c_str(), [get, cols](benchmark::State& state) {
        const Layer& l = get();
        const std::vector<int32_t> levels = MixedLevels(cols);
        BaqOptions opt;
        auto warm = BaqQuantize(l.weight, l.hessian, levels, opt);
        if (!warm.ok()) return state.SkipWithError(warm.status().ToString().c_str());
        opt.compute_proxy_loss = false;
        for (auto _ : state) Sync(BaqQuantize(l.weight, l.hessian, levels, opt)->column_loss);
        state.counters["proxy_loss"] = warm->proxy_loss;
        state.counters["column_loss"] = warm->column_loss.sum().item<double>();
      })
      ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(5);
}

}  // namespace
}  // namespace baq::worker

int main(int argc, char** argv) {
  std::string device = "cpu";
  std::string shapes = "4096x4096,11008x4096";
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--device=", 9) == 0) {
      device = argv[i] + 9;
    } else if (std::strncmp(argv[i], "--shapes=", 9) == 0) {
      shapes = argv[i] + 9;
    } else {
      rest.push_back(argv[i]);
    }
  }
  for (absl::string_view s : absl::StrSplit(shapes, ',')) {
    std::vector<absl::string_view> dims = absl::StrSplit(s, 'x');
    int64_t rows = 0, cols = 0;
    if (dims.size() != 2 || !absl::SimpleAtoi(dims[0], &rows) ||
        !absl::SimpleAtoi(dims[1], &cols)) {
      std::cerr << "bad --shapes entry " << s << " (want ROWSxCOLS)\n";
      return 2;
    }
    baq::worker::Register(device, rows, cols);
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::AddCustomContext("device", device);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

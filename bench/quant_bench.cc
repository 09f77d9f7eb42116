// bench/quant_bench.cc
//
// One linear layer ([out, in] = 4096x4096 and 11008x4096, float32, H from
// random activations with log-normal column scales), quantized by:
//   Gptq        worker/quant GPTQ, 4 bits, lazy batches of 128
//   Baq         worker/quant BAQ pass 2, levels 2..32 per column
//   ColumnLoop  the reference codes' structure: gptq_baq.py's blocksize-1
//               column loop (each column's error applied to all later columns
//               with a rank-1 update), and gptq.py's 128-column lazy batches
//               with rank-1 updates inside a batch
// and prints ours / baseline. All include the damped inverse-Hessian factor;
// none computes the proxy loss. CPU numbers on this box's reference BLAS are
// GEMM-bound; run with --benchmark_filter to pick shapes and
// --quant_device=cuda to run everything on the GPU, --quant_threads=N to set
// LibTorch's intra-op threads.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "bench/bench_main.h"
#include "worker/quant/baq.h"
#include "worker/quant/gptq.h"
#include "worker/quant/hessian_accumulator.h"

namespace baq::worker {
namespace {

constexpr int64_t kIn = 4096;
constexpr int64_t kCalibrationRows = 512;

at::Device& BenchDevice() {
  static at::Device device(at::kCPU);
  return device;
}

struct Layer {
  at::Tensor w, h;
  std::vector<int32_t> levels;
};

const Layer& GetLayer(int64_t out) {
  static std::map<int64_t, Layer>* layers = new std::map<int64_t, Layer>();
  auto it = layers->find(out);
  if (it != layers->end()) return it->second;
  at::manual_seed(0);
  Layer l;
  l.w = at::randn({out, kIn}, at::kFloat) * 0.02;
  HessianAccumulator acc(kIn);
  const at::Tensor x = at::randn({kCalibrationRows, kIn}) * at::exp(at::randn({1, kIn}));
  if (!acc.Add(x).ok()) std::abort();
  l.h = acc.Finalize(at::kFloat)->to(BenchDevice());
  l.w = l.w.to(BenchDevice());
  // Warm-up (library handles, allocator) outside the timed region.
  if (!Gptq(l.w.narrow(0, 0, 64), l.h, GptqOptions{}).ok()) std::abort();
  const at::Tensor lv = at::randint(2, 33, {kIn}, at::kInt);
  l.levels.assign(lv.data_ptr<int32_t>(), lv.data_ptr<int32_t>() + kIn);
  return layers->emplace(out, std::move(l)).first->second;
}

std::map<std::string, double>& Seconds() {
  static auto* m = new std::map<std::string, double>();
  return *m;
}

void Record(benchmark::State& state, const std::string& name, double seconds) {
  state.SetIterationTime(seconds);
  Seconds()[name + "/" + std::to_string(state.range(0))] = seconds;
}

template <typename Fn>
double Time(Fn&& fn) {
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The reference codes' loop (gptq.py fasterquant / gptq_baq.py fasterquant,
// asymmetric per-row grid, no act-order), straightforwardly on [rows, cols].
at::Tensor ReferenceLoop(const at::Tensor& weight, const at::Tensor& hessian, int64_t levels,
                         int64_t blocksize) {
  at::Tensor w = weight.clone();
  const int64_t cols = w.size(1);
  at::Tensor h = hessian.clone();
  h.diagonal().add_(0.01 * h.diagonal().mean().item<double>());
  const at::Tensor hinv =
      at::linalg_cholesky(at::cholesky_inverse(at::linalg_cholesky(h)), /*upper=*/true);
  const at::Tensor zeros = at::zeros({w.size(0)}, w.options());
  const at::Tensor xmin = at::minimum(at::amin(w, {1}), zeros);
  const at::Tensor xmax = at::maximum(at::amax(w, {1}), zeros);
  const at::Tensor scale = (xmax - xmin) / static_cast<double>(levels - 1);
  const at::Tensor zero = at::round(-xmin / scale);
  at::Tensor q_all = at::zeros_like(w);
  for (int64_t i1 = 0; i1 < cols; i1 += blocksize) {
    const int64_t i2 = std::min(i1 + blocksize, cols);
    at::Tensor w1 = w.slice(1, i1, i2).clone();
    at::Tensor err1 = at::zeros_like(w1);
    const at::Tensor h1 = hinv.slice(0, i1, i2).slice(1, i1, i2);
    for (int64_t i = 0; i < i2 - i1; ++i) {
      const at::Tensor col = w1.select(1, i);
      const at::Tensor q = scale * (at::clamp(at::round(col / scale) + zero, 0, levels - 1) - zero);
      q_all.select(1, i1 + i).copy_(q);
      const at::Tensor e = (col - q) / h1[i][i];
      w1.slice(1, i) -= e.unsqueeze(1).matmul(h1[i].slice(0, i).unsqueeze(0));
      err1.select(1, i).copy_(e);
    }
    if (i2 < cols) w.slice(1, i2) -= err1.matmul(hinv.slice(0, i1, i2).slice(1, i2));
  }
  q_all.sum().item<float>();  // waits for the device, as Gptq's final check does
  return q_all;
}

void BM_Gptq(benchmark::State& state) {
  const Layer& l = GetLayer(state.range(0));
  GptqOptions o;
  o.grid.levels = 16;
  o.compute_proxy_loss = false;
  for (auto _ : state) {
    Record(state, "Gptq", Time([&] {
             if (!Gptq(l.w, l.h, o).ok()) std::abort();
           }));
  }
}

void BM_Baq(benchmark::State& state) {
  const Layer& l = GetLayer(state.range(0));
  BaqOptions o;
  o.compute_proxy_loss = false;
  for (auto _ : state) {
    Record(state, "Baq", Time([&] {
             if (!BaqQuantize(l.w, l.h, l.levels, o).ok()) std::abort();
           }));
  }
}

void BM_ColumnLoopBlock1(benchmark::State& state) {
  const Layer& l = GetLayer(state.range(0));
  for (auto _ : state) {
    Record(state, "ColumnLoopBlock1",
           Time([&] { benchmark::DoNotOptimize(ReferenceLoop(l.w, l.h, 16, 1)); }));
  }
}

void BM_ColumnLoopBlock128(benchmark::State& state) {
  const Layer& l = GetLayer(state.range(0));
  for (auto _ : state) {
    Record(state, "ColumnLoopBlock128",
           Time([&] { benchmark::DoNotOptimize(ReferenceLoop(l.w, l.h, 16, 128)); }));
  }
}

#define BAQ_QUANT_BENCH(fn) \
  BENCHMARK(fn)->Arg(4096)->Arg(11008)->Iterations(1)->UseManualTime()->Unit(benchmark::kSecond)
BAQ_QUANT_BENCH(BM_Gptq);
BAQ_QUANT_BENCH(BM_Baq);
BAQ_QUANT_BENCH(BM_ColumnLoopBlock128);
BAQ_QUANT_BENCH(BM_ColumnLoopBlock1);

void PrintRatios() {
  const auto& s = Seconds();
  for (const char* out : {"4096", "11008"}) {
    auto ratio = [&](const std::string& a, const std::string& b) {
      auto x = s.find(a + "/" + out), y = s.find(b + "/" + out);
      if (x == s.end() || y == s.end()) return;
      std::printf("%-5s x 4096: %-4s / %-18s = %.3f  (%.2f s / %.2f s)\n", out, a.c_str(),
                  b.c_str(), x->second / y->second, x->second, y->second);
    };
    ratio("Gptq", "ColumnLoopBlock128");
    ratio("Gptq", "ColumnLoopBlock1");
    ratio("Baq", "ColumnLoopBlock1");
  }
}

}  // namespace
}  // namespace baq::worker

int main(int argc, char** argv) {
  // Our one flag, removed before Google Benchmark parses the rest.
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--quant_device=", 0) == 0) {
      baq::worker::BenchDevice() = at::Device(arg.substr(15));
    } else if (arg.rfind("--quant_threads=", 0) == 0) {
      at::set_num_threads(std::stoi(arg.substr(16)));
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  return baq::RunBenchmarks(argc, argv, baq::worker::PrintRatios);
}

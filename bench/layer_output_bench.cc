// bench/layer_output_bench.cc
//
// The per-layer output stage after GPU quantization (LayerQuantizer::Quantize
// -> worker/layer_formats.h, worker/compressed_tensors_format.h) for one layer
// of a 30B-shaped MLP ([out, in] = 6656x17920 and 17920x6656, CPU tensors):
//   Packed             PackedTensors of a BAQ layer: random codes under
//                      per-column levels drawn from 2..16 (a 3-bit BAQ
//                      allocation), random row_min/row_max
//   Gptq               GptqTensors of a 4-bit grid layer, groups of 128
//   CompressedTensors  CompressedTensorsTensors of the same layer, asymmetric
//   PackedColumnsOnly  PackMixedRadixColumns alone (no reference of its own)
// each against a serial reference: the implementation before the packers were
// rewritten (one std::vector per column or row, appended to a std::string;
// the bit-at-a-time BitWriter), copied here verbatim in spirit (same loops,
// same LibTorch calls, run with the same LibTorch threads). Every "ours" run
// is checked byte for byte against the reference's output once per shape.
// On a GPU, PackedTensors starts with a device-to-host copy of the uint8
// codes that these CPU-tensor runs do not have (nor had the old code here).
//
// Arguments: /<out features>/<threads>; threads goes to at::set_num_threads,
// which is what the packers use. Prints ns per code and ours / reference.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "bench/bench_main.h"
#include "common/code_packing.h"
#include "common/matrix_packing.h"
#include "worker/compressed_tensors_format.h"
#include "worker/layer_formats.h"

namespace baq::worker {
namespace {

constexpr int64_t kHidden = 6656;
constexpr int64_t kMlp = 17920;
constexpr int kGridBits = 4;
constexpr int64_t kGroup = 128;

// ---- The serial reference (the code these packers replaced). ----

template <typename Word>
void RefWrite(std::vector<Word>& words, int64_t& position, uint64_t value, int width) {
  constexpr int kWordBits = 8 * sizeof(Word);
  while (width > 0) {
    const int offset = static_cast<int>(position % kWordBits);
    const int take = std::min(width, kWordBits - offset);
    const uint64_t mask = take >= 64 ? ~uint64_t{0} : (uint64_t{1} << take) - 1;
    words[position / kWordBits] |= static_cast<Word>((value & mask) << offset);
    value = take >= 64 ? 0 : value >> take;
    width -= take;
    position += take;
  }
}

bool RefCodesBelow(const uint8_t* codes, int64_t n, int32_t levels) {
  for (int64_t i = 0; i < n; ++i) {
    if (codes[i] >= levels) return false;
  }
  return true;
}

std::vector<uint64_t> RefPackMixedRadix(const uint8_t* codes, int64_t n, int32_t levels) {
  const MixedRadixLayout layout = *MixedRadixLayoutFor(levels);
  if (!RefCodesBelow(codes, n, levels)) std::abort();
  const int64_t t = layout.codes_per_group;
  std::vector<uint64_t> words(MixedRadixPackedWords(layout, n), 0);
  if (layout.bits_per_group == 0) return words;
  int64_t position = 0;
  for (int64_t start = 0; start < n; start += t) {
    uint64_t value = 0;
    for (int64_t i = std::min(n, start + t) - 1; i >= start; --i) {
      value = value * static_cast<uint64_t>(levels) + codes[i];
    }
    RefWrite(words, position, value, layout.bits_per_group);
  }
  return words;
}

std::vector<uint32_t> RefPackFixedWidth(const uint8_t* codes, int64_t n, int bits) {
  if (!RefCodesBelow(codes, n, 1 << bits)) std::abort();
  std::vector<uint32_t> words(FixedWidthPackedWords(n, bits), 0);
  int64_t position = 0;
  for (int64_t i = 0; i < n; ++i) RefWrite(words, position, codes[i], bits);
  return words;
}

std::vector<uint32_t> RefPackGptqQweight(const uint8_t* codes, int64_t out, int64_t in,
                                         int bits) {
  const int64_t rows = in * bits / 32;
  std::vector<uint32_t> qweight(rows * out, 0);
  for (int64_t o = 0; o < out; ++o) {
    const std::vector<uint32_t> column = RefPackFixedWidth(codes + o * in, in, bits);
    for (int64_t r = 0; r < rows; ++r) qweight[r * out + o] = column[r];
  }
  return qweight;
}

std::vector<uint32_t> RefPackRows(const uint8_t* codes, int64_t rows, int64_t cols, int bits) {
  const int64_t words = FixedWidthPackedWords(cols, bits);
  std::vector<uint32_t> out(static_cast<size_t>(rows * words));
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<uint32_t> row = RefPackFixedWidth(codes + r * cols, cols, bits);
    std::copy(row.begin(), row.end(), out.begin() + r * words);
  }
  return out;
}

template <typename T>
std::string RefBytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

TensorBytes RefTensor(const std::string& name, const at::Tensor& t) {
  return *ToTensorBytes(name, t.to(at::kCPU).contiguous());
}

std::vector<TensorBytes> RefPacked(const QuantizedLayer& layer) {
  const at::Tensor codes = layer.codes.to(at::kCPU, at::kByte).contiguous();
  const at::Tensor levels = layer.levels.to(at::kCPU, at::kInt).contiguous();
  const at::Tensor cols = codes.t().contiguous();
  const int64_t out = codes.size(0), in = codes.size(1);
  std::string packed;
  for (int64_t j = 0; j < in; ++j) {
    packed += RefBytes(
        RefPackMixedRadix(cols.data_ptr<uint8_t>() + j * out, out, levels.data_ptr<int32_t>()[j]));
  }
  std::vector<TensorBytes> r;
  r.push_back({layer.name + ".qcodes", DType::kU8, {static_cast<int64_t>(packed.size())},
               std::move(packed)});
  r.push_back(RefTensor(layer.name + ".levels", levels));
  r.push_back(RefTensor(layer.name + ".row_min", layer.row_min.to(at::kFloat)));
  r.push_back(RefTensor(layer.name + ".row_max", layer.row_max.to(at::kFloat)));
  return r;
}

std::vector<TensorBytes> RefGptq(const QuantizedLayer& layer, int bits) {
  const at::Tensor codes = layer.codes.to(at::kCPU, at::kByte).contiguous();
  const int64_t out = codes.size(0), in = codes.size(1);
  const std::vector<uint32_t> qweight = RefPackGptqQweight(codes.data_ptr<uint8_t>(), out, in, bits);
  const at::Tensor zeros = layer.zeros.to(at::kCPU, at::kFloat).t().contiguous();
  const int64_t groups = zeros.size(0);
  const at::Tensor zcodes =
      ((zeros.round().to(at::kInt) - 1).bitwise_and((1 << bits) - 1)).to(at::kByte).contiguous();
  const std::vector<uint32_t> qzeros =
      RefPackGptqQweight(zcodes.data_ptr<uint8_t>(), groups, out, bits);
  const int64_t zwords = out * bits / 32;
  std::vector<uint32_t> qz(static_cast<size_t>(groups * zwords));
  for (int64_t r = 0; r < zwords; ++r) {
    for (int64_t g = 0; g < groups; ++g) qz[g * zwords + r] = qzeros[r * groups + g];
  }
  std::vector<TensorBytes> result;
  result.push_back({layer.name + ".qweight", DType::kI32, {in * bits / 32, out}, RefBytes(qweight)});
  result.push_back({layer.name + ".qzeros", DType::kI32, {groups, zwords}, RefBytes(qz)});
  result.push_back(RefTensor(layer.name + ".scales", layer.scales.to(at::kHalf).t()));
  result.push_back(RefTensor(layer.name + ".g_idx", layer.g_idx.to(at::kInt)));
  return result;
}

std::vector<TensorBytes> RefCompressedTensors(const QuantizedLayer& layer, int bits) {
  const at::Tensor codes = layer.codes.to(at::kCPU, at::kByte).contiguous();
  const int64_t out = codes.size(0), in = codes.size(1);
  const at::Tensor zeros = layer.zeros.to(at::kCPU, at::kFloat).contiguous();
  const int64_t groups = zeros.size(1);
  // The same validation passes as the format's (they are LibTorch calls).
  const at::Tensor expected = at::arange(in, at::kLong).div(in / groups, "floor");
  if (!at::equal(layer.g_idx.to(at::kLong), expected)) std::abort();
  if (codes.max().item<int64_t>() >= (1 << bits)) std::abort();
  const at::Tensor zero_codes = zeros.round();
  if (!at::equal(zero_codes, zeros) || zeros.min().item<double>() < 0 ||
      zeros.max().item<double>() >= (1 << bits)) {
    std::abort();
  }
  const std::vector<uint32_t> packed = RefPackRows(codes.data_ptr<uint8_t>(), out, in, bits);
  std::vector<TensorBytes> result;
  result.push_back({layer.name + ".weight_packed", DType::kI32,
                    {out, FixedWidthPackedWords(in, bits)}, RefBytes(packed)});
  result.push_back(RefTensor(layer.name + ".weight_scale", layer.scales.to(at::kFloat)));
  const at::Tensor zt = zero_codes.t().to(at::kByte).contiguous();
  const std::vector<uint32_t> zp = RefPackRows(zt.data_ptr<uint8_t>(), groups, out, bits);
  const int64_t zwords = FixedWidthPackedWords(out, bits);
  std::vector<uint32_t> zp_t(zp.size());
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t w = 0; w < zwords; ++w) zp_t[w * groups + g] = zp[g * zwords + w];
  }
  result.push_back(
      {layer.name + ".weight_zero_point", DType::kI32, {zwords, groups}, RefBytes(zp_t)});
  const std::vector<int64_t> shape = {out, in};
  result.push_back({layer.name + ".weight_shape", DType::kI64, {2}, RefBytes(shape)});
  return result;
}

// ---- Layers. ----

int64_t InFor(int64_t out) { return out == kHidden ? kMlp : kHidden; }

const QuantizedLayer& BaqLayer(int64_t out) {
  static auto* layers = new std::map<int64_t, QuantizedLayer>();
  auto it = layers->find(out);
  if (it != layers->end()) return it->second;
  const int64_t in = InFor(out);
  at::manual_seed(1);
  QuantizedLayer l;
  l.name = "model.layers.0.mlp.proj";
  l.levels = at::randint(2, 17, {in}, at::kInt);
  l.codes = (at::rand({out, in}) * l.levels.to(at::kFloat)).floor().clamp_max(15).to(at::kByte);
  l.codes = at::minimum(l.codes, (l.levels - 1).to(at::kByte).unsqueeze(0));
  l.row_min = -at::rand({out});
  l.row_max = at::rand({out});
  return layers->emplace(out, std::move(l)).first->second;
}

const QuantizedLayer& GridLayer(int64_t out) {
  static auto* layers = new std::map<int64_t, QuantizedLayer>();
  auto it = layers->find(out);
  if (it != layers->end()) return it->second;
  const int64_t in = InFor(out), groups = in / kGroup, levels = 1 << kGridBits;
  at::manual_seed(2);
  QuantizedLayer l;
  l.name = "model.layers.0.mlp.proj";
  l.codes = at::randint(levels, {out, in}, at::kByte);
  l.zeros = at::randint(levels, {out, groups}, at::kFloat);
  l.scales = at::rand({out, groups}) * 0.01 + 1e-4;
  l.g_idx = at::arange(in, at::kInt).div(kGroup, "floor").to(at::kInt);
  l.levels = at::full({in}, levels, at::kInt);
  return layers->emplace(out, std::move(l)).first->second;
}

// ---- Timing. ----

std::map<std::string, double>& Seconds() {  // best of the iterations
  static auto* m = new std::map<std::string, double>();
  return *m;
}

std::string Key(const std::string& name, int64_t out, int64_t threads) {
  return name + "/" + std::to_string(out) + "/" + std::to_string(threads);
}

void Check(const std::vector<TensorBytes>& got, const std::vector<TensorBytes>& want) {
  bool same = got.size() == want.size();
  for (size_t i = 0; same && i < got.size(); ++i) {
    same = got[i].name == want[i].name && got[i].dtype == want[i].dtype &&
           got[i].shape == want[i].shape && got[i].bytes == want[i].bytes;
  }
  if (!same) {
    std::fprintf(stderr, "output differs from the serial reference\n");
    std::abort();
  }
}

using Stage = std::function<std::vector<TensorBytes>()>;

// Runs `fn` per iteration and records the best time; first compares its
// output with `ref`'s once, when `ref` is given.
void Run(benchmark::State& state, const std::string& name, const Stage& fn,
         const Stage& ref = nullptr) {
  const int64_t out = state.range(0), threads = state.range(1);
  at::set_num_threads(static_cast<int>(threads));
  if (ref) Check(fn(), ref());
  double best = 1e30;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<TensorBytes> r = fn();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    benchmark::DoNotOptimize(r);
    state.SetIterationTime(s);
    best = std::min(best, s);
  }
  const double codes = static_cast<double>(out * InFor(out));
  state.counters["ns_per_code"] = best * 1e9 / codes;
  Seconds()[Key(name, out, threads)] = best;
}

template <typename T>
std::vector<TensorBytes> OrDie(absl::StatusOr<T> r) {
  if (!r.ok()) {
    std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
    std::abort();
  }
  return *std::move(r);
}

void BM_Packed(benchmark::State& state) {
  const QuantizedLayer& l = BaqLayer(state.range(0));
  Run(state, "Packed", [&] { return OrDie(PackedTensors(l)); }, [&] { return RefPacked(l); });
}
// PackMixedRadixColumns alone: Packed minus this is the small tensors and
// the LibTorch calls around it.
void BM_PackedColumnsOnly(benchmark::State& state) {
  const QuantizedLayer& l = BaqLayer(state.range(0));
  const at::Tensor levels = l.levels.contiguous();
  Run(state, "PackedColumnsOnly", [&] {
    std::vector<TensorBytes> r(1);
    r[0].bytes = *PackMixedRadixColumns(
        absl::MakeConstSpan(l.codes.data_ptr<uint8_t>(), l.codes.numel()), l.codes.size(0),
        absl::MakeConstSpan(levels.data_ptr<int32_t>(), levels.numel()), at::get_num_threads());
    return r;
  });
}
void BM_PackedReference(benchmark::State& state) {
  const QuantizedLayer& l = BaqLayer(state.range(0));
  Run(state, "PackedReference", [&] { return RefPacked(l); });
}
void BM_Gptq(benchmark::State& state) {
  const QuantizedLayer& l = GridLayer(state.range(0));
  Run(state, "Gptq", [&] { return OrDie(GptqTensors(l, kGridBits)); },
      [&] { return RefGptq(l, kGridBits); });
}
void BM_GptqReference(benchmark::State& state) {
  const QuantizedLayer& l = GridLayer(state.range(0));
  Run(state, "GptqReference", [&] { return RefGptq(l, kGridBits); });
}
void BM_CompressedTensors(benchmark::State& state) {
  const QuantizedLayer& l = GridLayer(state.range(0));
  Run(state, "CompressedTensors",
      [&] { return OrDie(CompressedTensorsTensors(l, kGridBits, /*symmetric=*/false)); },
      [&] { return RefCompressedTensors(l, kGridBits); });
}
void BM_CompressedTensorsReference(benchmark::State& state) {
  const QuantizedLayer& l = GridLayer(state.range(0));
  Run(state, "CompressedTensorsReference", [&] { return RefCompressedTensors(l, kGridBits); });
}

#define BAQ_OUTPUT_BENCH(fn)                                                            \
  BENCHMARK(fn)                                                                         \
      ->ArgsProduct({{kHidden, kMlp}, {1, 2}})                                          \
      ->Iterations(3)                                                                   \
      ->UseManualTime()                                                                 \
      ->Unit(benchmark::kMillisecond)
BAQ_OUTPUT_BENCH(BM_Packed);
BAQ_OUTPUT_BENCH(BM_PackedColumnsOnly);
BAQ_OUTPUT_BENCH(BM_PackedReference);
BAQ_OUTPUT_BENCH(BM_Gptq);
BAQ_OUTPUT_BENCH(BM_GptqReference);
BAQ_OUTPUT_BENCH(BM_CompressedTensors);
BAQ_OUTPUT_BENCH(BM_CompressedTensorsReference);

void PrintRatios() {
  const auto& s = Seconds();
  std::printf("\nbest of 3; ns per code; ours / serial reference (same threads, and vs 1 thread)\n");
  for (const char* name : {"Packed", "Gptq", "CompressedTensors"}) {
    for (int64_t out : {kHidden, kMlp}) {
      for (int64_t threads : {1, 2}) {
        auto ours = s.find(Key(name, out, threads));
        auto ref = s.find(Key(std::string(name) + "Reference", out, threads));
        auto ref1 = s.find(Key(std::string(name) + "Reference", out, 1));
        if (ours == s.end() || ref == s.end() || ref1 == s.end()) continue;
        const double codes = static_cast<double>(out * InFor(out)) * 1e-9;
        std::printf(
            "%-17s [%5lld, %5lld] threads %lld: ours %7.3f ns/code, reference %7.3f ns/code, "
            "ours/ref = %.3f (speed-up %.1fx; vs 1-thread ref %.1fx)\n",
            name, static_cast<long long>(out), static_cast<long long>(InFor(out)),
            static_cast<long long>(threads), ours->second / codes, ref->second / codes,
            ours->second / ref->second, ref->second / ours->second,
            ref1->second / ours->second);
      }
    }
  }
}

}  // namespace
}  // namespace baq::worker

int main(int argc, char** argv) {
  return baq::RunBenchmarks(argc, argv, baq::worker::PrintRatios);
}

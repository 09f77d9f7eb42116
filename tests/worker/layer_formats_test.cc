// The gptq output format, written by GptqTensors and read back by
// DequantizeGptq, against an independent float64 decoder of the GPTQ v1
// layout written here from its description (bit streams of int32 words,
// qzeros holding zero - 1, F16 scales, g_idx), plus QuantizedWeightLoader's
// dispatch between the formats.
#include "worker/layer_formats.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/safetensors_checkpoint.h"
#include "common/safetensors_writer.h"
#include "tests/testing/test_paths.h"

namespace baq::worker {
namespace {

using ::testing::HasSubstr;

constexpr char kName[] = "model.layers.0.mlp.down_proj";

// A grid-kind layer with random codes, zero points (0 and 2^bits - 1
// included: the wrap of qzeros) and scales; columns are assigned to groups
// out of order, as act-order does.
QuantizedLayer RandomLayer(int64_t out, int64_t in, int64_t group, int bits) {
  const int64_t groups = in / group;
  const int levels = 1 << bits;
  QuantizedLayer l;
  l.name = kName;
  l.codes = at::randint(levels, {out, in}, at::kByte);
  l.zeros = at::randint(levels, {out, groups}, at::kFloat);
  l.zeros.select(0, 0).fill_(0);
  l.zeros.select(0, 1).fill_(levels - 1);
  l.scales = at::rand({out, groups}, at::kFloat) * 0.01 + 1e-4;
  l.g_idx = (at::randperm(in, at::kLong) % groups).to(at::kInt);
  const at::Tensor g = l.g_idx.to(at::kLong);
  l.dequantized =
      l.scales.index_select(1, g) * (l.codes.to(at::kFloat) - l.zeros.index_select(1, g));
  l.levels = at::full({in}, levels, at::kInt);
  return l;
}

std::unique_ptr<SafetensorsCheckpoint> WriteCheckpoint(const std::vector<TensorBytes>& tensors) {
  const std::string dir = ::baq::testing::MakeScratchDir();
  auto writer = SafetensorsWriter::Create(dir + "/model.safetensors");
  EXPECT_TRUE(writer.ok()) << writer.status();
  for (const TensorBytes& t : tensors) {
    EXPECT_TRUE((*writer)
                    ->Add(t.name, t.dtype, t.shape,
                          absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(t.bytes.data()),
                                              t.bytes.size()))
                    .ok());
  }
  EXPECT_TRUE((*writer)->Finish().ok());
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  EXPECT_TRUE(ckpt.ok()) << ckpt.status();
  return std::move(*ckpt);
}

// The tensor "<kName><suffix>" (by index: a returned reference would trip
// GCC 13's -Wdangling-reference at call sites with a temporary suffix).
size_t Find(const std::vector<TensorBytes>& tensors, absl::string_view suffix) {
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].name == absl::StrCat(kName, suffix)) return i;
  }
  ADD_FAILURE() << "no tensor " << suffix;
  return 0;
}

std::vector<uint32_t> Words(const TensorBytes& t) {
  std::vector<uint32_t> w(t.bytes.size() / 4);
  std::memcpy(w.data(), t.bytes.data(), t.bytes.size());
  return w;
}

// Code `index` of the little-endian bit stream formed by words
// column[0], column[1], ... (bit k of the stream: bit k % 32 of word k / 32).
int StreamCode(const std::vector<uint32_t>& words, int64_t stride, int64_t column, int bits,
               int64_t index) {
  int code = 0;
  for (int b = 0; b < bits; ++b) {
    const int64_t k = index * bits + b;
    const uint32_t word = words[(k / 32) * stride + column];
    code |= static_cast<int>((word >> (k % 32)) & 1u) << b;
  }
  return code;
}

// The float64 reading of a gptq layer: w[o][i] = s[g][o] * (q[o][i] - z[g][o]),
// z = (qzeros code + 1) mod 2^bits, g = g_idx[i].
at::Tensor ReferenceDequantize(const std::vector<TensorBytes>& t, int64_t out, int64_t in,
                               int bits) {
  const std::vector<uint32_t> qweight = Words(t[Find(t, ".qweight")]);
  const std::vector<uint32_t> qzeros = Words(t[Find(t, ".qzeros")]);
  const TensorBytes& scales_t = t[Find(t, ".scales")];
  const TensorBytes& g_idx_t = t[Find(t, ".g_idx")];
  const int64_t groups = scales_t.shape[0];
  const int64_t zwords = out * bits / 32;
  // F16 -> float64 through LibTorch's conversion of the raw bytes.
  const at::Tensor scales =
      at::from_blob(const_cast<char*>(scales_t.bytes.data()), {groups, out}, at::kHalf)
          .to(at::kDouble);
  const int32_t* g_idx = reinterpret_cast<const int32_t*>(g_idx_t.bytes.data());
  at::Tensor w = at::empty({out, in}, at::kDouble);
  auto wa = w.accessor<double, 2>();
  auto sa = scales.accessor<double, 2>();
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t i = 0; i < in; ++i) {
      const int64_t g = g_idx[i];
      const int q = StreamCode(qweight, /*stride=*/out, o, bits, i);
      // qzeros row g is one stream over the output features.
      int z = 0;
      for (int b = 0; b < bits; ++b) {
        const int64_t k = o * bits + b;
        z |= static_cast<int>((qzeros[g * zwords + k / 32] >> (k % 32)) & 1u) << b;
      }
      z = (z + 1) % (1 << bits);
      wa[o][i] = sa[g][o] * (q - z);
    }
  }
  return w;
}

class GptqFormatTest : public ::testing::TestWithParam<int> {};

TEST_P(GptqFormatTest, DequantizeMatchesFloat64ReferenceAndWriterInput) {
  const int bits = GetParam();
  at::manual_seed(40 + bits);
  const int64_t out = 64, in = 96, group = 32;
  const QuantizedLayer layer = RandomLayer(out, in, group, bits);
  absl::StatusOr<std::vector<TensorBytes>> tensors = GptqTensors(layer, bits);
  ASSERT_TRUE(tensors.ok()) << tensors.status();
  std::unique_ptr<SafetensorsCheckpoint> ckpt = WriteCheckpoint(*tensors);
  absl::StatusOr<at::Tensor> w = DequantizeGptq(*ckpt, kName);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(w->sizes(), at::IntArrayRef({out, in}));
  // Exact: an F16 scale times a small integer is exact in float64, and
  // float32 rounds it once either way.
  const at::Tensor ref = ReferenceDequantize(*tensors, out, in, bits);
  EXPECT_TRUE(at::equal(*w, ref.to(at::kFloat)))
      << "max diff " << (w->to(at::kDouble) - ref).abs().max().item<double>();
  // And what the writer was given, with the scales rounded to F16: the codes
  // and zero points (0 and 2^bits - 1 included) survive the round trip.
  const at::Tensor g = layer.g_idx.to(at::kLong);
  const at::Tensor expected =
      layer.scales.to(at::kHalf).to(at::kFloat).index_select(1, g) *
      (layer.codes.to(at::kFloat) - layer.zeros.index_select(1, g));
  EXPECT_TRUE(at::equal(*w, expected));
}

INSTANTIATE_TEST_SUITE_P(Bits, GptqFormatTest, ::testing::Values(2, 3, 4, 8),
                         [](const ::testing::TestParamInfo<int>& i) {
                           return std::to_string(i.param) + "bit";
                         });

TEST(GptqFormatTest, InconsistentShapesNameTheLayer) {
  at::manual_seed(50);
  const QuantizedLayer layer = RandomLayer(64, 96, 32, 4);
  absl::StatusOr<std::vector<TensorBytes>> tensors = GptqTensors(layer, 4);
  ASSERT_TRUE(tensors.ok());
  // Drop one input column from g_idx: the qweight rows no longer fit.
  for (TensorBytes& t : *tensors) {
    if (t.name == std::string(kName) + ".g_idx") {
      t.shape = {95};
      t.bytes.resize(95 * 4);
    }
  }
  std::unique_ptr<SafetensorsCheckpoint> ckpt = WriteCheckpoint(*tensors);
  absl::StatusOr<at::Tensor> w = DequantizeGptq(*ckpt, kName);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(w.status().message()), HasSubstr(kName));
  EXPECT_EQ(DequantizeGptq(*ckpt, "model.no_such_layer").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(QuantizedWeightLoaderTest, DispatchesOnTheTensorsPresentAndRoundsToCheckpointDtype) {
  at::manual_seed(51);
  QuantizedLayer layer = RandomLayer(64, 96, 32, 4);
  std::vector<TensorBytes> all;
  // Layer A in the gptq format, layer B in the packed format, layer C plain.
  absl::StatusOr<std::vector<TensorBytes>> gptq = GptqTensors(layer, 4);
  ASSERT_TRUE(gptq.ok());
  for (TensorBytes& t : *gptq) all.push_back(t);
  QuantizedLayer packed_layer = layer;
  packed_layer.name = "b";
  absl::StatusOr<std::vector<TensorBytes>> packed = PackedTensors(packed_layer);
  ASSERT_TRUE(packed.ok()) << packed.status();
  for (TensorBytes& t : *packed) all.push_back(t);
  const at::Tensor plain = at::randn({8, 4});
  absl::StatusOr<TensorBytes> c = ToTensorBytes("c.weight", plain);
  ASSERT_TRUE(c.ok());
  all.push_back(*c);
  std::unique_ptr<SafetensorsCheckpoint> ckpt = WriteCheckpoint(all);
  EXPECT_TRUE(HasQuantizedLayers(*ckpt));

  LinearWeightLoader load = QuantizedWeightLoader(*ckpt, DType::kBF16);
  LinearLayerSpec spec;
  spec.name = kName;
  absl::StatusOr<at::Tensor> a = load(spec);
  absl::StatusOr<at::Tensor> direct = DequantizeGptq(*ckpt, kName);
  ASSERT_TRUE(a.ok() && direct.ok());
  EXPECT_TRUE(at::equal(*a, direct->to(at::kBFloat16).to(at::kFloat)));
  spec.name = "b";
  absl::StatusOr<at::Tensor> b = load(spec);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(at::equal(*b, layer.dequantized.to(at::kBFloat16).to(at::kFloat)));
  spec.name = "c";
  absl::StatusOr<at::Tensor> cw = load(spec);
  ASSERT_TRUE(cw.ok());
  EXPECT_TRUE(at::equal(*cw, plain));
  spec.name = "d";
  EXPECT_EQ(load(spec).status().code(), absl::StatusCode::kNotFound);
}

// The packers run on at::get_num_threads() threads; the bytes must not
// depend on how many.
TEST(LayerFormatsTest, PackedAndGptqBytesDoNotDependOnTheThreadCount) {
  at::manual_seed(52);
  const int64_t out = 96, in = 160;
  QuantizedLayer baq_kind;
  baq_kind.name = kName;
  baq_kind.levels = at::randint(1, 17, {in}, at::kInt);
  baq_kind.codes = (at::rand({out, in}) * baq_kind.levels.to(at::kFloat)).floor().to(at::kByte);
  baq_kind.row_min = -at::rand({out});
  baq_kind.row_max = at::rand({out});
  const QuantizedLayer grid = RandomLayer(out, in, 32, 4);
  const int threads = at::get_num_threads();
  std::vector<std::vector<TensorBytes>> runs;
  for (int n : {1, 3}) {
    at::set_num_threads(n);
    absl::StatusOr<std::vector<TensorBytes>> packed = PackedTensors(baq_kind);
    absl::StatusOr<std::vector<TensorBytes>> gptq = GptqTensors(grid, 4);
    ASSERT_TRUE(packed.ok()) << packed.status();
    ASSERT_TRUE(gptq.ok()) << gptq.status();
    runs.push_back(*packed);
    for (TensorBytes& t : *gptq) runs.back().push_back(std::move(t));
  }
  at::set_num_threads(threads);
  ASSERT_EQ(runs[0].size(), runs[1].size());
  for (size_t i = 0; i < runs[0].size(); ++i) {
    EXPECT_EQ(runs[0][i].name, runs[1][i].name);
    EXPECT_TRUE(runs[0][i].bytes == runs[1][i].bytes) << runs[0][i].name;
  }
}

}  // namespace
}  // namespace baq::worker

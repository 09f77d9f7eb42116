// DequantizePackedViews against the column-by-column definition it
// vectorizes (value = scale * (code - zero) with column j's grid from the row
// range at levels[j], quant_grid.h) and against a float64 decoder written
// here, for both kinds of packed layer; the same bits for any thread count;
// and every corrupt input refused with an error naming the layer.
#include "worker/packed_dequantize.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/block_protocol.h"
#include "worker/layer_formats.h"
#include "worker/quant/quant_grid.h"

namespace baq::worker {
namespace {

using ::testing::HasSubstr;

constexpr char kName[] = "model.layers.2.self_attn.q_proj";

// A BAQ-kind layer: codes of column j in [0, levels[j]) (1..20 levels, one
// column of a single level), rows ranging over both signs.
QuantizedLayer BaqLayer(int64_t out, int64_t in) {
  QuantizedLayer l;
  l.name = kName;
  l.levels = at::randint(1, 21, {in}, at::kInt);
  l.levels[3] = 1;
  l.row_min = -at::rand({out}, at::kFloat) * 0.2;
  l.row_max = at::rand({out}, at::kFloat) * 0.3;
  l.codes = at::empty({out, in}, at::kByte);
  for (int64_t j = 0; j < in; ++j) {
    l.codes.select(1, j).copy_(at::randint(l.levels[j].item<int>(), {out}, at::kByte));
  }
  return l;
}

QuantizedLayer GridLayer(int64_t out, int64_t in, int64_t groups) {
  QuantizedLayer l;
  l.name = kName;
  l.levels = at::full({in}, 8, at::kInt);
  l.codes = at::randint(8, {out, in}, at::kByte);
  l.scales = at::rand({out, groups}, at::kFloat) * 0.01 + 1e-4;
  l.zeros = at::randint(8, {out, groups}, at::kFloat);
  l.g_idx = (at::randperm(in, at::kLong) % groups).to(at::kInt);
  return l;
}

// The per-column definition the vectorized path replaces.
at::Tensor ColumnByColumn(const QuantizedLayer& l) {
  at::Tensor w = at::empty(l.codes.sizes(), at::kFloat);
  const RowRange range{l.row_min, l.row_max};
  for (int64_t j = 0; j < l.codes.size(1); ++j) {
    const QuantGrid g = GridFromRangeUnchecked(range, GridOptions{l.levels[j].item<int>(), false});
    w.select(1, j).copy_(DequantizeCodes(l.codes.select(1, j), g.scale, g.zero));
  }
  return w;
}

TensorView View(const TensorBytes& t) {
  return TensorView{t.dtype, t.shape,
                    absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(t.bytes.data()),
                                        t.bytes.size())};
}

struct Packed {
  std::vector<TensorBytes> tensors;
  PackedLayerViews views;
};

Packed Pack(const QuantizedLayer& l) {
  Packed p;
  absl::StatusOr<std::vector<TensorBytes>> t = PackedTensors(l);
  EXPECT_TRUE(t.ok()) << t.status();
  p.tensors = *std::move(t);
  for (const TensorBytes& b : p.tensors) {
    const std::string suffix = b.name.substr(b.name.rfind('.'));
    if (suffix == ".levels") p.views.levels = View(b);
    if (suffix == ".qcodes") p.views.qcodes = View(b);
    if (suffix == ".row_min") p.views.row_min = View(b);
    if (suffix == ".row_max") p.views.row_max = View(b);
    if (suffix == ".scales") p.views.scales = View(b);
    if (suffix == ".zeros") p.views.zeros = View(b);
    if (suffix == ".g_idx") p.views.g_idx = View(b);
  }
  return p;
}

TEST(PackedDequantizeTest, BaqKindEqualsTheColumnByColumnDefinitionBitForBit) {
  at::manual_seed(1);
  const QuantizedLayer l = BaqLayer(37, 53);
  Packed p = Pack(l);
  absl::StatusOr<at::Tensor> w = DequantizePackedViews(kName, p.views, at::kCPU);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE(at::equal(*w, ColumnByColumn(l)));
  EXPECT_TRUE(at::equal(DequantizeRowRangeCodes(l.codes, l.levels, l.row_min, l.row_max),
                        ColumnByColumn(l)));
}

TEST(PackedDequantizeTest, BaqKindMatchesAFloat64Decoder) {
  at::manual_seed(2);
  const QuantizedLayer l = BaqLayer(19, 41);
  Packed p = Pack(l);
  absl::StatusOr<at::Tensor> w = DequantizePackedViews(kName, p.views, at::kCPU);
  ASSERT_TRUE(w.ok()) << w.status();
  // quant_grid.h in float64: xmin = min(row_min, 0), xmax = max(row_max, 0),
  // scale = (xmax - xmin) / maxq, zero = round(-xmin / scale).
  constexpr double kRelTolerance = 4e-6;  // float32 grid arithmetic against float64
  for (int64_t o = 0; o < 19; ++o) {
    const double xmin = std::min(0.0, static_cast<double>(l.row_min[o].item<float>()));
    const double xmax = std::max(0.0, static_cast<double>(l.row_max[o].item<float>()));
    for (int64_t j = 0; j < 41; ++j) {
      const int maxq = l.levels[j].item<int>() - 1;
      const double code = l.codes[o][j].item<uint8_t>();
      double want = 0;
      if (maxq > 0) {
        const double scale = (xmax - xmin) / maxq;
        want = scale * (code - std::nearbyint(-xmin / scale));
      }
      EXPECT_NEAR((*w)[o][j].item<float>(), want, kRelTolerance * (xmax - xmin) + 1e-12)
          << "row " << o << " column " << j;
    }
  }
}

TEST(PackedDequantizeTest, GridKindEqualsScalesTimesCodesMinusZeros) {
  at::manual_seed(3);
  const QuantizedLayer l = GridLayer(24, 64, 4);
  Packed p = Pack(l);
  absl::StatusOr<at::Tensor> w = DequantizePackedViews(kName, p.views, at::kCPU);
  ASSERT_TRUE(w.ok()) << w.status();
  const at::Tensor g = l.g_idx.to(at::kLong);
  EXPECT_TRUE(at::equal(*w, l.scales.index_select(1, g) *
                                (l.codes.to(at::kFloat) - l.zeros.index_select(1, g))));
}

TEST(PackedDequantizeTest, SameBitsForOneAndTwoThreads) {
  at::manual_seed(4);
  const QuantizedLayer l = BaqLayer(64, 300);
  Packed p = Pack(l);
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  absl::StatusOr<at::Tensor> one = DequantizePackedViews(kName, p.views, at::kCPU);
  at::set_num_threads(2);
  absl::StatusOr<at::Tensor> two = DequantizePackedViews(kName, p.views, at::kCPU);
  at::set_num_threads(threads);
  ASSERT_TRUE(one.ok() && two.ok());
  EXPECT_TRUE(at::equal(*one, *two));
}

TEST(PackedDequantizeTest, CorruptCodesAreRefusedNamingTheLayer) {
  at::manual_seed(5);
  const QuantizedLayer l = BaqLayer(16, 20);
  Packed p = Pack(l);
  PackedLayerViews short_codes = p.views;
  short_codes.qcodes.bytes = short_codes.qcodes.bytes.subspan(0, short_codes.qcodes.bytes.size() - 8);
  absl::StatusOr<at::Tensor> w = DequantizePackedViews(kName, short_codes, at::kCPU);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(w.status().message(), HasSubstr(absl::StrCat(kName, ".qcodes: truncated")));

  std::string longer(reinterpret_cast<const char*>(p.views.qcodes.bytes.data()),
                     p.views.qcodes.bytes.size());
  longer.append(8, '\0');
  PackedLayerViews trailing = p.views;
  trailing.qcodes.bytes =
      absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(longer.data()), longer.size());
  w = DequantizePackedViews(kName, trailing, at::kCPU);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(w.status().message(), HasSubstr("8 trailing bytes"));

  // All ones: group values no packer writes (>= L^t) in some column.
  std::string ones(p.views.qcodes.bytes.size(), '\xff');
  PackedLayerViews garbage = p.views;
  garbage.qcodes.bytes =
      absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(ones.data()), ones.size());
  w = DequantizePackedViews(kName, garbage, at::kCPU);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(w.status().message(), HasSubstr(absl::StrCat(kName, ".qcodes: column ")));
}

TEST(PackedDequantizeTest, InconsistentTensorsAreRefusedNamingTheTensor) {
  at::manual_seed(6);
  const QuantizedLayer l = BaqLayer(16, 20);
  Packed p = Pack(l);
  PackedLayerViews no_max = p.views;
  no_max.row_max.reset();
  EXPECT_EQ(DequantizePackedViews(kName, no_max, at::kCPU).status().code(),
            absl::StatusCode::kInvalidArgument);
  PackedLayerViews wrong_rows = p.views;
  wrong_rows.row_max->shape = {15};
  absl::StatusOr<at::Tensor> w = DequantizePackedViews(kName, wrong_rows, at::kCPU);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(w.status().message(), HasSubstr(absl::StrCat(kName, ".row_max is F32 [15]")));
  PackedLayerViews bad_levels = p.views;
  bad_levels.levels.dtype = DType::kF32;
  EXPECT_THAT(DequantizePackedViews(kName, bad_levels, at::kCPU).status().message(),
              HasSubstr(absl::StrCat(kName, ".levels is F32")));

  const QuantizedLayer g = GridLayer(8, 16, 2);
  Packed q = Pack(g);
  std::vector<int32_t> far(16, 7);
  PackedLayerViews bad_group = q.views;
  bad_group.g_idx->bytes =
      absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(far.data()), far.size() * 4);
  w = DequantizePackedViews(kName, bad_group, at::kCPU);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(w.status().message(), HasSubstr(absl::StrCat(kName, ".g_idx")));
}

}  // namespace
}  // namespace baq::worker

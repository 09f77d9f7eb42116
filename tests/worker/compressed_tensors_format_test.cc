// The compressed-tensors output format, written by CompressedTensorsTensors
// and read back by DequantizeCompressedTensors, against an independent
// decoder written here from compressed-tensors 0.20's description of
// pack-quantized (element i of a packed row at global bit i*bits of its
// int32 words; values stored as signed + 2^(bits-1); zero points packed the
// same way along the output dim; w = (q - zp) * scale), for 2/3/4/8 bits,
// symmetric and asymmetric, per channel and grouped; and the refusals.
#include "worker/compressed_tensors_format.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/safetensors_checkpoint.h"
#include "common/safetensors_writer.h"
#include "tests/testing/test_paths.h"

namespace baq::worker {
namespace {

using ::testing::HasSubstr;

constexpr char kName[] = "model.layers.0.self_attn.q_proj";

QuantizedLayer RandomLayer(int64_t out, int64_t in, int64_t group, int bits, bool symmetric) {
  const int64_t groups = in / group;
  const int levels = 1 << bits;
  QuantizedLayer l;
  l.name = kName;
  l.codes = at::randint(levels, {out, in}, at::kByte);
  l.zeros = symmetric ? at::full({out, groups}, levels / 2, at::kFloat)
                      : at::randint(levels, {out, groups}, at::kFloat);
  if (!symmetric) {
    l.zeros.select(0, 0).fill_(0);
    l.zeros.select(0, 1).fill_(levels - 1);
  }
  l.scales = at::rand({out, groups}, at::kFloat) * 0.01 + 1e-4;
  l.g_idx = at::arange(in, at::kInt).div(group, "floor").to(at::kInt);
  const at::Tensor g = l.g_idx.to(at::kLong);
  l.dequantized =
      l.scales.index_select(1, g) * (l.codes.to(at::kFloat) - l.zeros.index_select(1, g));
  l.levels = at::full({in}, levels, at::kInt);
  return l;
}

const TensorBytes* Find(const std::vector<TensorBytes>& ts, const std::string& suffix) {
  for (const TensorBytes& t : ts) {
    if (t.name == std::string(kName) + suffix) return &t;
  }
  return nullptr;
}

// Element i of `words` (one packed row) as the package unpacks it.
int64_t Element(const uint32_t* words, int64_t i, int bits) {
  const int64_t bit = i * bits;
  uint64_t two = words[bit / 32];
  if ((bit % 32) + bits > 32) two |= static_cast<uint64_t>(words[bit / 32 + 1]) << 32;
  return static_cast<int64_t>((two >> (bit % 32)) & ((1u << bits) - 1));
}

// The reference decoder: (q - zp) * scale with the signed q and zp, as float64.
at::Tensor ReferenceDecode(const std::vector<TensorBytes>& ts, int64_t out, int64_t in, int bits) {
  const TensorBytes* packed = Find(ts, ".weight_packed");
  const TensorBytes* scale = Find(ts, ".weight_scale");
  const TensorBytes* zp = Find(ts, ".weight_zero_point");
  const int64_t groups = scale->shape[1];
  const int64_t words = packed->shape[1];
  const uint32_t* w = reinterpret_cast<const uint32_t*>(packed->bytes.data());
  const float* s = reinterpret_cast<const float*>(scale->bytes.data());
  const int64_t offset = int64_t{1} << (bits - 1);
  std::vector<uint32_t> zcol;  // one group's packed column
  at::Tensor result = at::empty({out, in}, at::kDouble);
  for (int64_t g = 0; g < groups; ++g) {
    std::vector<int64_t> zero(out, 0);  // signed zero point
    if (zp != nullptr) {
      const int64_t zwords = zp->shape[0];
      const uint32_t* z = reinterpret_cast<const uint32_t*>(zp->bytes.data());
      zcol.assign(zwords, 0);
      for (int64_t r = 0; r < zwords; ++r) zcol[r] = z[r * groups + g];
      for (int64_t o = 0; o < out; ++o) zero[o] = Element(zcol.data(), o, bits) - offset;
    }
    for (int64_t o = 0; o < out; ++o) {
      for (int64_t i = g * (in / groups); i < (g + 1) * (in / groups); ++i) {
        const int64_t q = Element(w + o * words, i, bits) - offset;
        // float32 product, as the package computes it with float32 scales.
        result[o][i] = static_cast<double>(static_cast<float>(q - zero[o]) * s[o * groups + g]);
      }
    }
  }
  return result;
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

struct Case {
  int bits;
  int64_t group;  // == in: per channel
  bool symmetric;
};

class CompressedTensorsFormatTest : public ::testing::TestWithParam<Case> {};

TEST_P(CompressedTensorsFormatTest, RoundTripsAndMatchesTheReferenceDecoder) {
  const Case c = GetParam();
  const int64_t out = 40, in = 96;  // out*bits and in*bits not multiples of 32 at 3 bits
  at::manual_seed(c.bits * 10 + c.symmetric);
  const QuantizedLayer layer = RandomLayer(out, in, c.group, c.bits, c.symmetric);
  absl::StatusOr<std::vector<TensorBytes>> ts = CompressedTensorsTensors(layer, c.bits, c.symmetric);
  ASSERT_TRUE(ts.ok()) << ts.status();
  const TensorBytes* packed = Find(*ts, ".weight_packed");
  ASSERT_NE(packed, nullptr);
  EXPECT_EQ(packed->dtype, DType::kI32);
  EXPECT_EQ(packed->shape, (std::vector<int64_t>{out, (in * c.bits + 31) / 32}));
  const TensorBytes* shape = Find(*ts, ".weight_shape");
  ASSERT_NE(shape, nullptr);
  EXPECT_EQ(shape->dtype, DType::kI64);
  EXPECT_EQ(Find(*ts, ".weight_zero_point") == nullptr, c.symmetric);
  if (!c.symmetric) {
    EXPECT_EQ(Find(*ts, ".weight_zero_point")->shape,
              (std::vector<int64_t>{(out * c.bits + 31) / 32, in / c.group}));
  }
  EXPECT_TRUE(at::equal(ReferenceDecode(*ts, out, in, c.bits),
                        layer.dequantized.to(at::kDouble)));
  std::unique_ptr<SafetensorsCheckpoint> ckpt = WriteCheckpoint(*ts);
  absl::StatusOr<at::Tensor> w = DequantizeCompressedTensors(*ckpt, kName);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE(at::equal(*w, layer.dequantized));
  EXPECT_TRUE(HasQuantizedLayers(*ckpt));
}

INSTANTIATE_TEST_SUITE_P(Widths, CompressedTensorsFormatTest,
                         ::testing::Values(Case{2, 32, false}, Case{3, 32, false},
                                           Case{4, 96, false}, Case{8, 32, false},
                                           Case{3, 96, true}, Case{4, 32, true}));

TEST(CompressedTensorsFormatRefusalsTest, NamesTheLayerAndTheReason) {
  QuantizedLayer layer = RandomLayer(8, 64, 32, 4, false);
  QuantizedLayer shuffled = layer;
  shuffled.g_idx = at::arange(64, at::kInt).remainder(2);  // act-order groups
  EXPECT_THAT(CompressedTensorsTensors(shuffled, 4, false).status().message(),
              HasSubstr("static_groups"));
  EXPECT_THAT(CompressedTensorsTensors(layer, 4, /*symmetric=*/true).status().message(),
              HasSubstr(kName));
  QuantizedLayer baq_kind = layer;
  baq_kind.row_min = at::zeros({8});
  EXPECT_EQ(CompressedTensorsTensors(baq_kind, 4, false).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CompressedTensorsTensors(layer, 9, false).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace baq::worker

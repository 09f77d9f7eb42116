// The compact encoding of a quantized layer's weight: it rebuilds the dense
// weight (rounded to the checkpoint dtype) bit for bit, is several times
// smaller at 3 bits, the dense encoding passes through, and every mismatch
// or corruption is refused naming the layer.
#include "worker/engine/compact_weight.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "worker/layer_formats.h"
#include "worker/model/tensor_convert.h"
#include "worker/packed_dequantize.h"

namespace baq::worker {
namespace {

using ::testing::HasSubstr;

constexpr char kName[] = "model.layers.5.mlp.down_proj";
constexpr int64_t kRows = 96, kColumns = 160;

// A 3-bit-ish BAQ layer: levels 4..12 per column.
QuantizedLayer Layer() {
  QuantizedLayer l;
  l.name = kName;
  l.levels = at::randint(4, 13, {kColumns}, at::kInt);
  l.row_min = -at::rand({kRows}, at::kFloat);
  l.row_max = at::rand({kRows}, at::kFloat);
  l.codes = at::empty({kRows, kColumns}, at::kByte);
  for (int64_t j = 0; j < kColumns; ++j) {
    l.codes.select(1, j).copy_(at::randint(l.levels[j].item<int>(), {kRows}, at::kByte));
  }
  return l;
}

TensorBytes Compact(const QuantizedLayer& l, DType stored) {
  absl::StatusOr<std::vector<TensorBytes>> packed = PackedTensors(l);
  EXPECT_TRUE(packed.ok()) << packed.status();
  absl::StatusOr<TensorBytes> w = EncodeCompactWeight(kName, kRows, kColumns, stored, *packed);
  EXPECT_TRUE(w.ok()) << w.status();
  return *std::move(w);
}

TEST(CompactWeightTest, RebuildsTheDenseWeightBitForBitAndIsSmaller) {
  at::manual_seed(1);
  const QuantizedLayer l = Layer();
  for (DType stored : {DType::kF16, DType::kBF16, DType::kF32}) {
    const at::Tensor dense =
        DequantizeRowRangeCodes(l.codes, l.levels, l.row_min, l.row_max)
            .to(ToScalarType(stored))
            .to(at::kFloat);
    TensorBytes w = Compact(l, stored);
    EXPECT_TRUE(IsCompactWeight(w));
    EXPECT_EQ(w.name, kName);
    if (stored == DType::kF16) {
      EXPECT_LT(w.bytes.size() * 3, static_cast<size_t>(kRows * kColumns * 2))
          << "a ~3.2-bit layer should be well under a third of float16";
    }
    absl::StatusOr<at::Tensor> t = DecodeLayerWeight(w, kRows, kColumns, stored, at::kCPU);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_TRUE(at::equal(*t, dense)) << DTypeName(stored);
  }
}

TEST(CompactWeightTest, DenseWeightsPassThrough) {
  const at::Tensor values = at::randn({kRows, kColumns}).to(at::kHalf).to(at::kFloat);
  TensorBytes w{kName, DType::kF16, {kRows, kColumns}, ""};
  absl::StatusOr<std::string> bytes = TensorToBytes(values, DType::kF16);
  ASSERT_TRUE(bytes.ok());
  w.bytes = *bytes;
  EXPECT_FALSE(IsCompactWeight(w));
  absl::StatusOr<at::Tensor> t = DecodeLayerWeight(w, kRows, kColumns, DType::kF16, at::kCPU);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(at::equal(*t, values));
  w.shape = {kColumns, kRows};
  EXPECT_THAT(DecodeLayerWeight(w, kRows, kColumns, DType::kF16, at::kCPU).status().message(),
              HasSubstr(absl::StrCat("the weight of ", kName, " is not [96, 160] of F16")));
}

TEST(CompactWeightTest, MismatchesAreRefusedNamingTheLayer) {
  at::manual_seed(2);
  const TensorBytes w = Compact(Layer(), DType::kF16);
  for (auto [rows, columns, stored] : {std::tuple{kRows + 1, kColumns, DType::kF16},
                                       std::tuple{kRows, kColumns, DType::kBF16}}) {
    absl::StatusOr<at::Tensor> t = DecodeLayerWeight(w, rows, columns, stored, at::kCPU);
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(t.status().message(), HasSubstr(absl::StrCat("compact weight of ", kName)));
  }
  absl::StatusOr<TensorBytes> other =
      EncodeCompactWeight("model.layers.5.mlp.up_proj", kRows, kColumns, DType::kF16,
                          *PackedTensors(Layer()));
  EXPECT_EQ(other.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(other.status().message(), HasSubstr("is not the layer's"));
}

TEST(CompactWeightTest, CorruptImagesAreDataLoss) {
  at::manual_seed(3);
  TensorBytes cut = Compact(Layer(), DType::kF16);
  cut.bytes.resize(cut.bytes.size() - 16);
  cut.shape = {static_cast<int64_t>(cut.bytes.size())};
  EXPECT_EQ(DecodeLayerWeight(cut, kRows, kColumns, DType::kF16, at::kCPU).status().code(),
            absl::StatusCode::kDataLoss);
  TensorBytes noise{kName, DType::kU8, {64}, std::string(64, '\x07')};
  EXPECT_EQ(DecodeLayerWeight(noise, kRows, kColumns, DType::kF16, at::kCPU).status().code(),
            absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace baq::worker

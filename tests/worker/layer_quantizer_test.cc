// worker/layer_quantizer: that a job's QuantizationConfig reaches the
// numerics (results equal the quant/ entry points called with the config's
// options, so a dropped field fails), the layer report's accounting (bits,
// proxy losses, the gptq projection), the tensors per output format and the
// rounding of the stored weight, and the rejections. The numerics themselves
// are tested in tests/worker/quant/.
#include "worker/layer_quantizer.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "worker/layer_formats.h"
#include "worker/quant/baq.h"
#include "worker/quant/gptq.h"
#include "worker/quant/quant_grid.h"
#include "tests/worker/quant/reference_quant.h"

namespace baq::worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// 32 x 32: the smallest layer every gptq width (2, 3, 4, 8) can pack.
constexpr int64_t kRows = 32;
constexpr int64_t kCols = 32;
constexpr char kName[] = "model.layers.0.mlp.up_proj";

struct Layer {
  at::Tensor weight;
  at::Tensor hessian;
};

Layer RandomLayer(uint64_t seed) {
  at::manual_seed(seed);
  return {at::randn({kRows, kCols}, at::kFloat),
          testing::RandomHessian(kCols, 128, 1.0).to(at::kFloat)};
}

// Options that differ from every default, so a field the quantizer drops
// changes the result.
QuantizationConfig Config(QuantMethod method, double target_bits) {
  QuantizationConfig c;
  c.method = method;
  c.target_bits = target_bits;
  c.percdamp = 0.05;
  c.act_order = true;
  c.block_size = 8;
  return c;
}

// The tensor names after the layer's prefix (".weight", ...), or the whole
// name if it lacks the prefix.
std::vector<std::string> Suffixes(const LayerQuantizer::Result& r) {
  std::vector<std::string> out;
  for (const TensorBytes& t : r.tensors) {
    const std::string prefix = kName;
    out.push_back(t.name.rfind(prefix, 0) == 0 ? t.name.substr(prefix.size()) : t.name);
  }
  return out;
}

std::string Bytes(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
}

LayerAllocation Allocation(std::vector<int32_t> levels, int32_t gptq_bits = 0) {
  return LayerAllocation{kName, std::move(levels), gptq_bits};
}

// Alternating 4 and 8 levels: 2.5 bits per weight on average.
std::vector<int32_t> MixedLevels() {
  std::vector<int32_t> levels(kCols);
  for (int64_t j = 0; j < kCols; ++j) levels[j] = j % 2 == 0 ? 4 : 8;
  return levels;
}

TEST(LayerQuantizerTest, ReferenceLevelsRoundTwoToTheTargetBits) {
  EXPECT_EQ(LayerQuantizer(Config(QuantMethod::kBaq, 3.0)).ReferenceLevels(), 8);
  EXPECT_EQ(LayerQuantizer(Config(QuantMethod::kBaq, 2.5)).ReferenceLevels(), 6);  // 5.66
  EXPECT_EQ(LayerQuantizer(Config(QuantMethod::kBaq, 1.0)).ReferenceLevels(), 2);
}

TEST(LayerQuantizerTest, MeasureIsBaqPassOneWithTheConfigsOptions) {
  const Layer l = RandomLayer(1);
  const QuantizationConfig c = Config(QuantMethod::kBaq, 3.0);
  absl::StatusOr<std::vector<double>> got =
      LayerQuantizer(c).MeasureColumnLoss(l.weight, l.hessian);
  ASSERT_TRUE(got.ok()) << got.status();

  BaqOptions o;
  o.percdamp = c.percdamp;
  o.act_order = c.act_order;
  o.block_size = c.block_size;
  absl::StatusOr<BaqResult> want = BaqMeasure(l.weight, l.hessian, 8, o);
  ASSERT_TRUE(want.ok()) << want.status();
  ASSERT_EQ(got->size(), static_cast<size_t>(kCols));
  for (int64_t j = 0; j < kCols; ++j) {
    EXPECT_EQ((*got)[j], want->column_loss[j].item<double>()) << "column " << j;
  }
}

TEST(LayerQuantizerTest, BaqReportsBitsAndWritesFakeQuantAndPackedTensors) {
  const Layer l = RandomLayer(2);
  const QuantizationConfig c = Config(QuantMethod::kBaq, 2.5);
  absl::StatusOr<LayerQuantizer::Result> r = LayerQuantizer(c).Quantize(
      kName, l.weight, l.hessian, Allocation(MixedLevels()),
      {OutputFormat::kFakeQuant, OutputFormat::kPacked}, DType::kF16);
  ASSERT_TRUE(r.ok()) << r.status();

  BaqOptions o;
  o.percdamp = c.percdamp;
  o.act_order = c.act_order;
  o.block_size = c.block_size;
  absl::StatusOr<BaqResult> want = BaqQuantize(l.weight, l.hessian, MixedLevels(), o);
  ASSERT_TRUE(want.ok()) << want.status();

  EXPECT_EQ(r->report.name, kName);
  EXPECT_EQ(r->report.rows, kRows);
  EXPECT_EQ(r->report.columns, kCols);
  EXPECT_EQ(r->report.bits_sum, (16 * 2.0 + 16 * 3.0) * kRows);
  EXPECT_EQ(r->report.proxy_loss, want->proxy_loss);
  EXPECT_EQ(r->report.gptq_bits, 0);  // No gptq format requested.
  // The next block sees the dequantized weight as the F16 checkpoint stores it.
  EXPECT_TRUE(at::equal(r->stored_weight, want->weight.to(at::kHalf).to(at::kFloat)));

  EXPECT_THAT(Suffixes(*r), ElementsAre(".weight", ".qcodes", ".levels", ".row_min", ".row_max"));
  EXPECT_THAT(r->tensor_format, ElementsAre(0, 1, 1, 1, 1));
  const TensorBytes& fake = r->tensors[0];
  EXPECT_EQ(fake.dtype, DType::kF16);
  EXPECT_EQ(fake.shape, (std::vector<int64_t>{kRows, kCols}));
  EXPECT_EQ(fake.bytes, Bytes(want->weight.to(at::kHalf)));
  EXPECT_EQ(r->tensors[2].bytes, Bytes(want->levels));
}

TEST(LayerQuantizerTest, BaqGptqFormatRequantizesAtTheProjectedWidth) {
  const Layer l = RandomLayer(3);
  const QuantizationConfig c = Config(QuantMethod::kBaq, 2.5);
  absl::StatusOr<LayerQuantizer::Result> r =
      LayerQuantizer(c).Quantize(kName, l.weight, l.hessian, Allocation(MixedLevels(), 3),
                                 {OutputFormat::kGptq}, DType::kBF16);
  ASSERT_TRUE(r.ok()) << r.status();

  GptqOptions o;
  o.grid = GridOptions{8, c.symmetric};
  o.percdamp = c.percdamp;
  o.act_order = c.act_order;
  o.block_size = c.block_size;
  absl::StatusOr<GptqResult> g = Gptq(l.weight, l.hessian, o);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(r->report.gptq_bits, 3);
  EXPECT_EQ(r->report.gptq_proxy_loss, g->proxy_loss);
  EXPECT_NE(r->report.gptq_proxy_loss, r->report.proxy_loss);  // BAQ's own loss is separate.
  EXPECT_THAT(Suffixes(*r), ElementsAre(".qweight", ".qzeros", ".scales", ".g_idx"));
  EXPECT_THAT(r->tensor_format, ElementsAre(0, 0, 0, 0));
  EXPECT_EQ(r->tensors[0].shape, (std::vector<int64_t>{kCols * 3 / 32, kRows}));
}

TEST(LayerQuantizerTest, GptqAndCompressedTensorsShareOneRequantization) {
  const Layer l = RandomLayer(3);
  const QuantizationConfig c = Config(QuantMethod::kBaq, 2.5);
  absl::StatusOr<LayerQuantizer::Result> both = LayerQuantizer(c).Quantize(
      kName, l.weight, l.hessian, Allocation(MixedLevels(), 3),
      {OutputFormat::kGptq, OutputFormat::kCompressedTensors}, DType::kBF16);
  ASSERT_TRUE(both.ok()) << both.status();
  absl::StatusOr<LayerQuantizer::Result> gptq_only =
      LayerQuantizer(c).Quantize(kName, l.weight, l.hessian, Allocation(MixedLevels(), 3),
                                 {OutputFormat::kGptq}, DType::kBF16);
  ASSERT_TRUE(gptq_only.ok()) << gptq_only.status();
  EXPECT_EQ(both->report.gptq_bits, 3);
  EXPECT_EQ(both->report.gptq_proxy_loss, gptq_only->report.gptq_proxy_loss);
  EXPECT_THAT(Suffixes(*both), ElementsAre(".qweight", ".qzeros", ".scales", ".g_idx",
                                           ".weight_packed", ".weight_scale",
                                           ".weight_zero_point", ".weight_shape"));
  EXPECT_THAT(both->tensor_format, ElementsAre(0, 0, 0, 0, 1, 1, 1, 1));
  EXPECT_EQ(both->tensors[4].shape, (std::vector<int64_t>{kRows, kCols * 3 / 32}));
}

TEST(LayerQuantizerTest, GptqMethodUsesTheUniformWidthForEveryFormat) {
  const Layer l = RandomLayer(4);
  QuantizationConfig c = Config(QuantMethod::kGptq, 4.0);
  c.symmetric = true;
  c.group_size = 16;
  absl::StatusOr<LayerQuantizer::Result> r =
      LayerQuantizer(c).Quantize(kName, l.weight, l.hessian, Allocation({}),
                                 {OutputFormat::kPacked, OutputFormat::kGptq}, DType::kF32);
  ASSERT_TRUE(r.ok()) << r.status();

  GptqOptions o;
  o.grid = GridOptions{16, true};
  o.percdamp = c.percdamp;
  o.group_size = 16;
  o.act_order = true;
  o.block_size = 8;
  absl::StatusOr<GptqResult> g = Gptq(l.weight, l.hessian, o);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(r->report.proxy_loss, g->proxy_loss);
  EXPECT_EQ(r->report.gptq_proxy_loss, g->proxy_loss);  // The same quantization.
  EXPECT_EQ(r->report.gptq_bits, 4);
  EXPECT_EQ(r->report.bits_sum, 4.0 * kRows * kCols);
  EXPECT_TRUE(at::equal(r->stored_weight, g->weight));  // F32: no rounding.
  // packed: qcodes, levels, scales, zeros, g_idx; then gptq's four.
  EXPECT_THAT(r->tensor_format, ElementsAre(0, 0, 0, 0, 0, 1, 1, 1, 1));
  EXPECT_EQ(r->tensors[4].name, std::string(kName) + ".g_idx");
  EXPECT_EQ(r->tensors[4].bytes, Bytes(g->g_idx));
}

TEST(LayerQuantizerTest, ModuleAllocationQuantizesAtTheMeasuredLossOfItsWidth) {
  // The coordinator chooses widths by the measured candidate losses; the
  // quantization at the chosen width must be exactly that measured GPTQ.
  const Layer l = RandomLayer(8);
  for (QuantMethod method : {QuantMethod::kBaq, QuantMethod::kGptq}) {
    QuantizationConfig c = Config(method, 2.5);
    c.allocation_scope = AllocationScope::kModule;
    const LayerQuantizer q(c);
    absl::StatusOr<std::vector<double>> losses = q.MeasureCandidateLosses(l.weight, l.hessian);
    ASSERT_TRUE(losses.ok()) << losses.status();
    ASSERT_EQ(losses->size(), c.candidate_bits.size());
    for (size_t k = 0; k < c.candidate_bits.size(); ++k) {
      const int32_t bits = c.candidate_bits[k];
      if (k > 0) {
        EXPECT_LT((*losses)[k], (*losses)[k - 1]) << bits << " bits";
      }
      absl::StatusOr<LayerQuantizer::Result> r =
          q.Quantize(kName, l.weight, l.hessian, Allocation({}, bits),
                     {OutputFormat::kFakeQuant, OutputFormat::kGptq}, DType::kF32);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(r->report.proxy_loss, (*losses)[k]) << bits << " bits";  // Exact.
      EXPECT_EQ(r->report.gptq_bits, bits);
      EXPECT_EQ(r->report.gptq_proxy_loss, (*losses)[k]);
      EXPECT_EQ(r->report.bits_sum, static_cast<double>(bits) * kRows * kCols);
      GptqOptions o;
      o.grid = GridOptions{1 << bits, false};
      o.percdamp = c.percdamp;
      o.act_order = true;
      o.block_size = 8;
      absl::StatusOr<GptqResult> g = Gptq(l.weight, l.hessian, o);
      ASSERT_TRUE(g.ok()) << g.status();
      EXPECT_TRUE(at::equal(r->stored_weight, g->weight)) << bits << " bits";
    }
    // No width: the allocation is malformed.
    EXPECT_EQ(q.Quantize(kName, l.weight, l.hessian, Allocation({}, 0),
                         {OutputFormat::kFakeQuant}, DType::kF32)
                  .status()
                  .code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST(LayerQuantizerTest, RtnReportsTheProxyLossOfItsRounding) {
  const Layer l = RandomLayer(5);
  const QuantizationConfig c = Config(QuantMethod::kRtn, 3.0);
  absl::StatusOr<LayerQuantizer::Result> r = LayerQuantizer(c).Quantize(
      kName, l.weight, l.hessian, Allocation({}), {OutputFormat::kFakeQuant}, DType::kF32);
  ASSERT_TRUE(r.ok()) << r.status();
  absl::StatusOr<RtnResult> rtn = Rtn(l.weight, GridOptions{8, false}, -1);
  ASSERT_TRUE(rtn.ok()) << rtn.status();
  EXPECT_TRUE(at::equal(r->stored_weight, rtn->weight));
  absl::StatusOr<double> loss = ProxyLoss(l.weight, rtn->weight, l.hessian);
  ASSERT_TRUE(loss.ok());
  EXPECT_EQ(r->report.proxy_loss, *loss);
  EXPECT_EQ(r->report.bits_sum, 3.0 * kRows * kCols);
}

TEST(LayerQuantizerTest, RejectsAnAllocationOfTheWrongWidth) {
  const Layer l = RandomLayer(6);
  absl::StatusOr<LayerQuantizer::Result> r =
      LayerQuantizer(Config(QuantMethod::kBaq, 3.0))
          .Quantize(kName, l.weight, l.hessian, Allocation({8, 8, 8}), {OutputFormat::kFakeQuant},
                    DType::kF16);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("allocation has 3 levels for 32 columns"));
}

TEST(LayerQuantizerTest, RejectsGptqFormatWidthsItCannotPack) {
  const Layer l = RandomLayer(7);
  // GPTQ at 5 bits quantizes, but the gptq format has no 5-bit packing.
  absl::StatusOr<LayerQuantizer::Result> r =
      LayerQuantizer(Config(QuantMethod::kGptq, 5.0))
          .Quantize(kName, l.weight, l.hessian, Allocation({}), {OutputFormat::kGptq},
                    DType::kF16);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(),
              HasSubstr("formats support 2, 3, 4 or 8 bits per module, got 5"));
  // A BAQ allocation without a projected width asked for the gptq format.
  r = LayerQuantizer(Config(QuantMethod::kBaq, 2.5))
          .Quantize(kName, l.weight, l.hessian, Allocation(MixedLevels(), 0),
                    {OutputFormat::kGptq}, DType::kF16);
  EXPECT_THAT(r.status().message(), HasSubstr("got 0"));
}

TEST(LayerQuantizerTest, RejectsBadTensorsWithoutThrowing) {
  const Layer l = RandomLayer(8);
  const LayerQuantizer q(Config(QuantMethod::kBaq, 3.0));
  EXPECT_EQ(q.MeasureColumnLoss(l.weight, at::eye(kCols + 1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<LayerQuantizer::Result> r =
      q.Quantize(kName, l.weight.view({-1}), l.hessian, Allocation(MixedLevels()),
                 {OutputFormat::kFakeQuant}, DType::kF16);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("2-D"));
}

}  // namespace
}  // namespace baq::worker

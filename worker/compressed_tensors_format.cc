#include "worker/compressed_tensors_format.h"

#include <ATen/Parallel.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/code_packing.h"
#include "common/matrix_packing.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "worker/model/tensor_convert.h"
#include "worker/torch/torch_call.h"

namespace baq::worker {
namespace {

template <typename T>
std::string BytesOf(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

absl::StatusOr<std::vector<uint8_t>> UnpackRows(const std::vector<uint32_t>& words, int64_t rows,
                                                int64_t cols, int bits) {
  const int64_t per_row = FixedWidthPackedWords(cols, bits);
  std::vector<uint8_t> codes(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    BAQ_ASSIGN_OR_RETURN(
        std::vector<uint8_t> row,
        UnpackFixedWidth(absl::MakeConstSpan(words.data() + r * per_row, per_row), bits, cols));
    std::copy(row.begin(), row.end(), codes.begin() + r * cols);
  }
  return codes;
}

std::vector<uint32_t> Words(const TensorView& v) {
  std::vector<uint32_t> w(v.bytes.size() / 4);
  std::memcpy(w.data(), v.bytes.data(), w.size() * 4);
  return w;
}

}  // namespace

absl::StatusOr<std::vector<TensorBytes>> CompressedTensorsTensors(const QuantizedLayer& layer,
                                                                  int bits, bool symmetric) {
  const auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat(layer.name, ": compressed-tensors format ", why));
  };
  if (layer.row_min.defined() || !layer.scales.defined()) return bad("needs a uniform grid layer");
  if (bits < 1 || bits > 8) return bad(absl::StrCat("supports 1..8 bits, got ", bits));
  return CallTorch(absl::StrCat("compressed-tensors pack ", layer.name),
                   [&]() -> absl::StatusOr<std::vector<TensorBytes>> {
    const at::Tensor codes = layer.codes.to(at::kCPU, at::kByte).contiguous();
    const int64_t out = codes.size(0), in = codes.size(1);
    const at::Tensor zeros = layer.zeros.to(at::kCPU, at::kFloat).contiguous();  // [out, groups]
    const int64_t groups = zeros.size(1);
    if (in % groups != 0) {
      return bad(absl::StrCat("needs groups that divide the ", in, " input columns, got ",
                              groups, " groups"));
    }
    const int64_t group = in / groups;
    const at::Tensor expected_g_idx = at::arange(in, at::kLong).div(group, "floor");
    if (!at::equal(layer.g_idx.to(at::kCPU, at::kLong), expected_g_idx)) {
      return bad("has no g_idx: groups must be contiguous (with act_order, use static_groups)");
    }
    // The packer checks every code as it goes (a LibTorch max() over the
    // codes cost more than the packing).
    const int threads = at::get_num_threads();
    absl::StatusOr<std::string> packed =
        PackFixedWidthRows(absl::MakeConstSpan(codes.data_ptr<uint8_t>(), codes.numel()), out, in,
                           bits, threads);
    if (!packed.ok()) {
      return bad(absl::StrCat("got a code >= 2^", bits, " (", packed.status().message(), ")"));
    }
    const at::Tensor zero_codes = zeros.round();
    const int half = 1 << (bits - 1);
    if (!at::equal(zero_codes, zeros) || zeros.min().item<double>() < 0 ||
        zeros.max().item<double>() >= (1 << bits)) {
      return bad(absl::StrCat("needs integral zero points in [0, 2^", bits, ")"));
    }
    if (symmetric && !at::equal(zeros, at::full_like(zeros, half))) {
      return bad(absl::StrCat("symmetric grid needs every zero point = ", half));
    }
    std::vector<TensorBytes> result;
    result.push_back({layer.name + ".weight_packed", DType::kI32,
                      {out, FixedWidthPackedWords(in, bits)}, *std::move(packed)});
    BAQ_ASSIGN_OR_RETURN(TensorBytes scale,
                         ToTensorBytes(layer.name + ".weight_scale",
                                       layer.scales.to(at::kCPU, at::kFloat).contiguous()));
    result.push_back(std::move(scale));
    if (!symmetric) {
      // Packed along the output dim: one stream per group, stored [words, groups].
      const at::Tensor zt = zero_codes.t().to(at::kByte).contiguous();  // [groups, out]
      BAQ_ASSIGN_OR_RETURN(
          std::string zp,
          PackFixedWidthRows(absl::MakeConstSpan(zt.data_ptr<uint8_t>(), zt.numel()), groups,
                             out, bits, threads));
      const at::Tensor zp_words =
          at::from_blob(zp.data(), {groups, FixedWidthPackedWords(out, bits)}, at::kInt);
      BAQ_ASSIGN_OR_RETURN(TensorBytes zero_point,
                           ToTensorBytes(layer.name + ".weight_zero_point", zp_words.t()));
      result.push_back(std::move(zero_point));
    }
    const std::vector<int64_t> shape = {out, in};
    result.push_back({layer.name + ".weight_shape", DType::kI64, {2}, BytesOf(shape)});
    return result;
  });
}

absl::StatusOr<at::Tensor> DequantizeCompressedTensors(const SafetensorsCheckpoint& ckpt,
                                                       const std::string& name) {
  BAQ_ASSIGN_OR_RETURN(TensorView packed, ckpt.Get(name + ".weight_packed"));
  BAQ_ASSIGN_OR_RETURN(TensorView scale_view, ckpt.Get(name + ".weight_scale"));
  BAQ_ASSIGN_OR_RETURN(TensorView shape_view, ckpt.Get(name + ".weight_shape"));
  const auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": compressed-tensors tensors ", what));
  };
  if (packed.dtype != DType::kI32 || packed.shape.size() != 2 || scale_view.shape.size() != 2 ||
      shape_view.shape != std::vector<int64_t>{2} ||
      (shape_view.dtype != DType::kI64 && shape_view.dtype != DType::kI32)) {
    return bad("must be weight_packed I32 2-D, weight_scale 2-D, weight_shape I64/I32 [2]");
  }
  int64_t out = 0, in = 0;
  if (shape_view.dtype == DType::kI64) {
    const int64_t* s = reinterpret_cast<const int64_t*>(shape_view.bytes.data());
    out = s[0];
    in = s[1];
  } else {
    const int32_t* s = reinterpret_cast<const int32_t*>(shape_view.bytes.data());
    out = s[0];
    in = s[1];
  }
  const int64_t groups = scale_view.shape[1];
  int bits = 0;
  for (int b = 1; b <= 8 && bits == 0; ++b) {
    if (in > 0 && FixedWidthPackedWords(in, b) == packed.shape[1]) bits = b;
  }
  if (bits == 0 || packed.shape[0] != out || scale_view.shape[0] != out || groups <= 0 ||
      in % groups != 0) {
    return bad(absl::StrCat("disagree: weight_shape [", out, ", ", in, "], weight_packed [",
                            packed.shape[0], ", ", packed.shape[1], "], weight_scale [",
                            scale_view.shape[0], ", ", groups, "]"));
  }
  BAQ_ASSIGN_OR_RETURN(std::vector<uint8_t> codes,
                       Annotate(UnpackRows(Words(packed), out, in, bits), name + ".weight_packed"));
  std::vector<uint8_t> zero_codes(static_cast<size_t>(out * groups),
                                  static_cast<uint8_t>(1 << (bits - 1)));
  if (ckpt.Contains(name + ".weight_zero_point")) {
    BAQ_ASSIGN_OR_RETURN(TensorView zp, ckpt.Get(name + ".weight_zero_point"));
    const int64_t zwords = FixedWidthPackedWords(out, bits);
    if (zp.dtype != DType::kI32 || zp.shape != std::vector<int64_t>{zwords, groups}) {
      return bad(absl::StrCat("weight_zero_point must be I32 [", zwords, ", ", groups, "]"));
    }
    const std::vector<uint32_t> zw = Words(zp);  // [zwords, groups]
    std::vector<uint32_t> zw_t(zw.size());       // [groups, zwords]
    for (int64_t w = 0; w < zwords; ++w) {
      for (int64_t g = 0; g < groups; ++g) zw_t[g * zwords + w] = zw[w * groups + g];
    }
    BAQ_ASSIGN_OR_RETURN(std::vector<uint8_t> z,
                         Annotate(UnpackRows(zw_t, groups, out, bits), name + ".weight_zero_point"));
    for (int64_t g = 0; g < groups; ++g) {
      for (int64_t o = 0; o < out; ++o) zero_codes[o * groups + g] = z[g * out + o];
    }
  }
  BAQ_ASSIGN_OR_RETURN(at::Tensor scales, CopyTensorFromView(scale_view, at::kCPU, at::kFloat));
  return CallTorch(absl::StrCat("dequantize compressed-tensors ", name), [&] {
    const at::Tensor c = at::from_blob(codes.data(), {out, in}, at::kByte).to(at::kFloat);
    const at::Tensor z = at::from_blob(zero_codes.data(), {out, groups}, at::kByte).to(at::kFloat);
    const int64_t group = in / groups;
    const at::Tensor s_cols = scales.repeat_interleave(group, 1);
    const at::Tensor z_cols = z.repeat_interleave(group, 1);
    return (s_cols * (c - z_cols)).contiguous();
  });
}

}  // namespace baq::worker

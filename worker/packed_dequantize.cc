#include "worker/packed_dequantize.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/code_packing.h"
#include "common/status_macros.h"
#include "worker/model/tensor_convert.h"
#include "worker/quant/quant_grid.h"
#include "worker/torch/torch_call.h"

namespace baq::worker {
namespace {

// Columns per dequantization step: bounds the [out, step] float32 grid and
// code temporaries on the device (~0.5 GB for out = 28672).
constexpr int64_t kColumnStep = 4096;

std::string ShapeOf(const TensorView& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.shape.size(); ++i) absl::StrAppend(&s, i ? ", " : "", v.shape[i]);
  return s + "]";
}

absl::Status Expect(const std::string& what, const TensorView& v, DType dtype,
                    const std::vector<int64_t>& shape) {
  if (v.dtype != dtype || v.shape != shape) {
    std::string want = "[";
    for (size_t i = 0; i < shape.size(); ++i) absl::StrAppend(&want, i ? ", " : "", shape[i]);
    return absl::InvalidArgumentError(absl::StrCat(what, " is ", DTypeName(v.dtype), " ",
                                                   ShapeOf(v), ", expected ", DTypeName(dtype),
                                                   " ", want, "]"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<at::Tensor> UnpackPackedCodes(const std::string& name, const TensorView& qcodes,
                                             const at::Tensor& levels_cpu, int64_t out) {
  const int64_t in = levels_cpu.numel();
  const int32_t* lv = levels_cpu.data_ptr<int32_t>();
  // Each column's byte range, from its level count alone.
  std::map<int32_t, MixedRadixLayout> layouts;
  std::vector<size_t> offset(static_cast<size_t>(in) + 1, 0);
  for (int64_t j = 0; j < in; ++j) {
    auto it = layouts.find(lv[j]);
    if (it == layouts.end()) {
      absl::StatusOr<MixedRadixLayout> layout = MixedRadixLayoutFor(lv[j]);
      if (!layout.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(name, ".levels[", j, "]: ",
                                                       layout.status().message()));
      }
      it = layouts.emplace(lv[j], *layout).first;
    }
    offset[j + 1] = offset[j] + static_cast<size_t>(MixedRadixPackedWords(it->second, out)) * 8;
    if (offset[j + 1] > qcodes.bytes.size()) {
      return absl::DataLossError(absl::StrCat(name, ".qcodes: truncated at column ", j));
    }
  }
  if (offset[in] != qcodes.bytes.size()) {
    return absl::DataLossError(absl::StrCat(name, ".qcodes: ", qcodes.bytes.size() - offset[in],
                                            " trailing bytes"));
  }
  at::Tensor codes = at::empty({in, out}, at::kByte);  // column j is row j
  uint8_t* dst = codes.data_ptr<uint8_t>();
  std::mutex mu;
  int64_t bad_column = in;
  absl::Status bad;
  at::parallel_for(0, in, /*grain_size=*/16, [&](int64_t begin, int64_t end) {
    std::vector<uint64_t> words;
    for (int64_t j = begin; j < end; ++j) {
      words.resize((offset[j + 1] - offset[j]) / 8);
      std::memcpy(words.data(), qcodes.bytes.data() + offset[j], offset[j + 1] - offset[j]);
      absl::StatusOr<std::vector<uint8_t>> col = UnpackMixedRadix(words, lv[j], out);
      if (!col.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        if (j < bad_column) {  // The first bad column, whatever the thread count.
          bad_column = j;
          bad = col.status();
        }
        return;
      }
      std::memcpy(dst + j * out, col->data(), col->size());
    }
  });
  if (!bad.ok()) {
    return absl::DataLossError(
        absl::StrCat(name, ".qcodes: column ", bad_column, ": ", bad.message()));
  }
  return codes.t();
}

at::Tensor DequantizeRowRangeCodes(const at::Tensor& codes, const at::Tensor& levels_cpu,
                                   const at::Tensor& row_min, const at::Tensor& row_max) {
  const int64_t in = levels_cpu.numel();
  const int32_t* lv = levels_cpu.data_ptr<int32_t>();
  // One grid per distinct level count, stacked; each column picks its row.
  std::map<int32_t, int64_t> slot_of;
  std::vector<int64_t> slot(static_cast<size_t>(in));
  for (int64_t j = 0; j < in; ++j) {
    auto it = slot_of.find(lv[j]);
    if (it == slot_of.end()) it = slot_of.emplace(lv[j], static_cast<int64_t>(slot_of.size())).first;
    slot[j] = it->second;
  }
  std::vector<at::Tensor> scales(slot_of.size()), zeros(slot_of.size());
  const RowRange range{row_min, row_max};
  for (const auto& [levels, s] : slot_of) {
    QuantGrid g = GridFromRangeUnchecked(range, GridOptions{levels, /*symmetric=*/false});
    scales[s] = std::move(g.scale);
    zeros[s] = std::move(g.zero);
  }
  const at::Tensor scale_rows = at::stack(scales);  // [distinct, out]
  const at::Tensor zero_rows = at::stack(zeros);
  const at::Tensor index =
      at::tensor(at::ArrayRef<int64_t>(slot)).to(codes.device());
  at::Tensor w = at::empty(codes.sizes(), row_min.options().dtype(at::kFloat));
  for (int64_t c0 = 0; c0 < in; c0 += kColumnStep) {
    const int64_t n = std::min(kColumnStep, in - c0);
    const at::Tensor pick = index.narrow(0, c0, n);
    const at::Tensor scale = scale_rows.index_select(0, pick).t();  // [out, n]
    const at::Tensor zero = zero_rows.index_select(0, pick).t();
    // DequantizeCodes column by column, all columns at once: the same two
    // elementwise IEEE operations per value, so the same bits.
    w.narrow(1, c0, n).copy_(DequantizeCodes(codes.narrow(1, c0, n), scale, zero));
  }
  return w;
}

absl::StatusOr<at::Tensor> DequantizePackedViews(const std::string& name,
                                                 const PackedLayerViews& v, at::Device device) {
  if (v.levels.dtype != DType::kI32 || v.levels.shape.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(name, ".levels is ", DTypeName(v.levels.dtype),
                                                   " ", ShapeOf(v.levels), ", expected I32 [in]"));
  }
  const int64_t in = v.levels.shape[0];
  const bool baq_kind = v.row_min.has_value();
  if (baq_kind != v.row_max.has_value() ||
      baq_kind == (v.scales.has_value() || v.zeros.has_value() || v.g_idx.has_value()) ||
      (!baq_kind && !(v.scales && v.zeros && v.g_idx))) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": a packed layer has either row_min and row_max, or scales, zeros and g_idx"));
  }
  const TensorView& rows_view = baq_kind ? *v.row_min : *v.scales;
  if (rows_view.shape.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": rank-0 row tensor"));
  }
  const int64_t out = rows_view.shape[0];
  if (baq_kind) {
    BAQ_RETURN_IF_ERROR(Expect(name + ".row_min", *v.row_min, DType::kF32, {out}));
    BAQ_RETURN_IF_ERROR(Expect(name + ".row_max", *v.row_max, DType::kF32, {out}));
  } else {
    const int64_t groups = v.scales->shape.size() == 2 ? v.scales->shape[1] : -1;
    BAQ_RETURN_IF_ERROR(Expect(name + ".scales", *v.scales, DType::kF32, {out, groups}));
    BAQ_RETURN_IF_ERROR(Expect(name + ".zeros", *v.zeros, DType::kF32, {out, groups}));
    BAQ_RETURN_IF_ERROR(Expect(name + ".g_idx", *v.g_idx, DType::kI32, {in}));
  }
  auto load = [&](const TensorView& t, at::ScalarType type) {
    return CopyTensorFromView(t, at::kCPU, type);
  };
  BAQ_ASSIGN_OR_RETURN(at::Tensor levels, load(v.levels, at::kInt));
  return CallTorch(absl::StrCat("dequantize ", name), [&]() -> absl::StatusOr<at::Tensor> {
    BAQ_ASSIGN_OR_RETURN(at::Tensor codes, UnpackPackedCodes(name, v.qcodes, levels, out));
    // Transposed on the device: the host copy stays column-major.
    const at::Tensor c = codes.t().to(device).t();
    if (baq_kind) {
      BAQ_ASSIGN_OR_RETURN(at::Tensor row_min, load(*v.row_min, at::kFloat));
      BAQ_ASSIGN_OR_RETURN(at::Tensor row_max, load(*v.row_max, at::kFloat));
      return DequantizeRowRangeCodes(c, levels, row_min.to(device), row_max.to(device));
    }
    BAQ_ASSIGN_OR_RETURN(at::Tensor scales, load(*v.scales, at::kFloat));
    BAQ_ASSIGN_OR_RETURN(at::Tensor zeros, load(*v.zeros, at::kFloat));
    BAQ_ASSIGN_OR_RETURN(at::Tensor g_idx, load(*v.g_idx, at::kLong));
    const int64_t groups = scales.size(1);
    if (in > 0 && (g_idx.min().item<int64_t>() < 0 || g_idx.max().item<int64_t>() >= groups)) {
      return absl::DataLossError(absl::StrCat(name, ".g_idx: a group outside [0, ", groups, ")"));
    }
    const at::Tensor gi = g_idx.to(device);
    return DequantizeCodes(c.to(at::kFloat), scales.to(device).index_select(1, gi),
                           zeros.to(device).index_select(1, gi));
  });
}

}  // namespace baq::worker

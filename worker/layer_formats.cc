#include "worker/layer_formats.h"

#include <ATen/Parallel.h>

#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/code_packing.h"
#include "common/matrix_packing.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "worker/compressed_tensors_format.h"
#include "worker/model/tensor_convert.h"
#include "worker/packed_dequantize.h"
#include "worker/quant/quant_grid.h"
#include "worker/torch/torch_call.h"

namespace baq::worker {
namespace {

at::Tensor Cpu(const at::Tensor& t, at::ScalarType dtype) {
  return t.to(at::kCPU, dtype).contiguous();
}

}  // namespace

absl::StatusOr<TensorBytes> ToTensorBytes(std::string name, const at::Tensor& t) {
  BAQ_ASSIGN_OR_RETURN(DType dtype, ToDType(t.scalar_type()));
  TensorBytes out;
  out.name = std::move(name);
  out.dtype = dtype;
  out.shape = t.sizes().vec();
  BAQ_ASSIGN_OR_RETURN(out.bytes, TensorToBytes(t, dtype));
  return out;
}

absl::StatusOr<TensorBytes> FakeQuantTensor(const QuantizedLayer& layer, DType dtype) {
  TensorBytes out;
  out.name = layer.name + ".weight";
  out.dtype = dtype;
  out.shape = layer.dequantized.sizes().vec();
  BAQ_ASSIGN_OR_RETURN(out.bytes, TensorToBytes(layer.dequantized, dtype));
  return out;
}

absl::StatusOr<std::vector<TensorBytes>> PackedTensors(const QuantizedLayer& layer) {
  return CallTorch(absl::StrCat("pack ", layer.name),
                   [&]() -> absl::StatusOr<std::vector<TensorBytes>> {
    // Packed from the [out, in] rows as copied (uint8): the column streams
    // are gathered in chunks by the packing threads, no transpose pass.
    const at::Tensor codes = Cpu(layer.codes, at::kByte);
    const at::Tensor levels = Cpu(layer.levels, at::kInt);
    std::vector<TensorBytes> out;
    BAQ_ASSIGN_OR_RETURN(
        std::string packed,
        PackMixedRadixColumns(absl::MakeConstSpan(codes.data_ptr<uint8_t>(), codes.numel()),
                              codes.size(0),
                              absl::MakeConstSpan(levels.data_ptr<int32_t>(), levels.numel()),
                              at::get_num_threads()));
    TensorBytes q{layer.name + ".qcodes", DType::kU8,
                  {static_cast<int64_t>(packed.size())}, std::move(packed)};
    out.push_back(std::move(q));
    BAQ_ASSIGN_OR_RETURN(TensorBytes l, ToTensorBytes(layer.name + ".levels", levels));
    out.push_back(std::move(l));
    if (layer.row_min.defined()) {
      for (auto& [suffix, t] : {std::pair{".row_min", layer.row_min},
                                std::pair{".row_max", layer.row_max}}) {
        BAQ_ASSIGN_OR_RETURN(TensorBytes b, ToTensorBytes(layer.name + suffix, Cpu(t, at::kFloat)));
        out.push_back(std::move(b));
      }
    } else {
      for (auto& [suffix, t, dtype] : {std::tuple{".scales", layer.scales, at::kFloat},
                                       std::tuple{".zeros", layer.zeros, at::kFloat},
                                       std::tuple{".g_idx", layer.g_idx, at::kInt}}) {
        BAQ_ASSIGN_OR_RETURN(TensorBytes b, ToTensorBytes(layer.name + suffix, Cpu(t, dtype)));
        out.push_back(std::move(b));
      }
    }
    return out;
  });
}

absl::StatusOr<std::vector<TensorBytes>> GptqTensors(const QuantizedLayer& layer, int bits) {
  if (layer.row_min.defined() || !layer.scales.defined()) {
    return absl::InvalidArgumentError(
        absl::StrCat(layer.name, ": gptq format needs a uniform grid layer"));
  }
  return CallTorch(absl::StrCat("gptq pack ", layer.name),
                   [&]() -> absl::StatusOr<std::vector<TensorBytes>> {
    const at::Tensor codes = Cpu(layer.codes, at::kByte);  // [out, in]
    const int64_t out = codes.size(0), in = codes.size(1);
    if (out * bits % 32 != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          layer.name, ": gptq format needs out_features * bits to be a multiple of 32, got ",
          out, " * ", bits));
    }
    const int threads = at::get_num_threads();
    std::string qweight(static_cast<size_t>(in * bits / 32 * out * 4), '\0');
    BAQ_RETURN_IF_ERROR(PackGptqQweightInto(
        absl::MakeConstSpan(codes.data_ptr<uint8_t>(), codes.numel()), out, in, bits, threads,
        absl::MakeSpan(reinterpret_cast<uint8_t*>(qweight.data()), qweight.size())));
    // qzeros [groups][out*bits/32]: per group, the `out` zero points minus
    // one as one stream along out.
    at::Tensor zeros = Cpu(layer.zeros, at::kFloat).t().contiguous();  // [groups, out]
    const int64_t groups = zeros.size(0);
    const int mask = (1 << bits) - 1;
    at::Tensor zcodes =
        ((zeros.round().to(at::kInt) - 1).bitwise_and(mask)).to(at::kByte).contiguous();
    BAQ_ASSIGN_OR_RETURN(
        std::string qzeros,
        PackFixedWidthRows(absl::MakeConstSpan(zcodes.data_ptr<uint8_t>(), zcodes.numel()),
                           groups, out, bits, threads));
    std::vector<TensorBytes> result;
    result.push_back(
        {layer.name + ".qweight", DType::kI32, {in * bits / 32, out}, std::move(qweight)});
    result.push_back(
        {layer.name + ".qzeros", DType::kI32, {groups, out * bits / 32}, std::move(qzeros)});
    BAQ_ASSIGN_OR_RETURN(TensorBytes s, ToTensorBytes(layer.name + ".scales",
                                                      Cpu(layer.scales, at::kHalf).t().contiguous()));
    result.push_back(std::move(s));
    BAQ_ASSIGN_OR_RETURN(TensorBytes gi, ToTensorBytes(layer.name + ".g_idx", Cpu(layer.g_idx, at::kInt)));
    result.push_back(std::move(gi));
    return result;
  });
}

absl::StatusOr<at::Tensor> DequantizePacked(const SafetensorsCheckpoint& ckpt,
                                            const std::string& name) {
  BAQ_ASSIGN_OR_RETURN(PackedLayerViews v, PackedLayerViewsOf(ckpt, name));
  return DequantizePackedViews(name, v, at::kCPU);
}

absl::StatusOr<at::Tensor> DequantizeGptq(const SafetensorsCheckpoint& ckpt,
                                          const std::string& name) {
  BAQ_ASSIGN_OR_RETURN(TensorView qweight, ckpt.Get(name + ".qweight"));
  BAQ_ASSIGN_OR_RETURN(TensorView qzeros, ckpt.Get(name + ".qzeros"));
  BAQ_ASSIGN_OR_RETURN(TensorView scales_view, ckpt.Get(name + ".scales"));
  BAQ_ASSIGN_OR_RETURN(TensorView g_idx_view, ckpt.Get(name + ".g_idx"));
  const auto shape_error = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": gptq tensors ", what));
  };
  if (qweight.dtype != DType::kI32 || qzeros.dtype != DType::kI32 ||
      g_idx_view.dtype != DType::kI32 || qweight.shape.size() != 2 ||
      qzeros.shape.size() != 2 || scales_view.shape.size() != 2 ||
      g_idx_view.shape.size() != 1) {
    return shape_error("must be qweight I32 2-D, qzeros I32 2-D, scales 2-D, g_idx I32 1-D");
  }
  const int64_t in = g_idx_view.shape[0];
  const int64_t out = qweight.shape[1];
  const int64_t groups = scales_view.shape[0];
  if (in <= 0 || (qweight.shape[0] * 32) % in != 0) {
    return shape_error(absl::StrCat("have qweight rows ", qweight.shape[0],
                                    " for ", in, " input columns: no integer width"));
  }
  const int bits = static_cast<int>(qweight.shape[0] * 32 / in);
  if (bits < 1 || bits > 8 || scales_view.shape[1] != out || groups <= 0 ||
      qzeros.shape[0] != groups || qzeros.shape[1] * 32 != out * bits) {
    return shape_error(absl::StrCat("disagree: qweight [", qweight.shape[0], ", ", out,
                                    "], qzeros [", qzeros.shape[0], ", ", qzeros.shape[1],
                                    "], scales [", groups, ", ", scales_view.shape[1], "], ",
                                    bits, " bits"));
  }
  const auto words = [](const TensorView& v) {
    std::vector<uint32_t> w(v.bytes.size() / 4);
    std::memcpy(w.data(), v.bytes.data(), w.size() * 4);
    return w;
  };
  BAQ_ASSIGN_OR_RETURN(std::vector<uint8_t> codes,
                       Annotate(UnpackGptqQweight(words(qweight), out, in, bits),
                                name + ".qweight"));
  // qzeros is [groups][out*bits/32]; UnpackGptqQweight reads [words][rows].
  const std::vector<uint32_t> qz = words(qzeros);
  const int64_t zwords = qzeros.shape[1];
  std::vector<uint32_t> qz_t(qz.size());
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t r = 0; r < zwords; ++r) qz_t[r * groups + g] = qz[g * zwords + r];
  }
  BAQ_ASSIGN_OR_RETURN(std::vector<uint8_t> zcodes,
                       Annotate(UnpackGptqQweight(qz_t, groups, out, bits), name + ".qzeros"));
  const int32_t* gi = reinterpret_cast<const int32_t*>(g_idx_view.bytes.data());
  for (int64_t i = 0; i < in; ++i) {
    if (gi[i] < 0 || gi[i] >= groups) {
      return absl::DataLossError(absl::StrCat(name, ".g_idx[", i, "] = ", gi[i],
                                              " is outside [0, ", groups, ")"));
    }
  }
  BAQ_ASSIGN_OR_RETURN(at::Tensor scales, CopyTensorFromView(scales_view, at::kCPU, at::kFloat));
  return CallTorch(absl::StrCat("dequantize gptq ", name), [&] {
    const at::Tensor c = at::from_blob(codes.data(), {out, in}, at::kByte).to(at::kFloat);
    const int mask = (1 << bits) - 1;
    const at::Tensor z =
        ((at::from_blob(zcodes.data(), {groups, out}, at::kByte).to(at::kInt) + 1).bitwise_and(mask))
            .to(at::kFloat);
    const at::Tensor g = at::from_blob(const_cast<int32_t*>(gi), {in}, at::kInt).to(at::kLong);
    // [out, in] per-column scale and zero: column i uses group g_idx[i].
    const at::Tensor s_cols = scales.index_select(0, g).t();
    const at::Tensor z_cols = z.index_select(0, g).t();
    return (s_cols * (c - z_cols)).contiguous();
  });
}

bool HasQuantizedLayers(const SafetensorsCheckpoint& ckpt) {
  for (const std::string& n : ckpt.TensorNames()) {
    if (absl::EndsWith(n, ".qcodes") || absl::EndsWith(n, ".qweight") ||
        absl::EndsWith(n, ".weight_packed")) {
      return true;
    }
  }
  return false;
}

LinearWeightLoader QuantizedWeightLoader(const SafetensorsCheckpoint& ckpt,
                                         DType checkpoint_dtype) {
  const at::ScalarType stored = ToScalarType(checkpoint_dtype);
  return [&ckpt, stored](const LinearLayerSpec& layer) -> absl::StatusOr<at::Tensor> {
    at::Tensor w;
    if (ckpt.Contains(layer.name + ".qcodes")) {
      BAQ_ASSIGN_OR_RETURN(w, DequantizePacked(ckpt, layer.name));
    } else if (ckpt.Contains(layer.name + ".qweight")) {
      BAQ_ASSIGN_OR_RETURN(w, DequantizeGptq(ckpt, layer.name));
    } else if (ckpt.Contains(layer.name + ".weight_packed")) {
      BAQ_ASSIGN_OR_RETURN(w, DequantizeCompressedTensors(ckpt, layer.name));
    } else {
      BAQ_ASSIGN_OR_RETURN(TensorView v, ckpt.Get(layer.name + ".weight"));
      return CopyTensorFromView(v, at::kCPU, at::kFloat);
    }
    return CallTorch(absl::StrCat("round ", layer.name),
                     [&] { return w.to(stored).to(at::kFloat); });
  };
}

}  // namespace baq::worker

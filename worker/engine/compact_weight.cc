#include "worker/engine/compact_weight.h"

#include <map>
#include <memory>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/safetensors.h"
#include "common/safetensors_writer.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "worker/model/tensor_convert.h"
#include "worker/packed_dequantize.h"
#include "worker/torch/torch_call.h"

namespace baq::worker {
namespace {

absl::Status Mismatch(const std::string& layer, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("compact weight of ", layer, ": ", what));
}

}  // namespace

absl::StatusOr<TensorBytes> EncodeCompactWeight(const std::string& layer, int64_t rows,
                                                int64_t columns, DType stored,
                                                const std::vector<TensorBytes>& packed) {
  std::vector<TensorInfo> infos;
  uint64_t offset = 0;
  for (const TensorBytes& t : packed) {
    if (!absl::StartsWith(t.name, layer + ".")) {
      return Mismatch(layer, absl::StrCat("tensor ", t.name, " is not the layer's"));
    }
    infos.push_back(TensorInfo{t.name, t.dtype, t.shape, offset, offset + t.bytes.size()});
    offset += t.bytes.size();
  }
  const std::map<std::string, std::string> metadata = {
      {"format", kCompactWeightFormat},
      {"dtype", std::string(DTypeName(stored))},
      {"rows", absl::StrCat(rows)},
      {"columns", absl::StrCat(columns)}};
  TensorBytes out;
  out.name = layer;
  out.dtype = DType::kU8;
  out.bytes = SafetensorsHeader(infos, metadata);
  out.bytes.reserve(out.bytes.size() + offset);
  for (const TensorBytes& t : packed) out.bytes += t.bytes;
  out.shape = {static_cast<int64_t>(out.bytes.size())};
  return out;
}

bool IsCompactWeight(const TensorBytes& w) {
  return w.dtype == DType::kU8 && w.shape.size() == 1;
}

absl::StatusOr<at::Tensor> DecodeLayerWeight(TensorBytes w, int64_t rows, int64_t columns,
                                             DType stored, at::Device device) {
  const std::string layer = w.name;
  if (!IsCompactWeight(w)) {
    if (w.dtype != stored || w.shape != std::vector<int64_t>{rows, columns} ||
        w.bytes.size() != static_cast<size_t>(rows * columns) * DTypeSize(w.dtype)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the weight of ", layer, " is not [", rows, ", ", columns, "] of ", DTypeName(stored),
          " (", DTypeName(w.dtype), ", ", w.bytes.size(), " bytes)"));
    }
    TensorView view{w.dtype, w.shape,
                    absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(w.bytes.data()),
                                        w.bytes.size())};
    return Annotate(CopyTensorFromView(view, device, at::kFloat), layer);
  }
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> image =
      SafetensorsFile::FromBytes(std::move(w.bytes), absl::StrCat("compact weight of ", layer));
  if (!image.ok()) return absl::DataLossError(image.status().message());
  const std::map<std::string, std::string>& meta = (*image)->metadata();
  auto field = [&](const char* key) {
    auto it = meta.find(key);
    return it == meta.end() ? std::string() : it->second;
  };
  int64_t meta_rows = -1, meta_columns = -1;
  if (field("format") != kCompactWeightFormat || field("dtype") != DTypeName(stored) ||
      !absl::SimpleAtoi(field("rows"), &meta_rows) ||
      !absl::SimpleAtoi(field("columns"), &meta_columns) || meta_rows != rows ||
      meta_columns != columns) {
    return Mismatch(layer, absl::StrCat("metadata (format \"", field("format"), "\", dtype \"",
                                        field("dtype"), "\", ", field("rows"), " x ",
                                        field("columns"), ") is not ", kCompactWeightFormat,
                                        " of ", DTypeName(stored), " ", rows, " x ", columns));
  }
  absl::StatusOr<PackedLayerViews> views = PackedLayerViewsOf(**image, layer);
  if (!views.ok()) return absl::DataLossError(views.status().message());
  BAQ_ASSIGN_OR_RETURN(at::Tensor t, DequantizePackedViews(layer, *views, device));
  if (t.size(0) != rows || t.size(1) != columns) {
    return Mismatch(layer, absl::StrCat("its tensors make [", t.size(0), ", ", t.size(1),
                                        "], expected [", rows, ", ", columns, "]"));
  }
  return CallTorch(absl::StrCat("round ", layer),
                   [&] { return t.to(ToScalarType(stored)).to(at::kFloat); });
}

}  // namespace baq::worker

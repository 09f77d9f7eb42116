#include "worker/model/tensor_convert.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "worker/torch/torch_call.h"

namespace baq::worker {
namespace {

absl::Status CheckViewBytes(const TensorView& view) {
  int64_t numel = 1;
  for (int64_t d : view.shape) {
    if (d < 0) return absl::InvalidArgumentError("negative dimension in tensor view");
    numel *= d;
  }
  const uint64_t expected = static_cast<uint64_t>(numel) * DTypeSize(view.dtype);
  if (view.bytes.size() != expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor view of ", DTypeName(view.dtype), ShapeString(view.shape), " has ",
        view.bytes.size(), " bytes, expected ", expected));
  }
  return absl::OkStatus();
}

bool IsFloating(DType dtype) {
  return dtype == DType::kF16 || dtype == DType::kBF16 || dtype == DType::kF32 ||
         dtype == DType::kF64;
}

}  // namespace

at::ScalarType ToScalarType(DType dtype) {
  switch (dtype) {
    case DType::kF16: return at::kHalf;
    case DType::kBF16: return at::kBFloat16;
    case DType::kF32: return at::kFloat;
    case DType::kF64: return at::kDouble;
    case DType::kI8: return at::kChar;
    case DType::kI32: return at::kInt;
    case DType::kI64: return at::kLong;
    case DType::kU8: return at::kByte;
  }
  return at::kFloat;  // Unreachable: the switch covers every DType.
}

absl::StatusOr<DType> ToDType(at::ScalarType type) {
  switch (type) {
    case at::kHalf: return DType::kF16;
    case at::kBFloat16: return DType::kBF16;
    case at::kFloat: return DType::kF32;
    case at::kDouble: return DType::kF64;
    case at::kChar: return DType::kI8;
    case at::kInt: return DType::kI32;
    case at::kLong: return DType::kI64;
    case at::kByte: return DType::kU8;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("no safetensors dtype for ", c10::toString(type)));
  }
}

std::string ShapeString(at::IntArrayRef shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<at::Tensor> TensorFromView(const TensorView& view) {
  BAQ_RETURN_IF_ERROR(CheckViewBytes(view));
  if (reinterpret_cast<uintptr_t>(view.bytes.data()) % DTypeSize(view.dtype) != 0) {
    return absl::InvalidArgumentError(
        "tensor view data is not aligned to its element size; use CopyTensorFromView");
  }
  return CallTorch("TensorFromView", [&] {
    // from_blob takes a mutable pointer; the tensor is documented read-only.
    void* data = const_cast<uint8_t*>(view.bytes.data());
    return at::from_blob(data, view.shape,
                         at::TensorOptions().dtype(ToScalarType(view.dtype)));
  });
}

absl::StatusOr<at::Tensor> CopyTensorFromView(const TensorView& view, at::Device device,
                                              at::ScalarType dtype) {
  BAQ_RETURN_IF_ERROR(CheckViewBytes(view));
  return CallTorch("CopyTensorFromView", [&] {
    const at::ScalarType src_type = ToScalarType(view.dtype);
    at::Tensor src;
    if (reinterpret_cast<uintptr_t>(view.bytes.data()) % DTypeSize(view.dtype) == 0) {
      src = at::from_blob(const_cast<uint8_t*>(view.bytes.data()), view.shape,
                          at::TensorOptions().dtype(src_type));
    } else {
      src = at::empty(view.shape, at::TensorOptions().dtype(src_type));
      if (!view.bytes.empty()) std::memcpy(src.data_ptr(), view.bytes.data(), view.bytes.size());
    }
    // copy=true: never alias the mapping, even when device and dtype match.
    return src.to(device, dtype, /*non_blocking=*/false, /*copy=*/true);
  });
}

absl::StatusOr<std::string> TensorToBytes(const at::Tensor& tensor, DType dtype) {
  return CallTorch("TensorToBytes", [&] {
    const at::Tensor cpu = tensor.to(at::kCPU, ToScalarType(dtype)).contiguous();
    const size_t n = static_cast<size_t>(cpu.numel()) * DTypeSize(dtype);
    std::string bytes(n, '\0');
    if (n > 0) std::memcpy(bytes.data(), cpu.data_ptr(), n);
    return bytes;
  });
}

absl::Status CheckFinite(const at::Tensor& tensor, absl::string_view what) {
  // NaN/Inf propagate through a sum, and finite float16/bfloat16/float32
  // values cannot overflow a float64 sum: one reduction, no mask tensor.
  BAQ_ASSIGN_OR_RETURN(double sum, CallTorch("CheckFinite", [&] {
                         return tensor.sum(at::kDouble).item<double>();
                       }));
  if (!std::isfinite(sum)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": contains NaN or Inf values"));
  }
  return absl::OkStatus();
}

absl::StatusOr<at::Tensor> LoadCheckpointTensor(const SafetensorsCheckpoint& ckpt,
                                                const std::string& name,
                                                const std::vector<int64_t>& expected_shape,
                                                at::Device device, at::ScalarType dtype) {
  absl::StatusOr<TensorInfo> info = ckpt.Info(name);
  if (!info.ok()) {
    if (info.status().code() != absl::StatusCode::kNotFound) return info.status();
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", name, " is missing from checkpoint ", ckpt.dir()));
  }
  if (info->shape != expected_shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor ", name, " has shape ", ShapeString(info->shape), " in checkpoint ",
        ckpt.dir(), ", but config.json implies ", ShapeString(expected_shape)));
  }
  if (!IsFloating(info->dtype)) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", name, " has dtype ",
                                                   DTypeName(info->dtype),
                                                   ", expected a floating-point type"));
  }
  BAQ_ASSIGN_OR_RETURN(TensorView view, ckpt.Get(name));
  BAQ_ASSIGN_OR_RETURN(at::Tensor tensor, CopyTensorFromView(view, device, dtype));
  BAQ_RETURN_IF_ERROR(CheckFinite(tensor, absl::StrCat("tensor ", name)));
  return tensor;
}

}  // namespace baq::worker

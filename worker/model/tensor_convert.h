// worker/model/tensor_convert.h
//
// Conversions between the torch-free tensor types of common/ (TensorView,
// DType) and at::Tensor, plus the checked weight loader every model file
// uses.
//
// Ownership: TensorFromView() is zero-copy — the returned tensor aliases the
// view's bytes, which belong to a SafetensorsFile / SafetensorsCheckpoint
// (an mmap). That owner must outlive the tensor and every tensor derived from
// it without a copy (views, slices, reshapes), and the tensor is read-only:
// the mapping is PROT_READ, so an in-place write crashes. When in doubt use
// CopyTensorFromView(), which returns an independent tensor on any device.
//
// Stateless; thread-safe. LibTorch exceptions are converted to Status
// (STYLE R13).
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(TensorView view, ckpt->Get("model.norm.weight"));
//   BAQ_ASSIGN_OR_RETURN(at::Tensor w,
//                        CopyTensorFromView(view, at::kCPU, at::kFloat));
//   BAQ_ASSIGN_OR_RETURN(std::string bytes, TensorToBytes(w, DType::kF16));
#ifndef BAQ_WORKER_MODEL_TENSOR_CONVERT_H_
#define BAQ_WORKER_MODEL_TENSOR_CONVERT_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/dtype.h"
#include "common/safetensors.h"
#include "common/safetensors_checkpoint.h"

namespace baq::worker {

// Every DType has a ScalarType (F16 -> kHalf, BF16 -> kBFloat16, ...).
at::ScalarType ToScalarType(DType dtype);
// InvalidArgument for scalar types safetensors files here do not carry.
absl::StatusOr<DType> ToDType(at::ScalarType type);

// Zero-copy CPU tensor over `view.bytes` (see the ownership rules above).
// InvalidArgument if the byte count does not match shape x dtype or the data
// is not aligned to the element size.
absl::StatusOr<at::Tensor> TensorFromView(const TensorView& view);

// An independent copy of `view` on `device`, converted to `dtype`. Works for
// unaligned data too.
absl::StatusOr<at::Tensor> CopyTensorFromView(const TensorView& view, at::Device device,
                                              at::ScalarType dtype);

// The elements of `tensor` (any device, any layout) converted to `dtype`, as
// row-major little-endian bytes: what SafetensorsWriter::Add and TensorBytes
// take.
absl::StatusOr<std::string> TensorToBytes(const at::Tensor& tensor, DType dtype);

// Loads the floating-point tensor `name` of `ckpt` for compute: checks its
// header against `expected_shape` before reading any data, copies it to
// `device` as `dtype`, and rejects NaN/Inf with one reduction. Errors name
// the tensor: InvalidArgument if it is missing, has another shape or a
// non-float dtype, or holds non-finite values.
absl::StatusOr<at::Tensor> LoadCheckpointTensor(const SafetensorsCheckpoint& ckpt,
                                                const std::string& name,
                                                const std::vector<int64_t>& expected_shape,
                                                at::Device device, at::ScalarType dtype);

// InvalidArgument naming `what` unless every element of `tensor` is finite.
absl::Status CheckFinite(const at::Tensor& tensor, absl::string_view what);

// "[2, 64, 384]".
std::string ShapeString(at::IntArrayRef shape);

}  // namespace baq::worker

#endif  // BAQ_WORKER_MODEL_TENSOR_CONVERT_H_

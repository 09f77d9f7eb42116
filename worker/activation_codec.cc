#include "worker/activation_codec.h"

#include <cstring>

#include "absl/types/span.h"
#include "common/activation_format.h"
#include "common/dtype.h"
#include "common/status_macros.h"
#include "worker/model/tensor_convert.h"
#include "worker/torch/torch_call.h"

namespace baq::worker {

absl::StatusOr<std::string> EncodeActivations(const at::Tensor& activations) {
  BAQ_ASSIGN_OR_RETURN(const DType dtype, ToDType(activations.scalar_type()));
  // Row-major elements on the host, read in place (no intermediate string).
  BAQ_ASSIGN_OR_RETURN(const at::Tensor cpu, CallTorch("encode activations", [&] {
                         return activations.to(at::kCPU).contiguous();
                       }));
  const absl::string_view payload(static_cast<const char*>(cpu.data_ptr()),
                                  static_cast<size_t>(cpu.numel()) * DTypeSize(dtype));
  return EncodeActivationBytes(
      dtype, absl::MakeConstSpan(cpu.sizes().data(), cpu.sizes().size()), payload);
}

absl::StatusOr<at::Tensor> DecodeActivations(absl::string_view bytes, at::Device device) {
  BAQ_ASSIGN_OR_RETURN(const ActivationView v, ParseActivationBytes(bytes));
  return CallTorch("decode activations", [&] {
    at::Tensor t = at::empty(v.shape, at::TensorOptions().dtype(ToScalarType(v.dtype)));
    if (!v.payload.empty()) std::memcpy(t.data_ptr(), v.payload.data(), v.payload.size());
    return t.to(device);
  });
}

}  // namespace baq::worker

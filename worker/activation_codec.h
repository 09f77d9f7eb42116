// worker/activation_codec.h
//
// Serializes the calibration activations at a block boundary for the
// worker-to-worker hand-off: "BAQA", u32 version = 1, u32 dtype (DType
// enum), u32 ndim, ndim x i64 shape, then the raw little-endian elements.
// Decoding validates every field and names the fault. Stateless; thread-safe.
#ifndef BAQ_WORKER_ACTIVATION_CODEC_H_
#define BAQ_WORKER_ACTIVATION_CODEC_H_

#include <ATen/ATen.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace baq::worker {

absl::StatusOr<std::string> EncodeActivations(const at::Tensor& activations);
absl::StatusOr<at::Tensor> DecodeActivations(absl::string_view bytes, at::Device device);

}  // namespace baq::worker

#endif  // BAQ_WORKER_ACTIVATION_CODEC_H_

// worker/activation_codec.h
//
// The tensor adapter around the "BAQA" activation format, whose layout and
// validation live in common/activation_format.h (the one implementation;
// docs/wire-formats.md): EncodeActivations copies a tensor's elements (any
// device, any layout) into the format, DecodeActivations turns validated
// bytes back into a tensor on `device`. Errors name the fault
// (InvalidArgument). Stateless; thread-safe.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(std::string wire, EncodeActivations(hidden));
//   BAQ_ASSIGN_OR_RETURN(at::Tensor back, DecodeActivations(wire, at::kCUDA));
#ifndef BAQ_WORKER_ACTIVATION_CODEC_H_
#define BAQ_WORKER_ACTIVATION_CODEC_H_

#include <ATen/ATen.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace baq::worker {

// InvalidArgument for a dtype safetensors does not carry or more than
// kMaxActivationDims dimensions.
absl::StatusOr<std::string> EncodeActivations(const at::Tensor& activations);
absl::StatusOr<at::Tensor> DecodeActivations(absl::string_view bytes, at::Device device);

}  // namespace baq::worker

#endif  // BAQ_WORKER_ACTIVATION_CODEC_H_

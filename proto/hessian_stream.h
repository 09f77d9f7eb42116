// proto/hessian_stream.h
//
// Hessian partial sums (baq::HessianPartial, common/block_protocol.h) on the
// wire: a stream of HessianPartialChunk messages, per partial a
// HessianPartialHeader and then its bytes in chunks of at most
// kMaxChunkBytes (an fp64 Hessian of a wide layer is hundreds of MiB; no
// message may hold it). HessianPartialWriter turns partials into messages,
// HessianPartialAssembler turns messages back into partials and checks the
// framing. Used by the worker service and the coordinator's remote engine.
//
// Value types; thread-compatible.
//
// Example:
//   HessianPartialWriter writer(std::move(partials));
//   v1::HessianPartialChunk chunk;
//   while (writer.Next(&chunk)) stream->Write(chunk);
//   ...
//   HessianPartialAssembler assembly;
//   while (stream->Read(&chunk)) BAQ_RETURN_IF_ERROR(assembly.Add(chunk));
//   BAQ_ASSIGN_OR_RETURN(std::vector<HessianPartial> got, std::move(assembly).Finish());
#ifndef BAQ_PROTO_HESSIAN_STREAM_H_
#define BAQ_PROTO_HESSIAN_STREAM_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "baq/v1/worker.pb.h"
#include "common/block_protocol.h"

namespace baq {

class HessianPartialWriter {
 public:
  explicit HessianPartialWriter(std::vector<HessianPartial> partials)
      : partials_(std::move(partials)) {}

  // Fills `chunk` with the next message; false once every partial is out.
  // A partial's bytes are freed once its last chunk is out.
  bool Next(v1::HessianPartialChunk* chunk);

 private:
  std::vector<HessianPartial> partials_;
  size_t index_ = 0;
  size_t offset_ = 0;
  bool header_sent_ = false;
};

class HessianPartialAssembler {
 public:
  // Internal error (naming the partial) for data before any header, more
  // data than the header announced, or a header before the previous partial
  // was complete.
  absl::Status Add(const v1::HessianPartialChunk& chunk);
  // Internal error if the last partial is incomplete.
  absl::StatusOr<std::vector<HessianPartial>> Finish() &&;
  uint64_t bytes_received() const { return bytes_received_; }

 private:
  absl::Status CheckComplete() const;

  std::vector<HessianPartial> partials_;
  uint64_t expected_bytes_ = 0;
  uint64_t bytes_received_ = 0;
};

}  // namespace baq

#endif  // BAQ_PROTO_HESSIAN_STREAM_H_

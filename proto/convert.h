// proto/convert.h
//
// Conversions between the baq.v1 wire messages and the plain C++ types the
// cores use (common/job_config.h, common/block_protocol.h), and between
// absl::Status and grpc::Status (codes map 1:1: both follow
// google/rpc/code.proto). The service layers call these; the cores never see
// a proto. Stateless; thread-safe.
//
// Proto3 zero values mean "default": FromProto fills JobConfig's defaults
// for unset numeric fields, so a client may send only what it changes.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(JobConfig config, FromProto(request.spec()));
//   reactor->Finish(ToGrpcStatus(core->Submit(config)));
#ifndef BAQ_PROTO_CONVERT_H_
#define BAQ_PROTO_CONVERT_H_

#include <grpcpp/support/status.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "baq/v1/job.pb.h"
#include "baq/v1/worker.pb.h"
#include "common/block_protocol.h"
#include "common/job_config.h"

namespace baq {

// Streamed tensors and Hessian partials reserve at most this much when their
// header arrives; larger ones grow as their chunks come. A peer announcing a
// huge (valid-looking) size then cannot make the receiver allocate it up front.
inline constexpr uint64_t kMaxUpfrontReserveBytes = uint64_t{256} << 20;

// Largest payload of one stream message (Quantize, ExportInputs,
// ImportInputs): well under gRPC's 4 MB default receive limit.
inline constexpr size_t kMaxChunkBytes = size_t{1} << 20;

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

void ToProto(const JobConfig& config, v1::JobSpec* spec);
// InvalidArgument for unknown enum values; does not call Validate().
absl::StatusOr<JobConfig> FromProto(const v1::JobSpec& spec);

void ToProto(const BlockMeasurement& m, v1::BlockMeasurement* proto);
BlockMeasurement FromProto(const v1::BlockMeasurement& proto);

void ToProto(const std::vector<LayerAllocation>& allocation,
             google::protobuf::RepeatedPtrField<v1::LayerAllocation>* proto);
std::vector<LayerAllocation> FromProto(
    const google::protobuf::RepeatedPtrField<v1::LayerAllocation>& proto);

void ToProto(const LayerReport& report, v1::LayerReport* proto);
LayerReport FromProto(const v1::LayerReport& proto);

// Header of a tensor (everything but the bytes); `format` as in
// BlockOutput::tensor_format.
void ToProtoHeader(const TensorBytes& tensor, int32_t format, v1::TensorHeader* header);
// InvalidArgument for an unknown dtype or a size that does not match the
// shape. `bytes` is left empty (reserved to total_bytes).
absl::StatusOr<TensorBytes> FromProtoHeader(const v1::TensorHeader& header);

void ToProto(const std::vector<LayerShape>& layers,
             google::protobuf::RepeatedPtrField<v1::LayerShape>* proto);
std::vector<LayerShape> FromProto(const google::protobuf::RepeatedPtrField<v1::LayerShape>& proto);

// Reassembles a stream of (TensorHeader, data*)* (AdvanceShards' weights):
// AddHeader/AddData as the messages arrive, Finish at the end.
// InvalidArgument for a bad header, data before any header, more or fewer
// bytes than a header announced. Thread-compatible.
class TensorStreamAssembler {
 public:
  absl::Status AddHeader(const v1::TensorHeader& header);
  absl::Status AddData(const std::string& data);
  uint64_t bytes_received() const { return bytes_received_; }
  absl::StatusOr<std::vector<TensorBytes>> Finish() &&;

 private:
  absl::Status CheckComplete() const;

  std::vector<TensorBytes> tensors_;
  uint64_t expected_ = 0;  // Of tensors_.back().
  uint64_t bytes_received_ = 0;
};

}  // namespace baq

#endif  // BAQ_PROTO_CONVERT_H_

// worker/service/job_stream_writer.h
//
// JobCallReactor is the unary reactor of WorkerService's calls that run a
// job's work on a device (Measure, Evaluate, BlockLayers, ...); see below.
//
// JobStreamWriter<ChunkProto> is the base of WorkerService's server streams
// that run one job's work on one device and then write its result
// (Quantize, AccumulateHessians). It holds what they share:
//
//   * OnWriteDone: a broken stream ends the call as CANCELLED, otherwise the
//     next chunk is written (WriteNext, the subclass's).
//   * OnCancel: a cancelled call (job cancelled, coordinator gone, deadline
//     passed) cancels and drops the job's engine on the device, so the work
//     stops within a layer or a few calibration windows and its memory is
//     freed.
//   * Done(status): records the RPC's outcome under `method` and finishes.
//
// The subclass starts the work in its constructor (through host()) and
// implements WriteNext(), which calls StartWrite or Done. Owns itself:
// deleted in OnDone, as gRPC's callback API expects. Thread-compatible: the
// executor until the first StartWrite, then the gRPC reaction that follows
// each write.
//
// Example:
//   class PartialsWriter final : public JobStreamWriter<v1::HessianPartialChunk> {
//    public:
//     PartialsWriter(ctx, request, host, metrics)
//         : JobStreamWriter(ctx, host, metrics, request.job_id(),
//                           request.device_index(), "AccumulateHessians") { ... }
//    private:
//     void WriteNext() override;
//   };
#ifndef BAQ_WORKER_SERVICE_JOB_STREAM_WRITER_H_
#define BAQ_WORKER_SERVICE_JOB_STREAM_WRITER_H_

#include <grpcpp/grpcpp.h>

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/block_engine.h"
#include "proto/convert.h"
#include "worker/service/engine_byte_streams.h"
#include "worker/service/engine_host.h"
#include "worker/service/worker_metrics.h"

namespace baq::worker {

template <typename ChunkProto>
class JobStreamWriter : public grpc::ServerWriteReactor<ChunkProto> {
 public:
  void OnWriteDone(bool ok) final {
    if (!ok) return Done(absl::CancelledError("stream broken while writing"));
    WriteNext();
  }
  void OnCancel() final { host_->ResetJob(job_id_, device_, [](absl::Status) {}); }
  void OnDone() final { delete this; }

 protected:
  JobStreamWriter(grpc::CallbackServerContext* ctx, EngineHost* host, WorkerMetrics* metrics,
                  std::string job_id, int device, absl::string_view method)
      : ctx_(ctx),
        host_(host),
        metrics_(metrics),
        job_id_(std::move(job_id)),
        device_(device),
        method_(std::string(method)) {}

  // Writes the next chunk (StartWrite) or ends the call (Done).
  virtual void WriteNext() = 0;

  void Done(const absl::Status& status) {
    RecordRpc(metrics_, method_, status);
    this->Finish(ToGrpcStatus(status));
  }

  grpc::CallbackServerContext* ctx() const { return ctx_; }
  EngineHost* host() const { return host_; }
  WorkerMetrics* metrics() const { return metrics_; }
  const std::string& job_id() const { return job_id_; }
  int device() const { return device_; }

 private:
  grpc::CallbackServerContext* const ctx_;
  EngineHost* const host_;
  WorkerMetrics* const metrics_;
  const std::string job_id_;
  const int device_;
  const std::string method_;
};

// A unary reactor for calls that run a job's work on a device: when the
// client cancels the call (job cancelled, coordinator gone, deadline passed),
// the job's engine on that device is cancelled and dropped, so the work stops
// within a layer or a few calibration windows and its memory is freed.
// Done(status) records the outcome under `method` and finishes the call.
// Owns itself: deleted in OnDone.
class JobCallReactor final : public grpc::ServerUnaryReactor {
 public:
  JobCallReactor(EngineHost* host, WorkerMetrics* metrics, absl::string_view method,
                 std::string job_id, int device)
      : host_(host),
        metrics_(metrics),
        method_(method),
        job_id_(std::move(job_id)),
        device_(device) {}
  void OnCancel() override { host_->ResetJob(job_id_, device_, [](absl::Status) {}); }
  void OnDone() override { delete this; }

  void Done(const absl::Status& status) {
    RecordRpc(metrics_, method_, status);
    Finish(ToGrpcStatus(status));
  }

 private:
  EngineHost* const host_;
  WorkerMetrics* const metrics_;
  const std::string method_;
  const std::string job_id_;
  const int device_;
};

// `engine`, or CANCELLED when the call was cancelled while its work waited
// for the device's executor.
inline absl::StatusOr<BlockEngine*> UnlessCancelled(absl::StatusOr<BlockEngine*> engine,
                                                    grpc::CallbackServerContext* ctx) {
  if (engine.ok() && ctx->IsCancelled()) return absl::CancelledError("cancelled");
  return engine;
}

}  // namespace baq::worker

#endif  // BAQ_WORKER_SERVICE_JOB_STREAM_WRITER_H_

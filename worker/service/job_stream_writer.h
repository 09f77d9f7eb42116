// worker/service/job_stream_writer.h
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
#include "absl/strings/string_view.h"
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

}  // namespace baq::worker

#endif  // BAQ_WORKER_SERVICE_JOB_STREAM_WRITER_H_

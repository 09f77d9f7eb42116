// worker/service/engine_byte_streams.h
//
// The two gRPC reactors WorkerService uses to move one opaque byte string
// (serialized activations) between the coordinator and a job's engine:
//
//   * EngineBytesWriter: a server stream of v1::Chunk. It runs `produce` on
//     the engine (on the device's executor, through EngineHost) and writes
//     the result in chunks of at most kMaxChunkBytes (ExportInputs,
//     ExportShardInputs). The failpoint "worker.<method>.lose_reply" (test
//     builds) answers UNAVAILABLE after `produce` ran, as a lost reply.
//   * EngineBytesReader<ChunkProto>: a client stream whose first message
//     names the target (job_id, device_index and whatever `consume` reads
//     from it) and every message carries `data`; once the stream ends it runs
//     `consume(engine, first message, bytes)` (ImportInputs,
//     ImportShardInputs).
//
// Both count bytes in WorkerMetrics and record the RPC's outcome under
// `method`. They own themselves (deleted in OnDone), as gRPC's callback API
// expects; thread-compatible: gRPC and the executor call them one at a time.
#ifndef BAQ_WORKER_SERVICE_ENGINE_BYTE_STREAMS_H_
#define BAQ_WORKER_SERVICE_ENGINE_BYTE_STREAMS_H_

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <functional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "baq/v1/worker.grpc.pb.h"
#include "common/block_engine.h"
#include "common/failpoint.h"
#include "common/trace_recorder.h"
#include "proto/convert.h"
#include "worker/service/engine_host.h"
#include "worker/service/worker_metrics.h"
#include "worker/service/worker_service.h"

namespace baq::worker {

// The RPC's outcome in the metrics (none without metrics).
inline void RecordRpc(WorkerMetrics* metrics, absl::string_view method,
                      const absl::Status& status) {
  if (metrics != nullptr) metrics->RecordRpc(method, status);
}

class EngineBytesWriter final : public grpc::ServerWriteReactor<v1::Chunk> {
 public:
  using Produce = std::function<absl::StatusOr<std::string>(BlockEngine&)>;

  EngineBytesWriter(const std::string& job_id, int device, EngineHost* host,
                    WorkerMetrics* metrics, std::string method, Produce produce)
      : metrics_(metrics), method_(std::move(method)) {
    host->WithEngine(job_id, device,
                     [this, produce = std::move(produce)](absl::StatusOr<BlockEngine*> engine) {
                       BAQ_TRACE_SCOPE("rpc", method_);
                       if (!engine.ok()) return Done(engine.status());
                       absl::StatusOr<std::string> bytes = produce(**engine);
                       if (!bytes.ok()) return Done(bytes.status());
                       // Test builds: the engine ran, its reply is lost on
                       // the way (what a client's retry must survive).
                       if (!failpoint::Eval(absl::StrCat("worker.", method_, ".lose_reply"))
                                .ok()) {
                         return Done(absl::UnavailableError(
                             absl::StrCat(method_, ": reply lost (failpoint)")));
                       }
                       bytes_ = *std::move(bytes);
                       WriteNext();
                     });
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return Done(absl::CancelledError("stream broken while writing"));
    WriteNext();
  }
  void OnDone() override { delete this; }

 private:
  void WriteNext() {
    if (offset_ >= bytes_.size()) return Done(absl::OkStatus());
    const size_t n = std::min(kMaxChunkBytes, bytes_.size() - offset_);
    chunk_.set_data(bytes_.data() + offset_, n);
    offset_ += n;
    if (metrics_ != nullptr) metrics_->bytes_sent_total().Increment(n);
    StartWrite(&chunk_);
  }

  void Done(const absl::Status& status) {
    RecordRpc(metrics_, method_, status);
    Finish(ToGrpcStatus(status));
  }

  WorkerMetrics* const metrics_;
  const std::string method_;
  std::string bytes_;
  size_t offset_ = 0;
  v1::Chunk chunk_;
};

template <typename ChunkProto>
class EngineBytesReader final : public grpc::ServerReadReactor<ChunkProto> {
 public:
  using Consume =
      std::function<absl::Status(BlockEngine&, const ChunkProto& first, std::string bytes)>;

  EngineBytesReader(grpc::CallbackServerContext* ctx, v1::ImportInputsResponse* response,
                    EngineHost* host, WorkerMetrics* metrics, std::string method,
                    Consume consume)
      : ctx_(ctx),
        response_(response),
        host_(host),
        metrics_(metrics),
        method_(std::move(method)),
        consume_(std::move(consume)) {
    this->StartRead(&chunk_);
  }

  void OnReadDone(bool ok) override {
    if (ok) {
      if (!have_first_) {
        first_ = chunk_;
        first_.clear_data();
        have_first_ = true;
      }
      data_.append(chunk_.data());
      if (metrics_ != nullptr) metrics_->bytes_received_total().Increment(chunk_.data().size());
      return this->StartRead(&chunk_);
    }
    if (ctx_->IsCancelled()) return Done(absl::CancelledError("client cancelled the import"));
    if (!have_first_) return Done(absl::InvalidArgumentError(absl::StrCat("empty ", method_,
                                                                          " stream")));
    host_->WithEngine(first_.job_id(), first_.device_index(),
                      [this](absl::StatusOr<BlockEngine*> engine) {
                        BAQ_TRACE_SCOPE("rpc", method_, {{"bytes", data_.size()}});
                        if (!engine.ok()) return Done(engine.status());
                        const size_t n = data_.size();
                        absl::Status s = consume_(**engine, first_, std::move(data_));
                        if (s.ok()) response_->set_bytes_received(n);
                        Done(s);
                      });
  }
  void OnDone() override { delete this; }

 private:
  void Done(const absl::Status& status) {
    RecordRpc(metrics_, method_, status);
    this->Finish(ToGrpcStatus(status));
  }

  grpc::CallbackServerContext* const ctx_;
  v1::ImportInputsResponse* const response_;
  EngineHost* const host_;
  WorkerMetrics* const metrics_;
  const std::string method_;
  const Consume consume_;
  ChunkProto chunk_;
  ChunkProto first_;  // The first message without its data: the target.
  bool have_first_ = false;
  std::string data_;
};

}  // namespace baq::worker

#endif  // BAQ_WORKER_SERVICE_ENGINE_BYTE_STREAMS_H_

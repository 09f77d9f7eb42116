// WorkerService's calibration-shard RPCs (declared in worker/service/worker_service.h;
// a file of their own so the block RPCs stay readable): each posts its
// BlockEngine call to the device's executor through EngineHost and streams
// Hessian partials (proto/hessian_stream.h) or one shard's inputs in chunks
// of at most kMaxChunkBytes.
#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/engine_capabilities.h"
#include "common/status_macros.h"
#include "common/trace_recorder.h"
#include "proto/convert.h"
#include "proto/hessian_stream.h"
#include "worker/service/engine_byte_streams.h"
#include "worker/service/job_stream_writer.h"
#include "worker/service/worker_service.h"

namespace baq::worker {
namespace {

// The job's engine's ShardedCalibration, or why not.
absl::StatusOr<ShardedCalibration*> Shards(absl::StatusOr<BlockEngine*> engine) {
  if (!engine.ok()) return engine.status();
  return RequireCapability<ShardedCalibration>(**engine);
}

// Streams the partials of AccumulateHessians. A cancelled call (job
// cancelled, coordinator gone, deadline) cancels and drops the job's engine
// on the device, as for Quantize. Owns itself: deleted in OnDone.
class PartialsWriter final : public JobStreamWriter<v1::HessianPartialChunk> {
 public:
  PartialsWriter(grpc::CallbackServerContext* ctx, const v1::AccumulateHessiansRequest& request,
                 EngineHost* host, WorkerMetrics* metrics)
      : JobStreamWriter(ctx, host, metrics, request.job_id(), request.device_index(),
                        "AccumulateHessians") {
    host->WithEngine(
        job_id(), device(),
        [this, block = request.block(),
         shards = std::vector<int32_t>(request.shards().begin(), request.shards().end())](
            absl::StatusOr<BlockEngine*> engine) {
          absl::StatusOr<ShardedCalibration*> sharded = Shards(engine);
          BAQ_TRACE_SCOPE("rpc", "AccumulateHessians", {{"block", block}});
          if (!sharded.ok()) return Done(sharded.status());
          if (this->ctx()->IsCancelled()) return Done(absl::CancelledError("cancelled"));
          const absl::Time start = absl::Now();
          absl::StatusOr<std::vector<HessianPartial>> partials =
              (*sharded)->AccumulateHessians(block, shards);
          if (!partials.ok()) return Done(partials.status());
          if (this->metrics() != nullptr) {
            this->metrics()->RecordBlock("accumulate", absl::ToDoubleSeconds(absl::Now() - start));
          }
          writer_.emplace(*std::move(partials));
          WriteNext();
        });
  }

 private:
  void WriteNext() override {
    if (!writer_->Next(&chunk_)) return Done(absl::OkStatus());
    if (metrics() != nullptr && chunk_.has_data()) {
      metrics()->bytes_sent_total().Increment(chunk_.data().size());
    }
    StartWrite(&chunk_);
  }

  // Touched by one thread at a time: the executor, then the write reactions.
  std::optional<HessianPartialWriter> writer_;
  v1::HessianPartialChunk chunk_;
};

// Reassembles an ImportHessians stream, then hands the sums to the engine.
class HessiansReader final : public grpc::ServerReadReactor<v1::ImportHessiansChunk> {
 public:
  HessiansReader(grpc::CallbackServerContext* ctx, v1::ImportHessiansResponse* response,
                 EngineHost* host, WorkerMetrics* metrics)
      : ctx_(ctx), response_(response), host_(host), metrics_(metrics) {
    StartRead(&chunk_);
  }

  void OnReadDone(bool ok) override {
    if (ok) {
      if (!have_target_) {
        job_id_ = chunk_.job_id();
        device_ = chunk_.device_index();
        block_ = chunk_.block();
        have_target_ = true;
      }
      if (chunk_.has_part() && status_.ok()) status_ = assembly_.Add(chunk_.part());
      if (metrics_ != nullptr) {
        metrics_->bytes_received_total().Increment(chunk_.part().data().size());
      }
      return StartRead(&chunk_);
    }
    if (ctx_->IsCancelled()) return Done(absl::CancelledError("client cancelled the import"));
    if (!have_target_) return Done(absl::InvalidArgumentError("empty ImportHessians stream"));
    if (!status_.ok()) {
      return Done(absl::InvalidArgumentError(
          absl::StrCat("bad ImportHessians stream: ", status_.message())));
    }
    const uint64_t bytes = assembly_.bytes_received();
    absl::StatusOr<std::vector<HessianPartial>> partials = std::move(assembly_).Finish();
    if (!partials.ok()) {
      return Done(absl::InvalidArgumentError(
          absl::StrCat("bad ImportHessians stream: ", partials.status().message())));
    }
    partials_ = *std::move(partials);
    host_->WithEngine(job_id_, device_, [this, bytes](absl::StatusOr<BlockEngine*> engine) {
      BAQ_TRACE_SCOPE("rpc", "ImportHessians", {{"block", block_}, {"bytes", bytes}});
      absl::StatusOr<ShardedCalibration*> sharded = Shards(engine);
      if (!sharded.ok()) return Done(sharded.status());
      const int n = static_cast<int>(partials_.size());
      absl::Status s = (*sharded)->ImportHessians(block_, std::move(partials_));
      if (s.ok()) {
        response_->set_bytes_received(bytes);
        response_->set_partials(n);
      }
      Done(s);
    });
  }
  void OnDone() override { delete this; }

 private:
  void Done(const absl::Status& status) {
    RecordRpc(metrics_, "ImportHessians", status);
    Finish(ToGrpcStatus(status));
  }

  grpc::CallbackServerContext* const ctx_;
  v1::ImportHessiansResponse* const response_;
  EngineHost* const host_;
  WorkerMetrics* const metrics_;
  v1::ImportHessiansChunk chunk_;
  bool have_target_ = false;
  std::string job_id_;
  int device_ = 0;
  int64_t block_ = 0;
  HessianPartialAssembler assembly_;
  absl::Status status_;
  std::vector<HessianPartial> partials_;
};

}  // namespace

grpc::ServerWriteReactor<v1::HessianPartialChunk>* WorkerService::AccumulateHessians(
    grpc::CallbackServerContext* ctx, const v1::AccumulateHessiansRequest* request) {
  return new PartialsWriter(ctx, *request, host_, metrics_);
}

grpc::ServerReadReactor<v1::ImportHessiansChunk>* WorkerService::ImportHessians(
    grpc::CallbackServerContext* ctx, v1::ImportHessiansResponse* response) {
  return new HessiansReader(ctx, response, host_, metrics_);
}

grpc::ServerWriteReactor<v1::Chunk>* WorkerService::ExportShardInputs(
    grpc::CallbackServerContext* ctx, const v1::ExportShardInputsRequest* request) {
  (void)ctx;
  const int64_t block = request->block();
  const int32_t shard = request->shard();
  return new EngineBytesWriter(
      request->job_id(), request->device_index(), host_, metrics_, "ExportShardInputs",
      [block, shard](BlockEngine& e) -> absl::StatusOr<std::string> {
        BAQ_ASSIGN_OR_RETURN(ShardedCalibration * s, RequireCapability<ShardedCalibration>(e));
        return s->ExportShardInputs(block, shard);
      });
}

grpc::ServerReadReactor<v1::ImportShardInputsChunk>* WorkerService::ImportShardInputs(
    grpc::CallbackServerContext* ctx, v1::ImportInputsResponse* response) {
  return new EngineBytesReader<v1::ImportShardInputsChunk>(
      ctx, response, host_, metrics_, "ImportShardInputs",
      [](BlockEngine& e, const v1::ImportShardInputsChunk& first,
         std::string bytes) -> absl::Status {
        BAQ_ASSIGN_OR_RETURN(ShardedCalibration * s, RequireCapability<ShardedCalibration>(e));
        return s->ImportShardInputs(first.block(), first.shard(), std::move(bytes));
      });
}

}  // namespace baq::worker

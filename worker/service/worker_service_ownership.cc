// WorkerService's RPCs of resident calibration shards with one owner per
// layer (LayerOwnership, common/engine_capabilities.h; declared in
// worker/service/worker_service.h; a file of their own so the block RPCs
// stay readable). Each posts its call to the device's executor through
// EngineHost; AdvanceShards reassembles its weights from a client stream of
// tensor headers and chunks first. Failpoints "worker.<method>" (test
// builds), evaluated on the executor before the engine call, as for Measure.
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/engine_capabilities.h"
#include "common/failpoint.h"
#include "common/status_macros.h"
#include "proto/convert.h"
#include "worker/service/engine_byte_streams.h"
#include "worker/service/job_stream_writer.h"
#include "worker/service/worker_service.h"

namespace baq::worker {
namespace {

// The job's engine's LayerOwnership, or why not (the call was cancelled
// meanwhile, the failpoint of `method`, no such engine or capability).
absl::StatusOr<LayerOwnership*> Owner(absl::StatusOr<BlockEngine*> engine,
                                      grpc::CallbackServerContext* ctx,
                                      absl::string_view method) {
  engine = UnlessCancelled(engine, ctx);
  if (!engine.ok()) return engine.status();
  BAQ_RETURN_IF_ERROR(failpoint::Eval(absl::StrCat("worker.", method)));
  return RequireCapability<LayerOwnership>(**engine);
}

// Reassembles an AdvanceShards stream, then hands the weights to the engine.
// Owns itself: deleted in OnDone.
class AdvanceReader final : public grpc::ServerReadReactor<v1::AdvanceShardsChunk> {
 public:
  AdvanceReader(grpc::CallbackServerContext* ctx, v1::AdvanceShardsResponse* response,
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
      if (status_.ok() && chunk_.has_tensor()) status_ = assembly_.AddHeader(chunk_.tensor());
      if (status_.ok() && chunk_.kind_case() == v1::AdvanceShardsChunk::kData) {
        status_ = assembly_.AddData(chunk_.data());
        if (metrics_ != nullptr) metrics_->bytes_received_total().Increment(chunk_.data().size());
      }
      return StartRead(&chunk_);
    }
    if (ctx_->IsCancelled()) return Done(absl::CancelledError("client cancelled the stream"));
    if (!have_target_) return Done(absl::InvalidArgumentError("empty AdvanceShards stream"));
    if (!status_.ok()) {
      return Done(absl::InvalidArgumentError(
          absl::StrCat("bad AdvanceShards stream: ", status_.message())));
    }
    const uint64_t bytes = assembly_.bytes_received();
    absl::StatusOr<std::vector<TensorBytes>> weights = std::move(assembly_).Finish();
    if (!weights.ok()) {
      return Done(absl::InvalidArgumentError(
          absl::StrCat("bad AdvanceShards stream: ", weights.status().message())));
    }
    weights_ = *std::move(weights);
    host_->WithEngine(job_id_, device_, [this, bytes](absl::StatusOr<BlockEngine*> engine) {
      absl::StatusOr<LayerOwnership*> owner = Owner(engine, ctx_, "advance_shards");
      if (!owner.ok()) return Done(owner.status());
      const int n = static_cast<int>(weights_.size());
      const absl::Time start = absl::Now();
      absl::Status s = (*owner)->AdvanceShards(block_, std::move(weights_));
      if (s.ok()) {
        response_->set_bytes_received(bytes);
        response_->set_weights(n);
        if (metrics_ != nullptr) {
          metrics_->RecordBlock("advance", absl::ToDoubleSeconds(absl::Now() - start));
        }
      }
      Done(s);
    });
  }
  // As for the other job calls: a cancelled call drops the job's engine.
  void OnCancel() override {
    if (have_target_) host_->ResetJob(job_id_, device_, [](absl::Status) {});
  }
  void OnDone() override { delete this; }

 private:
  void Done(const absl::Status& status) {
    RecordRpc(metrics_, "AdvanceShards", status);
    Finish(ToGrpcStatus(status));
  }

  grpc::CallbackServerContext* const ctx_;
  v1::AdvanceShardsResponse* const response_;
  EngineHost* const host_;
  WorkerMetrics* const metrics_;
  v1::AdvanceShardsChunk chunk_;
  // Set by the reads, then read by the executor: one at a time.
  bool have_target_ = false;
  std::string job_id_;
  int device_ = 0;
  int64_t block_ = 0;
  TensorStreamAssembler assembly_;
  absl::Status status_;
  std::vector<TensorBytes> weights_;
};

}  // namespace

grpc::ServerUnaryReactor* WorkerService::BlockLayers(grpc::CallbackServerContext* ctx,
                                                     const v1::BlockLayersRequest* request,
                                                     v1::BlockLayersResponse* response) {
  auto* reactor = new JobCallReactor(host_, metrics_, "BlockLayers", request->job_id(),
                                     request->device_index());
  host_->WithEngine(request->job_id(), request->device_index(),
                    [reactor, response, ctx, block = request->block()](
                        absl::StatusOr<BlockEngine*> engine) {
                      absl::StatusOr<LayerOwnership*> owner =
                          Owner(engine, ctx, "block_layers");
                      if (!owner.ok()) return reactor->Done(owner.status());
                      absl::StatusOr<std::vector<LayerShape>> layers =
                          (*owner)->BlockLayers(block);
                      if (layers.ok()) ToProto(*layers, response->mutable_layers());
                      reactor->Done(layers.status());
                    });
  return reactor;
}

grpc::ServerReadReactor<v1::AdvanceShardsChunk>* WorkerService::AdvanceShards(
    grpc::CallbackServerContext* ctx, v1::AdvanceShardsResponse* response) {
  return new AdvanceReader(ctx, response, host_, metrics_);
}

grpc::ServerUnaryReactor* WorkerService::CheckpointShards(
    grpc::CallbackServerContext* ctx, const v1::CheckpointShardsRequest* request,
    v1::CheckpointShardsResponse* response) {
  auto* reactor = new JobCallReactor(host_, metrics_, "CheckpointShards", request->job_id(),
                                     request->device_index());
  WorkerMetrics* metrics = metrics_;
  host_->WithEngine(request->job_id(), request->device_index(),
                    [reactor, response, ctx, metrics, block = request->block(),
                     dir = request->dir()](absl::StatusOr<BlockEngine*> engine) {
                      absl::StatusOr<LayerOwnership*> owner =
                          Owner(engine, ctx, "checkpoint_shards");
                      if (!owner.ok()) return reactor->Done(owner.status());
                      const absl::Time start = absl::Now();
                      absl::StatusOr<std::vector<int32_t>> shards =
                          (*owner)->CheckpointShards(block, dir);
                      if (shards.ok()) {
                        response->mutable_shards()->Add(shards->begin(), shards->end());
                        if (metrics != nullptr) {
                          metrics->RecordBlock("checkpoint",
                                               absl::ToDoubleSeconds(absl::Now() - start));
                        }
                      }
                      reactor->Done(shards.status());
                    });
  return reactor;
}

grpc::ServerUnaryReactor* WorkerService::RestoreShard(grpc::CallbackServerContext* ctx,
                                                      const v1::RestoreShardRequest* request,
                                                      v1::RestoreShardResponse* response) {
  (void)response;
  auto* reactor = new JobCallReactor(host_, metrics_, "RestoreShard", request->job_id(),
                                     request->device_index());
  host_->WithEngine(request->job_id(), request->device_index(),
                    [reactor, ctx, block = request->block(), shard = request->shard(),
                     dir = request->dir()](absl::StatusOr<BlockEngine*> engine) {
                      absl::StatusOr<LayerOwnership*> owner =
                          Owner(engine, ctx, "restore_shard");
                      if (!owner.ok()) return reactor->Done(owner.status());
                      reactor->Done((*owner)->RestoreShard(block, shard, dir));
                    });
  return reactor;
}

}  // namespace baq::worker

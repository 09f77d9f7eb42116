// worker/service/worker_service.h
//
// WorkerService: the gRPC face of a worker daemon (baq.v1.WorkerService).
// A thin adapter (STYLE R15/R16): each method converts the request into
// plain types, posts the work to the device's executor through EngineHost
// and returns its reactor; the executor finishes the RPC. No method blocks a
// gRPC thread. Quantize and ExportInputs stream their bytes in chunks of at
// most kMaxChunkBytes; ImportInputs reassembles a client stream.
//
// Thread-safe. The EngineHost and metrics are not owned and must outlive the
// server that registers this service.
//
// Example:
//   WorkerService service(&host, &metrics);
//   builder.RegisterService(&service);
#ifndef BAQ_WORKER_SERVICE_WORKER_SERVICE_H_
#define BAQ_WORKER_SERVICE_WORKER_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "baq/v1/worker.grpc.pb.h"
#include "worker/service/engine_host.h"
#include "worker/service/worker_metrics.h"

namespace baq::worker {

class WorkerService final : public v1::WorkerService::CallbackService {
 public:
  // `metrics` may be null.
  WorkerService(EngineHost* host, WorkerMetrics* metrics) : host_(host), metrics_(metrics) {}

  grpc::ServerUnaryReactor* StartJob(grpc::CallbackServerContext* ctx,
                                     const v1::StartJobRequest* request,
                                     v1::StartJobResponse* response) override;
  grpc::ServerUnaryReactor* Measure(grpc::CallbackServerContext* ctx,
                                    const v1::MeasureRequest* request,
                                    v1::BlockMeasurement* response) override;
  grpc::ServerWriteReactor<v1::QuantizeResponseChunk>* Quantize(
      grpc::CallbackServerContext* ctx, const v1::QuantizeRequest* request) override;
  grpc::ServerWriteReactor<v1::Chunk>* ExportInputs(
      grpc::CallbackServerContext* ctx, const v1::ExportInputsRequest* request) override;
  grpc::ServerReadReactor<v1::ImportInputsChunk>* ImportInputs(
      grpc::CallbackServerContext* ctx, v1::ImportInputsResponse* response) override;
  grpc::ServerUnaryReactor* ResetJob(grpc::CallbackServerContext* ctx,
                                     const v1::ResetJobRequest* request,
                                     v1::ResetJobResponse* response) override;
  grpc::ServerUnaryReactor* Evaluate(grpc::CallbackServerContext* ctx,
                                     const v1::EvaluateRequest* request,
                                     v1::EvaluateResponse* response) override;

  // Calibration shards (worker/service/worker_service_shards.cc): the BlockEngine
  // calls of the same names; partials and inputs cross as chunked streams.
  grpc::ServerWriteReactor<v1::HessianPartialChunk>* AccumulateHessians(
      grpc::CallbackServerContext* ctx, const v1::AccumulateHessiansRequest* request) override;
  grpc::ServerReadReactor<v1::ImportHessiansChunk>* ImportHessians(
      grpc::CallbackServerContext* ctx, v1::ImportHessiansResponse* response) override;
  grpc::ServerWriteReactor<v1::Chunk>* ExportShardInputs(
      grpc::CallbackServerContext* ctx, const v1::ExportShardInputsRequest* request) override;
  grpc::ServerReadReactor<v1::ImportShardInputsChunk>* ImportShardInputs(
      grpc::CallbackServerContext* ctx, v1::ImportInputsResponse* response) override;

  // Resident shards with one owner per layer (worker_service_ownership.cc;
  // Measure and Quantize take layer subsets themselves).
  grpc::ServerUnaryReactor* BlockLayers(grpc::CallbackServerContext* ctx,
                                        const v1::BlockLayersRequest* request,
                                        v1::BlockLayersResponse* response) override;
  grpc::ServerReadReactor<v1::AdvanceShardsChunk>* AdvanceShards(
      grpc::CallbackServerContext* ctx, v1::AdvanceShardsResponse* response) override;
  grpc::ServerUnaryReactor* CheckpointShards(grpc::CallbackServerContext* ctx,
                                             const v1::CheckpointShardsRequest* request,
                                             v1::CheckpointShardsResponse* response) override;
  grpc::ServerUnaryReactor* RestoreShard(grpc::CallbackServerContext* ctx,
                                         const v1::RestoreShardRequest* request,
                                         v1::RestoreShardResponse* response) override;

 private:
  EngineHost* const host_;        // Not owned.
  WorkerMetrics* const metrics_;  // Nullable; not owned.
};

}  // namespace baq::worker

#endif  // BAQ_WORKER_SERVICE_WORKER_SERVICE_H_

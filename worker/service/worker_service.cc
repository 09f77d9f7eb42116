#include "worker/service/worker_service.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/engine_capabilities.h"
#include "common/failpoint.h"
#include "common/status_macros.h"
#include "common/trace_recorder.h"
#include "proto/convert.h"
#include "worker/service/engine_byte_streams.h"
#include "worker/service/job_stream_writer.h"

namespace baq::worker {
namespace {

// The bit target a Measure/Quantize request carries (several targets over
// one measurement); target_bits 0: the job's, nothing to do.
absl::Status ApplyTarget(BlockEngine& engine, double target_bits, bool keep_measurement) {
  if (target_bits == 0) return absl::OkStatus();
  BAQ_ASSIGN_OR_RETURN(TargetSwitching * targets, RequireCapability<TargetSwitching>(engine));
  return targets->SetTarget(target_bits, keep_measurement);
}

// Measure(block), or LayerOwnership::MeasureLayers(block, *layers).
absl::StatusOr<BlockMeasurement> MeasureSome(BlockEngine& engine, int64_t block,
                                             const std::optional<std::vector<int32_t>>& layers) {
  if (!layers.has_value()) return engine.Measure(block);
  BAQ_ASSIGN_OR_RETURN(LayerOwnership * owner, RequireCapability<LayerOwnership>(engine));
  return owner->MeasureLayers(block, *layers);
}

// Streams a Quantize result: per tensor a header then its bytes in chunks,
// (with return_weights) each quantized layer's weight as a tensor of format
// -1, then the report. A layer subset runs LayerOwnership::QuantizeLayers.
// Owns itself: deleted in OnDone.
class QuantizeWriter final : public JobStreamWriter<v1::QuantizeResponseChunk> {
 public:
  QuantizeWriter(grpc::CallbackServerContext* ctx, const v1::QuantizeRequest& request,
                 EngineHost* host, WorkerMetrics* metrics)
      : JobStreamWriter(ctx, host, metrics, request.job_id(), request.device_index(),
                        "Quantize") {
    const int64_t block = request.block();
    host->WithEngine(
        request.job_id(), request.device_index(),
        [this, block, target = request.target_bits(), keep = request.keep_measurement(),
         allocation = FromProto(request.allocation()), subset = request.layer_subset(),
         layers = std::vector<int32_t>(request.layers().begin(), request.layers().end()),
         return_weights = request.return_weights()](absl::StatusOr<BlockEngine*> engine) {
          BAQ_TRACE_SCOPE("rpc", "Quantize", {{"block", block}});
          engine = UnlessCancelled(engine, this->ctx());
          if (!engine.ok()) return Done(engine.status());
          if (absl::Status s = ApplyTarget(**engine, target, keep); !s.ok()) return Done(s);
          // Test hook: "worker.quantize=sleep(MS)" keeps the call in flight (fault tests).
          if (absl::Status s = failpoint::Eval("worker.quantize"); !s.ok()) return Done(s);
          const absl::Time start = absl::Now();
          absl::StatusOr<BlockOutput> out;
          if (subset) {
            absl::StatusOr<OwnedLayersOutput> owned = QuantizeSubset(**engine, block, layers,
                                                                     allocation);
            if (!owned.ok()) return Done(owned.status());
            out = std::move(owned->output);
            tensors_per_layer_ = std::move(owned->tensors_per_layer);
            if (return_weights) weights_ = std::move(owned->weights);
          } else {
            out = (*engine)->Quantize(block, allocation);
          }
          if (!out.ok()) return Done(out.status());
          if (this->metrics() != nullptr) {
            this->metrics()->blocks_quantized_total().Increment();
            this->metrics()->RecordBlock("quantize", absl::ToDoubleSeconds(absl::Now() - start));
          }
          output_ = *std::move(out);
          WriteNext();
        });
  }

 private:
  static absl::StatusOr<OwnedLayersOutput> QuantizeSubset(
      BlockEngine& engine, int64_t block, const std::vector<int32_t>& layers,
      const std::vector<LayerAllocation>& allocation) {
    BAQ_ASSIGN_OR_RETURN(LayerOwnership * owner, RequireCapability<LayerOwnership>(engine));
    return owner->QuantizeLayers(block, layers, allocation);
  }

  void WriteNext() override {
    chunk_.Clear();
    const size_t outputs = output_.tensors.size();
    if (tensor_ < outputs + weights_.size()) {
      TensorBytes& t =
          tensor_ < outputs ? output_.tensors[tensor_] : weights_[tensor_ - outputs];
      if (!header_sent_) {
        int32_t format = -1;  // A layer's quantized weight.
        if (tensor_ < outputs) {
          format = tensor_ < output_.tensor_format.size() ? output_.tensor_format[tensor_] : 0;
        }
        ToProtoHeader(t, format, chunk_.mutable_tensor());
        header_sent_ = true;
        offset_ = 0;
        return StartWrite(&chunk_);
      }
      if (offset_ < t.bytes.size()) {
        const size_t n = std::min(kMaxChunkBytes, t.bytes.size() - offset_);
        chunk_.set_data(t.bytes.data() + offset_, n);
        offset_ += n;
        if (metrics() != nullptr) metrics()->bytes_sent_total().Increment(n);
        return StartWrite(&chunk_);
      }
      std::string().swap(t.bytes);  // Sent: free it before the next tensor.
      ++tensor_;
      header_sent_ = false;
      return WriteNext();
    }
    if (!report_sent_) {
      v1::QuantizeReport* report = chunk_.mutable_report();
      report->set_block(output_.block);
      report->set_num_tensors(static_cast<int32_t>(output_.tensors.size()));
      for (const LayerReport& r : output_.layers) ToProto(r, report->add_layers());
      report->mutable_tensors_per_layer()->Add(tensors_per_layer_.begin(),
                                               tensors_per_layer_.end());
      report_sent_ = true;
      return StartWrite(&chunk_);
    }
    Done(absl::OkStatus());
  }

  // Touched by one thread at a time: the executor until the first
  // StartWrite, then the gRPC reaction that follows each write.
  BlockOutput output_;
  std::vector<TensorBytes> weights_;  // Layer subsets with return_weights.
  std::vector<int32_t> tensors_per_layer_;
  size_t tensor_ = 0;
  size_t offset_ = 0;
  bool header_sent_ = false;
  bool report_sent_ = false;
  v1::QuantizeResponseChunk chunk_;
};


}  // namespace

grpc::ServerUnaryReactor* WorkerService::StartJob(grpc::CallbackServerContext* ctx,
                                                  const v1::StartJobRequest* request,
                                                  v1::StartJobResponse* response) {
  auto* reactor = new JobCallReactor(host_, metrics_, "StartJob", request->job_id(),
                                     request->device_index());
  absl::StatusOr<JobConfig> config = FromProto(request->spec());
  if (!config.ok()) {
    reactor->Done(config.status());
    return reactor;
  }
  if (request->job_id().empty()) {
    reactor->Done(absl::InvalidArgumentError("job_id is empty"));
    return reactor;
  }
  host_->StartJob(request->job_id(), request->device_index(), *std::move(config),
                  [response, reactor](absl::StatusOr<int64_t> num_blocks) {
                    if (num_blocks.ok()) response->set_num_blocks(*num_blocks);
                    reactor->Done(num_blocks.status());
                  });
  return reactor;
}

grpc::ServerUnaryReactor* WorkerService::Measure(grpc::CallbackServerContext* ctx,
                                                 const v1::MeasureRequest* request,
                                                 v1::BlockMeasurement* response) {
  auto* reactor = new JobCallReactor(host_, metrics_, "Measure", request->job_id(),
                                     request->device_index());
  WorkerMetrics* metrics = metrics_;
  const int64_t block = request->block();
  const double target = request->target_bits();
  const bool keep = request->keep_measurement();
  // LayerOwnership::MeasureLayers when the request names a layer subset.
  std::optional<std::vector<int32_t>> layers;
  if (request->layer_subset()) layers.emplace(request->layers().begin(), request->layers().end());
  host_->WithEngine(request->job_id(), request->device_index(),
                    [reactor, response, metrics, ctx, block, target, keep,
                     layers = std::move(layers)](absl::StatusOr<BlockEngine*> engine) {
                      BAQ_TRACE_SCOPE("rpc", "Measure", {{"block", block}});
                      engine = UnlessCancelled(engine, ctx);
                      absl::Status status = engine.status();
                      if (status.ok()) status = ApplyTarget(**engine, target, keep);
                      // Test hook, as "worker.quantize".
                      if (status.ok()) status = failpoint::Eval("worker.measure");
                      if (status.ok()) {
                        const absl::Time start = absl::Now();
                        absl::StatusOr<BlockMeasurement> m = MeasureSome(**engine, block, layers);
                        status = m.status();
                        if (m.ok()) {
                          ToProto(*m, response);
                          if (metrics != nullptr) {
                            metrics->blocks_measured_total().Increment();
                            metrics->RecordBlock("measure",
                                                 absl::ToDoubleSeconds(absl::Now() - start));
                          }
                        }
                      }
                      reactor->Done(status);
                    });
  return reactor;
}

grpc::ServerUnaryReactor* WorkerService::Evaluate(grpc::CallbackServerContext* ctx,
                                                  const v1::EvaluateRequest* request,
                                                  v1::EvaluateResponse* response) {
  auto* reactor = new JobCallReactor(host_, metrics_, "Evaluate", request->job_id(),
                                     request->device_index());
  host_->WithEngine(request->job_id(), request->device_index(),
                    [reactor, response, ctx, req = *request](absl::StatusOr<BlockEngine*> engine) {
                      BAQ_TRACE_SCOPE("rpc", "Evaluate");
                      engine = UnlessCancelled(engine, ctx);
                      absl::StatusOr<CheckpointEvaluator*> evaluator =
                          engine.ok() ? RequireCapability<CheckpointEvaluator>(**engine)
                                      : absl::StatusOr<CheckpointEvaluator*>(engine.status());
                      absl::Status status = evaluator.status();
                      if (status.ok()) {
                        absl::StatusOr<double> ppl = (*evaluator)->Evaluate(
                            req.model_dir(), req.text_file(), req.seqlen());
                        status = ppl.status();
                        if (ppl.ok()) response->set_perplexity(*ppl);
                      }
                      reactor->Done(status);
                    });
  return reactor;
}

grpc::ServerWriteReactor<v1::QuantizeResponseChunk>* WorkerService::Quantize(
    grpc::CallbackServerContext* ctx, const v1::QuantizeRequest* request) {
  return new QuantizeWriter(ctx, *request, host_, metrics_);
}

grpc::ServerWriteReactor<v1::Chunk>* WorkerService::ExportInputs(
    grpc::CallbackServerContext* ctx, const v1::ExportInputsRequest* request) {
  const int64_t block = request->block();
  return new EngineBytesWriter(request->job_id(), request->device_index(), host_, metrics_,
                               "ExportInputs",
                               [block](BlockEngine& e) -> absl::StatusOr<std::string> {
                                 BAQ_ASSIGN_OR_RETURN(ActivationTransfer * t,
                                                      RequireCapability<ActivationTransfer>(e));
                                 return t->ExportInputs(block);
                               });
}

grpc::ServerReadReactor<v1::ImportInputsChunk>* WorkerService::ImportInputs(
    grpc::CallbackServerContext* ctx, v1::ImportInputsResponse* response) {
  return new EngineBytesReader<v1::ImportInputsChunk>(
      ctx, response, host_, metrics_, "ImportInputs",
      [](BlockEngine& e, const v1::ImportInputsChunk& first, std::string bytes) -> absl::Status {
        BAQ_ASSIGN_OR_RETURN(ActivationTransfer * t, RequireCapability<ActivationTransfer>(e));
        return t->ImportInputs(first.block(), std::move(bytes));
      });
}

grpc::ServerUnaryReactor* WorkerService::ResetJob(grpc::CallbackServerContext* ctx,
                                                  const v1::ResetJobRequest* request,
                                                  v1::ResetJobResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  WorkerMetrics* metrics = metrics_;
  host_->ResetJob(request->job_id(), request->device_index(), [reactor, metrics](absl::Status s) {
    RecordRpc(metrics, "ResetJob", s);
    reactor->Finish(ToGrpcStatus(s));
  });
  return reactor;
}

}  // namespace baq::worker

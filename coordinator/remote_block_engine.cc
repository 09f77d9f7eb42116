#include "coordinator/remote_block_engine.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/trace_recorder.h"
#include "proto/convert.h"
#include "proto/hessian_stream.h"

namespace baq::coordinator {
namespace {

// The bytes of a server stream of chunks, to its end (Finish() says whether
// the stream ended well).
std::string ReadChunks(grpc::ClientReader<v1::Chunk>& reader) {
  std::string bytes;
  v1::Chunk chunk;
  while (reader.Read(&chunk)) bytes.append(chunk.data());
  return bytes;
}

// Writes `bytes` as a client stream of ChunkProto messages of at most
// kMaxChunkBytes: the first is `target` (job, device, block...) with the
// first data, so there is always one message, even for no bytes.
template <typename ChunkProto>
void WriteChunks(grpc::ClientWriter<ChunkProto>& writer, const ChunkProto& target,
                 const std::string& bytes) {
  size_t offset = 0;
  do {
    ChunkProto chunk;
    if (offset == 0) chunk = target;
    const size_t n = std::min(kMaxChunkBytes, bytes.size() - offset);
    chunk.set_data(bytes.data() + offset, n);
    offset += n;
    if (!writer.Write(chunk)) break;  // Stream broken: Finish says why.
  } while (offset < bytes.size());
  writer.WritesDone();
}

void SetDeadline(grpc::ClientContext& ctx, absl::Duration timeout) {
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

// Registers one call with the job's canceller for its lifetime. Declare it
// after the ClientContext, so it unregisters before the context dies.
class ActiveCall {
 public:
  ActiveCall(CallCanceller* canceller, grpc::ClientContext* ctx)
      : canceller_(canceller), ctx_(ctx), ok_(canceller == nullptr || canceller->Add(ctx)) {}
  ~ActiveCall() {
    if (canceller_ != nullptr && ok_) canceller_->Remove(ctx_);
  }
  ActiveCall(const ActiveCall&) = delete;
  ActiveCall& operator=(const ActiveCall&) = delete;

  bool ok() const { return ok_; }

 private:
  CallCanceller* const canceller_;
  grpc::ClientContext* const ctx_;
  const bool ok_;
};

absl::Status AbortedCall() { return absl::AbortedError("job aborted: coordinator shutting down"); }

// One RPC's client context with its deadline, registered with the job's
// canceller and the worker's lease fence (nullable) for the scope's lifetime.
// status() says whether the call may start: Aborted once the job's calls were
// cancelled, the fence's Unavailable once the worker's lease was lost.
class CallScope {
 public:
  CallScope(absl::Duration timeout, CallCanceller* canceller, LeaseFence* fence)
      : fence_(fence),
        call_(canceller, &ctx_),
        leased_(fence != nullptr ? &fence->calls() : nullptr, &ctx_) {
    SetDeadline(ctx_, timeout);
  }
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;

  absl::Status status() const {
    if (!call_.ok()) return AbortedCall();
    if (!leased_.ok()) return fence_->Check();
    return absl::OkStatus();
  }
  grpc::ClientContext* ctx() { return &ctx_; }

 private:
  LeaseFence* const fence_;
  // The context first: the registrations below end before it dies.
  grpc::ClientContext ctx_;
  ActiveCall call_;
  ActiveCall leased_;
};

// Retries only what is safe to repeat: ExportInputs reads, ResetJob is
// idempotent. Measure/Quantize/StartJob are retried by the job, not here.
constexpr char kWorkerServiceConfig[] = R"json({
  "methodConfig": [{
    "name": [{"service": "baq.v1.WorkerService", "method": "ExportInputs"},
             {"service": "baq.v1.WorkerService", "method": "ResetJob"}],
    "retryPolicy": {
      "maxAttempts": 4, "initialBackoff": "0.2s", "maxBackoff": "2s",
      "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
})json";

// Reassembles a Quantize stream into a BlockOutput (and, for a layer subset,
// the layers' quantized weights, streamed as tensors of format -1).
class OutputAssembly {
 public:
  absl::Status Add(const v1::QuantizeResponseChunk& chunk) {
    switch (chunk.kind_case()) {
      case v1::QuantizeResponseChunk::kTensor: {
        if (absl::Status s = CheckTensorComplete(); !s.ok()) return s;
        absl::StatusOr<TensorBytes> t = FromProtoHeader(chunk.tensor());
        if (!t.ok()) return t.status();
        expected_bytes_ = chunk.tensor().total_bytes();
        // Format -1: a layer's quantized weight (QuantizeLayers).
        if (chunk.tensor().format() == -1) {
          out_.weights.push_back(*std::move(t));
          current_ = &out_.weights.back();
          return absl::OkStatus();
        }
        out_.output.tensors.push_back(*std::move(t));
        out_.output.tensor_format.push_back(chunk.tensor().format());
        current_ = &out_.output.tensors.back();
        return absl::OkStatus();
      }
      case v1::QuantizeResponseChunk::kData: {
        if (current_ == nullptr) return absl::InternalError("tensor data before any header");
        std::string& bytes = current_->bytes;
        if (bytes.size() + chunk.data().size() > expected_bytes_) {
          return absl::InternalError(absl::StrCat(current_->name, ": more than ",
                                                  expected_bytes_, " bytes streamed"));
        }
        bytes.append(chunk.data());
        return absl::OkStatus();
      }
      case v1::QuantizeResponseChunk::kReport: {
        if (absl::Status s = CheckTensorComplete(); !s.ok()) return s;
        const v1::QuantizeReport& r = chunk.report();
        if (static_cast<size_t>(r.num_tensors()) != out_.output.tensors.size()) {
          return absl::InternalError(absl::StrCat("report names ", r.num_tensors(),
                                                  " tensors, stream had ",
                                                  out_.output.tensors.size()));
        }
        out_.output.block = r.block();
        for (const v1::LayerReport& l : r.layers()) out_.output.layers.push_back(FromProto(l));
        out_.tensors_per_layer.assign(r.tensors_per_layer().begin(), r.tensors_per_layer().end());
        have_report_ = true;
        return absl::OkStatus();
      }
      default:
        return absl::InternalError("empty Quantize chunk");
    }
  }

  absl::StatusOr<OwnedLayersOutput> Finish() && {
    if (!have_report_) return absl::InternalError("Quantize stream ended without a report");
    return std::move(out_);
  }

 private:
  absl::Status CheckTensorComplete() const {
    if (current_ == nullptr || current_->bytes.size() == expected_bytes_) {
      return absl::OkStatus();
    }
    return absl::InternalError(absl::StrCat(current_->name, ": got ", current_->bytes.size(),
                                            " of ", expected_bytes_, " bytes"));
  }

  // out_.output for Quantize; the weights and tensors_per_layer too for
  // QuantizeLayers.
  OwnedLayersOutput out_;
  TensorBytes* current_ = nullptr;  // The tensor whose data is streaming.
  uint64_t expected_bytes_ = 0;
  bool have_report_ = false;
};

}  // namespace

std::shared_ptr<grpc::Channel> MakeWorkerChannel(
    const std::string& address, std::shared_ptr<grpc::ChannelCredentials> credentials) {
  grpc::ChannelArguments args;
  args.SetServiceConfigJSON(kWorkerServiceConfig);
  // A restarted worker re-registers within seconds; its channel (cached per
  // address) must not sit in gRPC's default reconnect backoff of up to 120 s.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  return grpc::CreateCustomChannel(address, credentials, args);
}

RemoteBlockEngine::RemoteBlockEngine(std::shared_ptr<grpc::Channel> channel, std::string label,
                                     std::string job_id, int device_index,
                                     RemoteEngineOptions options,
                                     std::shared_ptr<CallCanceller> canceller,
                                     std::shared_ptr<LeaseFence> fence)
    : stub_(v1::WorkerService::NewStub(std::move(channel))),
      label_(std::move(label)),
      job_id_(std::move(job_id)),
      device_index_(device_index),
      options_(options),
      canceller_(std::move(canceller)),
      fence_(std::move(fence)) {}

void LeaseFence::Revoke(const std::string& reason) {
  {
    absl::MutexLock lock(&mu_);
    if (!reason_.empty()) return;
    reason_ = reason.empty() ? "revoked" : reason;
  }
  calls_.CancelAll();
}

bool LeaseFence::revoked() const {
  absl::MutexLock lock(&mu_);
  return !reason_.empty();
}

absl::Status LeaseFence::Check() const {
  absl::MutexLock lock(&mu_);
  if (reason_.empty()) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat("worker ", worker_id_, " epoch ", epoch_,
                                             " lost its lease (", reason_,
                                             "); its calls are fenced off"));
}

bool CallCanceller::Add(grpc::ClientContext* ctx) {
  absl::MutexLock lock(&mu_);
  if (cancelled_) return false;
  active_.insert(ctx);
  return true;
}

void CallCanceller::Remove(grpc::ClientContext* ctx) {
  absl::MutexLock lock(&mu_);
  active_.erase(ctx);
}

void CallCanceller::CancelAll() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  for (grpc::ClientContext* ctx : active_) ctx->TryCancel();
}

absl::Status RemoteBlockEngine::Wrap(const grpc::Status& status) const {
  // A response from a worker whose lease was lost meanwhile is dropped, even
  // a successful one: that incarnation's work is never merged.
  if (fence_ != nullptr && fence_->revoked()) {
    const absl::Status fenced = fence_->Check();
    return absl::Status(fenced.code(), absl::StrCat("worker ", label_, " device ", device_index_,
                                                    ": ", fenced.message()));
  }
  if (status.ok()) return absl::OkStatus();
  absl::Status s = FromGrpcStatus(status);
  return absl::Status(
      s.code(), absl::StrCat("worker ", label_, " device ", device_index_, ": ", s.message()));
}

absl::Status RemoteBlockEngine::Start(const JobConfig& config) {
  BAQ_TRACE_SCOPE("rpc_client", "StartJob", {{"worker", label_}});
  CallScope scope(options_.start_timeout, canceller_.get(), fence_.get());
  if (absl::Status s = scope.status(); !s.ok()) return s;
  v1::StartJobRequest req;
  req.set_job_id(job_id_);
  req.set_device_index(device_index_);
  ToProto(config, req.mutable_spec());
  v1::StartJobResponse resp;
  if (absl::Status s = Wrap(stub_->StartJob(scope.ctx(), req, &resp)); !s.ok()) return s;
  num_blocks_ = resp.num_blocks();
  return absl::OkStatus();
}

absl::StatusOr<BlockMeasurement> RemoteBlockEngine::Measure(int64_t block) {
  return MeasureSome(block, nullptr);
}

absl::StatusOr<BlockMeasurement> RemoteBlockEngine::MeasureSome(
    int64_t block, const std::vector<int32_t>* layers) {
  BAQ_TRACE_SCOPE("rpc_client", "Measure", {{"block", block}, {"worker", label_}});
  CallScope scope(options_.block_timeout, canceller_.get(), fence_.get());
  if (absl::Status s = scope.status(); !s.ok()) return s;
  v1::MeasureRequest req;
  req.set_job_id(job_id_);
  req.set_device_index(device_index_);
  req.set_block(block);
  req.set_target_bits(target_bits_);
  req.set_keep_measurement(keep_measurement_);
  if (layers != nullptr) {
    req.set_layer_subset(true);
    req.mutable_layers()->Add(layers->begin(), layers->end());
  }
  v1::BlockMeasurement resp;
  if (absl::Status s = Wrap(stub_->Measure(scope.ctx(), req, &resp)); !s.ok()) return s;
  return FromProto(resp);
}

absl::StatusOr<double> RemoteBlockEngine::Evaluate(const std::string& model_dir,
                                                   const std::string& text_file, int64_t seqlen) {
  BAQ_TRACE_SCOPE("rpc_client", "Evaluate", {{"worker", label_}});
  CallScope scope(options_.evaluate_timeout, canceller_.get(), fence_.get());
  if (absl::Status s = scope.status(); !s.ok()) return s;
  v1::EvaluateRequest req;
  req.set_job_id(job_id_);
  req.set_device_index(device_index_);
  req.set_model_dir(model_dir);
  req.set_text_file(text_file);
  req.set_seqlen(seqlen);
  v1::EvaluateResponse resp;
  if (absl::Status s = Wrap(stub_->Evaluate(scope.ctx(), req, &resp)); !s.ok()) return s;
  return resp.perplexity();
}

absl::StatusOr<BlockOutput> RemoteBlockEngine::Quantize(
    int64_t block, const std::vector<LayerAllocation>& allocation) {
  absl::StatusOr<OwnedLayersOutput> out = QuantizeSome(block, allocation, nullptr);
  if (!out.ok()) return out.status();
  return std::move(out->output);
}

absl::StatusOr<OwnedLayersOutput> RemoteBlockEngine::QuantizeSome(
    int64_t block, const std::vector<LayerAllocation>& allocation,
    const std::vector<int32_t>* layers) {
  BAQ_TRACE_SCOPE("rpc_client", "Quantize", {{"block", block}, {"worker", label_}});
  CallScope scope(options_.block_timeout, canceller_.get(), fence_.get());
  if (absl::Status s = scope.status(); !s.ok()) return s;
  v1::QuantizeRequest req;
  req.set_job_id(job_id_);
  req.set_device_index(device_index_);
  req.set_block(block);
  req.set_target_bits(target_bits_);
  req.set_keep_measurement(keep_measurement_);
  ToProto(allocation, req.mutable_allocation());
  if (layers != nullptr) {
    req.set_layer_subset(true);
    req.mutable_layers()->Add(layers->begin(), layers->end());
    req.set_return_weights(true);
  }
  std::unique_ptr<grpc::ClientReader<v1::QuantizeResponseChunk>> reader =
      stub_->Quantize(scope.ctx(), req);
  OutputAssembly assembly;
  absl::Status stream_status;
  v1::QuantizeResponseChunk chunk;
  while (reader->Read(&chunk)) {
    if (stream_status.ok()) stream_status = assembly.Add(chunk);
    if (!stream_status.ok()) scope.ctx()->TryCancel();  // Drain; Finish reports.
  }
  if (absl::Status s = Wrap(reader->Finish()); !s.ok() && stream_status.ok()) return s;
  if (!stream_status.ok()) {
    return absl::Status(
        stream_status.code(),
        absl::StrCat("worker ", label_, ": bad Quantize stream: ", stream_status.message()));
  }
  return std::move(assembly).Finish();
}

absl::StatusOr<std::string> RemoteBlockEngine::ExportInputs(int64_t block) {
  BAQ_TRACE_SCOPE("rpc_client", "ExportInputs", {{"block", block}, {"worker", label_}});
  CallScope scope(options_.transfer_timeout, canceller_.get(), fence_.get());
  if (absl::Status s = scope.status(); !s.ok()) return s;
  v1::ExportInputsRequest req;
  req.set_job_id(job_id_);
  req.set_device_index(device_index_);
  req.set_block(block);
  std::unique_ptr<grpc::ClientReader<v1::Chunk>> reader = stub_->ExportInputs(scope.ctx(), req);
  std::string bytes = ReadChunks(*reader);
  if (absl::Status s = Wrap(reader->Finish()); !s.ok()) return s;
  return bytes;
}

absl::Status RemoteBlockEngine::ImportInputs(int64_t block, std::string bytes) {
  BAQ_TRACE_SCOPE("rpc_client", "ImportInputs",
                  {{"block", block}, {"bytes", bytes.size()}, {"worker", label_}});
  CallScope scope(options_.transfer_timeout, canceller_.get(), fence_.get());
  if (absl::Status s = scope.status(); !s.ok()) return s;
  v1::ImportInputsResponse resp;
  std::unique_ptr<grpc::ClientWriter<v1::ImportInputsChunk>> writer =
      stub_->ImportInputs(scope.ctx(), &resp);
  v1::ImportInputsChunk target;
  target.set_job_id(job_id_);
  target.set_device_index(device_index_);
  target.set_block(block);
  WriteChunks(*writer, target, bytes);
  if (absl::Status s = Wrap(writer->Finish()); !s.ok()) return s;
  if (resp.bytes_received() != bytes.size()) {
    return absl::InternalError(absl::StrCat("worker ", label_, " received ", resp.bytes_received(),
                                            " of ", bytes.size(), " input bytes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<HessianPartial>> RemoteBlockEngine::AccumulateHessians(
    int64_t block, const std::vector<int32_t>& shards) {
  BAQ_TRACE_SCOPE("rpc_client", "AccumulateHessians",
                  {{"block", block}, {"shards", shards.size()}, {"worker", label_}});
  CallScope scope(options_.block_timeout, canceller_.get(), fence_.get());
  if (absl::Status s = scope.status(); !s.ok()) return s;
  v1::AccumulateHessiansRequest req;
  req.set_job_id(job_id_);
  req.set_device_index(device_index_);
  req.set_block(block);
  for (int32_t shard : shards) req.add_shards(shard);
  std::unique_ptr<grpc::ClientReader<v1::HessianPartialChunk>> reader =
      stub_->AccumulateHessians(scope.ctx(), req);
  HessianPartialAssembler assembly;
  absl::Status stream_status;
  v1::HessianPartialChunk chunk;
  while (reader->Read(&chunk)) {
    if (stream_status.ok()) stream_status = assembly.Add(chunk);
    if (!stream_status.ok()) scope.ctx()->TryCancel();  // Drain; Finish reports.
  }
  if (absl::Status s = Wrap(reader->Finish()); !s.ok() && stream_status.ok()) return s;
  if (!stream_status.ok()) {
    return absl::Status(stream_status.code(),
                        absl::StrCat("worker ", label_, " device ", device_index_,
                                     ": bad AccumulateHessians stream: ", stream_status.message()));
  }
  return std::move(assembly).Finish();
}

absl::Status RemoteBlockEngine::ImportHessians(int64_t block, std::vector<HessianPartial> merged) {
  BAQ_TRACE_SCOPE("rpc_client", "ImportHessians", {{"block", block}, {"worker", label_}});
  CallScope scope(options_.transfer_timeout, canceller_.get(), fence_.get());
  if (absl::Status s = scope.status(); !s.ok()) return s;
  v1::ImportHessiansResponse resp;
  std::unique_ptr<grpc::ClientWriter<v1::ImportHessiansChunk>> writer =
      stub_->ImportHessians(scope.ctx(), &resp);
  const int n = static_cast<int>(merged.size());
  HessianPartialWriter parts(std::move(merged));
  // The first message names the target (and carries no part for no partials).
  v1::ImportHessiansChunk chunk;
  chunk.set_job_id(job_id_);
  chunk.set_device_index(device_index_);
  chunk.set_block(block);
  if (!parts.Next(chunk.mutable_part())) chunk.clear_part();
  while (writer->Write(chunk)) {  // Stream broken: Finish says why.
    chunk.Clear();
    if (!parts.Next(chunk.mutable_part())) break;
  }
  writer->WritesDone();
  if (absl::Status s = Wrap(writer->Finish()); !s.ok()) return s;
  if (resp.partials() != n) {
    return absl::InternalError(absl::StrCat("worker ", label_, " device ", device_index_,
                                            " took ", resp.partials(), " of ", n,
                                            " merged Hessians"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RemoteBlockEngine::ExportShardInputs(int64_t block, int32_t shard) {
  BAQ_TRACE_SCOPE("rpc_client", "ExportShardInputs",
                  {{"block", block}, {"shard", shard}, {"worker", label_}});
  CallScope scope(options_.transfer_timeout, canceller_.get(), fence_.get());
  if (absl::Status s = scope.status(); !s.ok()) return s;
  v1::ExportShardInputsRequest req;
  req.set_job_id(job_id_);
  req.set_device_index(device_index_);
  req.set_block(block);
  req.set_shard(shard);
  std::unique_ptr<grpc::ClientReader<v1::Chunk>> reader =
      stub_->ExportShardInputs(scope.ctx(), req);
  std::string bytes = ReadChunks(*reader);
  if (absl::Status s = Wrap(reader->Finish()); !s.ok()) return s;
  return bytes;
}

absl::Status RemoteBlockEngine::ImportShardInputs(int64_t block, int32_t shard,
                                                  std::string bytes) {
  BAQ_TRACE_SCOPE(
      "rpc_client", "ImportShardInputs",
      {{"block", block}, {"shard", shard}, {"bytes", bytes.size()}, {"worker", label_}});
  CallScope scope(options_.transfer_timeout, canceller_.get(), fence_.get());
  if (absl::Status s = scope.status(); !s.ok()) return s;
  v1::ImportInputsResponse resp;
  std::unique_ptr<grpc::ClientWriter<v1::ImportShardInputsChunk>> writer =
      stub_->ImportShardInputs(scope.ctx(), &resp);
  v1::ImportShardInputsChunk target;
  target.set_job_id(job_id_);
  target.set_device_index(device_index_);
  target.set_block(block);
  target.set_shard(shard);
  WriteChunks(*writer, target, bytes);
  if (absl::Status s = Wrap(writer->Finish()); !s.ok()) return s;
  if (resp.bytes_received() != bytes.size()) {
    return absl::InternalError(absl::StrCat("worker ", label_, " received ", resp.bytes_received(),
                                            " of ", bytes.size(), " bytes of shard ", shard));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<LayerShape>> RemoteBlockEngine::BlockLayers(int64_t block) {
  CallScope scope(options_.block_timeout, canceller_.get(), fence_.get());
  if (absl::Status s = scope.status(); !s.ok()) return s;
  v1::BlockLayersRequest req;
  req.set_job_id(job_id_);
  req.set_device_index(device_index_);
  req.set_block(block);
  v1::BlockLayersResponse resp;
  if (absl::Status s = Wrap(stub_->BlockLayers(scope.ctx(), req, &resp)); !s.ok()) return s;
  return FromProto(resp.layers());
}

absl::StatusOr<BlockMeasurement> RemoteBlockEngine::MeasureLayers(
    int64_t block, const std::vector<int32_t>& layers) {
  return MeasureSome(block, &layers);
}

absl::StatusOr<OwnedLayersOutput> RemoteBlockEngine::QuantizeLayers(
    int64_t block, const std::vector<int32_t>& layers,
    const std::vector<LayerAllocation>& allocation) {
  absl::StatusOr<OwnedLayersOutput> out = QuantizeSome(block, allocation, &layers);
  if (!out.ok()) return out.status();
  if (out->weights.size() != layers.size() || out->tensors_per_layer.size() != layers.size()) {
    return absl::InternalError(absl::StrCat(
        "worker ", label_, " device ", device_index_, ": QuantizeLayers of ", layers.size(),
        " layers returned ", out->weights.size(), " weights and ",
        out->tensors_per_layer.size(), " tensor counts"));
  }
  return out;
}

absl::Status RemoteBlockEngine::AdvanceShards(int64_t block, std::vector<TensorBytes> weights) {
  CallScope scope(options_.block_timeout, canceller_.get(), fence_.get());
  if (absl::Status s = scope.status(); !s.ok()) return s;
  v1::AdvanceShardsResponse resp;
  std::unique_ptr<grpc::ClientWriter<v1::AdvanceShardsChunk>> writer =
      stub_->AdvanceShards(scope.ctx(), &resp);
  // The first message names the target (and carries nothing else); then per
  // weight a header and its data in chunks of at most kMaxChunkBytes.
  v1::AdvanceShardsChunk chunk;
  chunk.set_job_id(job_id_);
  chunk.set_device_index(device_index_);
  chunk.set_block(block);
  bool ok = writer->Write(chunk);
  uint64_t sent = 0;
  for (size_t i = 0; ok && i < weights.size(); ++i) {
    TensorBytes& w = weights[i];
    chunk.Clear();
    ToProtoHeader(w, -1, chunk.mutable_tensor());
    ok = writer->Write(chunk);
    for (size_t offset = 0; ok && offset < w.bytes.size();) {
      const size_t n = std::min(kMaxChunkBytes, w.bytes.size() - offset);
      chunk.Clear();
      chunk.set_data(w.bytes.data() + offset, n);
      offset += n;
      sent += n;
      ok = writer->Write(chunk);  // Stream broken: Finish says why.
    }
    std::string().swap(w.bytes);
  }
  writer->WritesDone();
  if (absl::Status s = Wrap(writer->Finish()); !s.ok()) return s;
  if (resp.bytes_received() != sent || resp.weights() != static_cast<int>(weights.size())) {
    return absl::InternalError(absl::StrCat("worker ", label_, " device ", device_index_,
                                            " took ", resp.weights(), " of ", weights.size(),
                                            " weights (", resp.bytes_received(), " of ", sent,
                                            " bytes)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> RemoteBlockEngine::CheckpointShards(int64_t block,
                                                                         const std::string& dir) {
  CallScope scope(options_.transfer_timeout, canceller_.get(), fence_.get());
  if (absl::Status s = scope.status(); !s.ok()) return s;
  v1::CheckpointShardsRequest req;
  req.set_job_id(job_id_);
  req.set_device_index(device_index_);
  req.set_block(block);
  req.set_dir(dir);
  v1::CheckpointShardsResponse resp;
  if (absl::Status s = Wrap(stub_->CheckpointShards(scope.ctx(), req, &resp)); !s.ok()) return s;
  return std::vector<int32_t>(resp.shards().begin(), resp.shards().end());
}

absl::Status RemoteBlockEngine::RestoreShard(int64_t block, int32_t shard,
                                             const std::string& dir) {
  CallScope scope(options_.transfer_timeout, canceller_.get(), fence_.get());
  if (absl::Status s = scope.status(); !s.ok()) return s;
  v1::RestoreShardRequest req;
  req.set_job_id(job_id_);
  req.set_device_index(device_index_);
  req.set_block(block);
  req.set_shard(shard);
  req.set_dir(dir);
  v1::RestoreShardResponse resp;
  return Wrap(stub_->RestoreShard(scope.ctx(), req, &resp));
}

void RemoteBlockEngine::Reset() {
  // A fenced worker is hung, partitioned or restarted: waiting for it would
  // hold up the job; a restarted one holds nothing of this job.
  if (fence_ != nullptr && fence_->revoked()) return;
  grpc::ClientContext ctx;
  // Not registered with the canceller: freeing the worker's memory is worth
  // one short call even while shutting down.
  SetDeadline(ctx, options_.control_timeout);
  v1::ResetJobRequest req;
  req.set_job_id(job_id_);
  req.set_device_index(device_index_);
  v1::ResetJobResponse resp;
  // Ignored: Reset() has no error channel, and a worker that is unreachable
  // or restarted holds no state of this job to free.
  (void)stub_->ResetJob(&ctx, req, &resp);
}

}  // namespace baq::coordinator

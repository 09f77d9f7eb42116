#include "tests/fakes/fake_worker_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "proto/convert.h"

namespace baq::testing {
namespace {

grpc::Status NotFound(const std::string& job) {
  return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("no job ", job));
}

// A stuck device: the call ends only when the client gives up (its deadline
// passes or it cancels) or the server shuts down; gRPC then calls OnCancel.
class HungCall final : public grpc::ServerUnaryReactor {
 public:
  void OnCancel() override { Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client gave up")); }
  void OnDone() override { delete this; }
};

}  // namespace

void FakeWorkerService::set_faults(FakeWorkerFaults faults) {
  absl::MutexLock lock(&mu_);
  faults_ = faults;
}

bool FakeWorkerService::AwaitHanging(int n, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return hanging_ >= n; };
  return mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
}

FakeBlockEngine* FakeWorkerService::Find(const std::string& job, int device) {
  auto it = engines_.find({job, device});
  return it == engines_.end() ? nullptr : it->second.get();
}

grpc::Status FakeWorkerService::StartJob(grpc::ServerContext* ctx, const v1::StartJobRequest* req,
                                         v1::StartJobResponse* resp) {
  absl::StatusOr<JobConfig> config = FromProto(req->spec());
  if (!config.ok()) return ToGrpcStatus(config.status());
  // Like the real worker: the old engine goes first, a failed start leaves none.
  absl::MutexLock lock(&mu_);
  engines_.erase({req->job_id(), req->device_index()});
  auto engine = std::make_unique<FakeBlockEngine>(options_, log_);
  if (absl::Status s = engine->Start(*config); !s.ok()) return ToGrpcStatus(s);
  resp->set_num_blocks(engine->num_blocks());
  engines_[{req->job_id(), req->device_index()}] = std::move(engine);
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* FakeWorkerService::Measure(grpc::CallbackServerContext* ctx,
                                                     const v1::MeasureRequest* req,
                                                     v1::BlockMeasurement* resp) {
  absl::MutexLock lock(&mu_);
  if (faults_.hang_measure) {
    ++hanging_;
    return new HungCall();
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  FakeBlockEngine* engine = Find(req->job_id(), req->device_index());
  if (engine == nullptr) {
    reactor->Finish(NotFound(req->job_id()));
    return reactor;
  }
  absl::StatusOr<BlockMeasurement> m = engine->Measure(req->block());
  if (m.ok()) ToProto(*m, resp);
  reactor->Finish(m.ok() ? grpc::Status::OK : ToGrpcStatus(m.status()));
  return reactor;
}

grpc::Status FakeWorkerService::Quantize(grpc::ServerContext* ctx, const v1::QuantizeRequest* req,
                                         grpc::ServerWriter<v1::QuantizeResponseChunk>* writer) {
  absl::StatusOr<BlockOutput> out;
  bool truncate;
  {
    absl::MutexLock lock(&mu_);
    truncate = faults_.truncate_quantize;
    FakeBlockEngine* engine = Find(req->job_id(), req->device_index());
    if (engine == nullptr) return NotFound(req->job_id());
    out = engine->Quantize(req->block(), FromProto(req->allocation()));
  }
  if (!out.ok()) return ToGrpcStatus(out.status());
  v1::QuantizeResponseChunk chunk;
  for (size_t i = 0; i < out->tensors.size(); ++i) {
    const TensorBytes& t = out->tensors[i];
    chunk.Clear();
    ToProtoHeader(t, out->tensor_format[i], chunk.mutable_tensor());
    writer->Write(chunk);
    const size_t size = truncate ? t.bytes.size() / 2 : t.bytes.size();
    for (size_t offset = 0; offset < size; offset += kMaxChunkBytes) {
      chunk.Clear();
      chunk.set_data(t.bytes.substr(offset, std::min(kMaxChunkBytes, size - offset)));
      writer->Write(chunk);
    }
    if (truncate) break;
  }
  chunk.Clear();
  v1::QuantizeReport* report = chunk.mutable_report();
  report->set_block(out->block);
  report->set_num_tensors(static_cast<int32_t>(out->tensors.size()));
  for (const LayerReport& r : out->layers) ToProto(r, report->add_layers());
  writer->Write(chunk);
  return grpc::Status::OK;
}

grpc::Status FakeWorkerService::ExportInputs(grpc::ServerContext* ctx,
                                             const v1::ExportInputsRequest* req,
                                             grpc::ServerWriter<v1::Chunk>* writer) {
  absl::StatusOr<std::string> bytes;
  {
    absl::MutexLock lock(&mu_);
    FakeBlockEngine* engine = Find(req->job_id(), req->device_index());
    if (engine == nullptr) return NotFound(req->job_id());
    bytes = engine->ExportInputs(req->block());
  }
  if (!bytes.ok()) return ToGrpcStatus(bytes.status());
  for (size_t offset = 0; offset < bytes->size(); offset += kMaxChunkBytes) {
    v1::Chunk chunk;
    chunk.set_data(bytes->substr(offset, kMaxChunkBytes));
    writer->Write(chunk);
  }
  return grpc::Status::OK;
}

grpc::Status FakeWorkerService::ImportInputs(grpc::ServerContext* ctx,
                                             grpc::ServerReader<v1::ImportInputsChunk>* reader,
                                             v1::ImportInputsResponse* resp) {
  v1::ImportInputsChunk chunk;
  v1::ImportInputsChunk first;
  std::string data;
  bool have_first = false;
  while (reader->Read(&chunk)) {
    if (!have_first) first = chunk;
    have_first = true;
    data += chunk.data();
  }
  if (!have_first) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "empty stream");
  absl::MutexLock lock(&mu_);
  FakeBlockEngine* engine = Find(first.job_id(), first.device_index());
  if (engine == nullptr) return NotFound(first.job_id());
  const size_t n = data.size();
  if (absl::Status s = engine->ImportInputs(first.block(), std::move(data)); !s.ok()) {
    return ToGrpcStatus(s);
  }
  resp->set_bytes_received(n);
  return grpc::Status::OK;
}

grpc::Status FakeWorkerService::Evaluate(grpc::ServerContext* ctx, const v1::EvaluateRequest* req,
                                         v1::EvaluateResponse* resp) {
  absl::MutexLock lock(&mu_);
  FakeBlockEngine* engine = Find(req->job_id(), req->device_index());
  if (engine == nullptr) return NotFound(req->job_id());
  absl::StatusOr<double> ppl = engine->Evaluate(req->model_dir(), req->text_file(), req->seqlen());
  if (!ppl.ok()) return ToGrpcStatus(ppl.status());
  resp->set_perplexity(*ppl);
  return grpc::Status::OK;
}

grpc::Status FakeWorkerService::ResetJob(grpc::ServerContext* ctx, const v1::ResetJobRequest* req,
                                         v1::ResetJobResponse* resp) {
  absl::MutexLock lock(&mu_);
  auto it = engines_.find({req->job_id(), req->device_index()});
  if (it != engines_.end()) {
    it->second->Reset();
    engines_.erase(it);
  }
  return grpc::Status::OK;
}

}  // namespace baq::testing

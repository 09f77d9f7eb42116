#include "coordinator/registry_service.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/version.h"
#include "proto/convert.h"

namespace baq::coordinator {

absl::Status CheckWorkerVersion(const v1::RegisterWorkerRequest& request) {
  if (request.protocol_version() == kWorkerProtocolVersion) return absl::OkStatus();
  const std::string worker =
      request.protocol_version() == 0
          ? "no protocol version (a baq-worker older than the version handshake)"
          : absl::StrCat("protocol ", request.protocol_version(), " (baq ",
                         request.version().empty() ? "?" : request.version(), ")");
  return absl::FailedPreconditionError(absl::StrCat(
      "incompatible worker at ", request.address(), ": it speaks ", worker,
      ", this coordinator speaks protocol ", kWorkerProtocolVersion, " (baq ", BaqVersion(),
      "); run the same baq release on the coordinator and its workers"));
}

grpc::ServerUnaryReactor* RegistryService::RegisterWorker(grpc::CallbackServerContext* ctx,
                                                          const v1::RegisterWorkerRequest* request,
                                                          v1::RegisterWorkerResponse* response) {
  if (absl::Status s = CheckWorkerVersion(*request); !s.ok()) {
    if (metrics_ != nullptr) metrics_->RecordRpc("RegisterWorker", s);
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  absl::StatusOr<WorkerLease> lease = registry_->Register(
      request->address(), {request->devices().begin(), request->devices().end()},
      request->memory_bytes());
  if (lease.ok()) {
    v1::Lease* l = response->mutable_lease();
    l->set_worker_id(lease->worker_id);
    l->set_epoch(lease->epoch);
    l->set_ttl_seconds(absl::ToDoubleSeconds(lease->ttl));
  }
  if (metrics_ != nullptr) metrics_->RecordRpc("RegisterWorker", lease.status());
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(lease.status()));
  return reactor;
}

grpc::ServerUnaryReactor* RegistryService::Heartbeat(grpc::CallbackServerContext* ctx,
                                                     const v1::HeartbeatRequest* request,
                                                     v1::HeartbeatResponse* response) {
  const absl::Status s = registry_->Heartbeat(request->worker_id(), request->epoch());
  response->set_ok(s.ok());
  response->set_reregister(!s.ok());
  if (metrics_ != nullptr) metrics_->RecordRpc("Heartbeat", s);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace baq::coordinator

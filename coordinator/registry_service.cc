#include "coordinator/registry_service.h"

#include <string>
#include <vector>

#include "proto/convert.h"

namespace baq::coordinator {

grpc::ServerUnaryReactor* RegistryService::RegisterWorker(grpc::CallbackServerContext* ctx,
                                                          const v1::RegisterWorkerRequest* request,
                                                          v1::RegisterWorkerResponse* response) {
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

// coordinator/registry_service.h
//
// RegistryService: the gRPC face of the WorkerRegistry
// (baq.v1.CoordinatorService), which worker daemons call to register and
// heartbeat. A thin callback-API adapter: the registry only takes its lock,
// so methods finish inline. A heartbeat the registry rejects (unknown,
// expired or stale epoch) is an OK response with reregister = true: the
// worker's next step is a normal one, not an error. A worker whose wire
// protocol version (common/version.h) differs from the coordinator's is
// refused FAILED_PRECONDITION, the message naming both versions.
//
// Thread-safe. The registry and metrics are not owned.
#ifndef BAQ_COORDINATOR_REGISTRY_SERVICE_H_
#define BAQ_COORDINATOR_REGISTRY_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "baq/v1/worker.grpc.pb.h"
#include "coordinator/coordinator_metrics.h"
#include "coordinator/worker_registry.h"

namespace baq::coordinator {

// OK when the registering worker speaks this coordinator's protocol;
// FailedPrecondition naming the worker's and the coordinator's versions.
absl::Status CheckWorkerVersion(const v1::RegisterWorkerRequest& request);

class RegistryService final : public v1::CoordinatorService::CallbackService {
 public:
  // `metrics` may be null.
  RegistryService(WorkerRegistry* registry, CoordinatorMetrics* metrics)
      : registry_(registry), metrics_(metrics) {}

  grpc::ServerUnaryReactor* RegisterWorker(grpc::CallbackServerContext* ctx,
                                           const v1::RegisterWorkerRequest* request,
                                           v1::RegisterWorkerResponse* response) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx,
                                      const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* response) override;

 private:
  WorkerRegistry* const registry_;     // Not owned.
  CoordinatorMetrics* const metrics_;  // Nullable; not owned.
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_REGISTRY_SERVICE_H_

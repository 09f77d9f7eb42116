// coordinator/coordinator_server.h
//
// CoordinatorServer: the coordinator daemon's gRPC server — JobService (for
// clients), CoordinatorService (the worker registry) and the standard
// grpc.health.v1 service — over a JobManager and a WorkerRegistry it does
// not own. Started through a factory that binds the listen address (port 0
// picks a free port, see port()).
//
// Shutdown: health goes NOT_SERVING, then the server drains in-flight RPCs
// for up to `shutdown_grace` and cancels the rest (open Watch streams).
// Stop the server before the JobManager it serves.
//
// Security: `tls` secures the port (TLS, or mutual TLS with a client CA;
// plaintext when no file is named), `deps.security` authenticates, audits
// and confines the JobService (coordinator/job_service.h). The worker plane
// (CoordinatorService) is authenticated by mutual TLS only.
//
// Thread-safe.
//
// Example:
//   CoordinatorServerOptions options;
//   options.listen_address = "0.0.0.0:7000";
//   BAQ_ASSIGN_OR_RETURN(auto server, CoordinatorServer::Start(
//       options, CoordinatorDeps{jobs.get(), &registry, &metrics}));
#ifndef BAQ_COORDINATOR_COORDINATOR_SERVER_H_
#define BAQ_COORDINATOR_COORDINATOR_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/coordinator_metrics.h"
#include "coordinator/job_manager.h"
#include "coordinator/job_service.h"
#include "coordinator/registry_service.h"
#include "coordinator/worker_registry.h"
#include "net/tls_credentials.h"

namespace baq::coordinator {

struct CoordinatorServerOptions {
  // host:port to bind; port 0 picks a free port.
  std::string listen_address = "0.0.0.0:0";
  // How long Shutdown() lets in-flight RPCs run before cancelling them.
  absl::Duration shutdown_grace = absl::Seconds(5);
  // Server certificate, key and (for mutual TLS) client CA; none: plaintext.
  net::TlsOptions tls;
  // Largest request message the server accepts (RESOURCE_EXHAUSTED beyond).
  // Job API messages are small; bulk data streams in 1 MiB chunks.
  int max_receive_message_bytes = 4 << 20;
  // Server-initiated HTTP/2 keepalive pings on idle connections, so a dead
  // client (or a NAT that dropped the flow) under a long Watch is noticed;
  // a ping unanswered for keepalive_timeout closes the connection. Clients
  // may ping at most every keepalive_min_client_interval (faster: GOAWAY).
  absl::Duration keepalive_time = absl::Minutes(2);
  absl::Duration keepalive_timeout = absl::Seconds(20);
  absl::Duration keepalive_min_client_interval = absl::Seconds(10);
};

struct CoordinatorDeps {
  JobManager* jobs = nullptr;             // Required; not owned.
  WorkerRegistry* registry = nullptr;     // Required; not owned.
  CoordinatorMetrics* metrics = nullptr;  // Nullable; not owned.
  JobServiceSecurity security{};          // Each part nullable; not owned.
};

class CoordinatorServer {
 public:
  // InvalidArgument for missing deps; Unavailable if the address cannot be
  // bound; the TLS files' errors (net/tls_credentials.h).
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(
      const CoordinatorServerOptions& options, CoordinatorDeps deps);
  ~CoordinatorServer();  // Shutdown().

  CoordinatorServer(const CoordinatorServer&) = delete;
  CoordinatorServer& operator=(const CoordinatorServer&) = delete;

  int port() const { return port_; }
  // Idempotent, thread-safe.
  void Shutdown();

 private:
  CoordinatorServer(const CoordinatorServerOptions& options, CoordinatorDeps deps);

  const CoordinatorServerOptions options_;
  // Dependency order: the server uses both services.
  JobService job_service_;
  RegistryService registry_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;

  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_COORDINATOR_SERVER_H_

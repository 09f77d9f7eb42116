// worker/service/worker_server.h
//
// WorkerServer: the worker daemon's gRPC server — WorkerService plus the
// standard grpc.health.v1 service — over an EngineHost (one executor thread
// per device). Started through a factory that binds the listen address (port
// 0 picks a free port, see port()).
//
// Shutdown order (STYLE R18): health goes NOT_SERVING, the server stops
// accepting and lets in-flight RPCs finish (up to `shutdown_grace`, then
// cancels them; an RPC whose block is already running on a device finishes
// with that block), then the executors stop and the engines are freed on
// their own threads. Members are declared in that dependency order. It logs
// (stderr) whether the calls in flight finished or the grace ran out.
//
// Thread-safe.
//
// Example:
//   WorkerServerOptions options;
//   options.listen_address = "0.0.0.0:7001";
//   options.devices = {"cuda:0", "cuda:1"};
//   WorkerDeps deps{MakeEngineFactory(...), &metrics};
//   BAQ_ASSIGN_OR_RETURN(auto server, WorkerServer::Start(options, deps));
//   ... server->Shutdown();
#ifndef BAQ_WORKER_SERVICE_WORKER_SERVER_H_
#define BAQ_WORKER_SERVICE_WORKER_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "net/tls_credentials.h"
#include "worker/service/engine_host.h"
#include "worker/service/worker_metrics.h"
#include "worker/service/worker_service.h"

namespace baq::worker {

struct WorkerServerOptions {
  // host:port to bind; port 0 picks a free port.
  std::string listen_address = "0.0.0.0:0";
  // Devices this worker serves, one executor thread each: "cpu", "cuda:N".
  std::vector<std::string> devices = {"cpu"};
  // How long Shutdown() lets in-flight RPCs run before cancelling them.
  absl::Duration shutdown_grace = absl::Seconds(30);
  // Server certificate, key and (for mutual TLS: only the coordinator, with
  // a certificate from this CA, may call) client CA; none: plaintext.
  net::TlsOptions tls;
};

struct WorkerDeps {
  // Makes one job's engine on a device. Required.
  EngineFactory engine_factory;
  // Nullable; not owned; must outlive the server.
  WorkerMetrics* metrics = nullptr;
};

class WorkerServer {
 public:
  // InvalidArgument for empty devices or a missing factory; Unavailable if
  // the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<WorkerServer>> Start(const WorkerServerOptions& options,
                                                             WorkerDeps deps);
  ~WorkerServer();  // Shutdown().

  WorkerServer(const WorkerServer&) = delete;
  WorkerServer& operator=(const WorkerServer&) = delete;

  // The bound port.
  int port() const { return port_; }
  const std::vector<std::string>& devices() const { return host_->devices(); }

  // Drains and stops; see the file comment. Idempotent, thread-safe.
  void Shutdown();

 private:
  WorkerServer(const WorkerServerOptions& options, WorkerDeps deps);

  const WorkerServerOptions options_;
  // Dependency order: the service uses the host; the server uses both.
  std::unique_ptr<EngineHost> host_;
  std::unique_ptr<WorkerService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;

  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

}  // namespace baq::worker

#endif  // BAQ_WORKER_SERVICE_WORKER_SERVER_H_

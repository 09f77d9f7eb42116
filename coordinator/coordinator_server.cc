#include "coordinator/coordinator_server.h"

#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace baq::coordinator {

CoordinatorServer::CoordinatorServer(const CoordinatorServerOptions& options, CoordinatorDeps deps)
    : options_(options),
      job_service_(deps.jobs, deps.metrics, deps.security),
      registry_service_(deps.registry, deps.metrics) {}

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    const CoordinatorServerOptions& options, CoordinatorDeps deps) {
  if (deps.jobs == nullptr || deps.registry == nullptr) {
    return absl::InvalidArgumentError("coordinator server needs a job manager and a registry");
  }
  if (deps.metrics != nullptr) {
    CoordinatorMetrics* metrics = deps.metrics;
    deps.registry->SetOnChange([metrics](size_t live) { metrics->workers().Set(live); });
  }
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      net::MakeServerCredentials(options.tls);
  if (!credentials.ok()) return credentials.status();
  std::unique_ptr<CoordinatorServer> server(new CoordinatorServer(options, deps));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address, *credentials, &server->port_);
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_time)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_timeout)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_min_client_interval)));
  builder.RegisterService(&server->job_service_);
  builder.RegisterService(&server->registry_service_);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("coordinator: cannot listen on ", options.listen_address));
  }
  server->server_->GetHealthCheckService()->SetServingStatus(true);
  return server;
}

CoordinatorServer::~CoordinatorServer() { Shutdown(); }

void CoordinatorServer::Shutdown() {
  absl::MutexLock lock(&shutdown_mu_);
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  server_->GetHealthCheckService()->SetServingStatus(false);
  server_->Shutdown(absl::ToChronoTime(absl::Now() + options_.shutdown_grace));
}

}  // namespace baq::coordinator

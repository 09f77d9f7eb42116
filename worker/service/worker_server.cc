#include "worker/service/worker_server.h"

#include <grpcpp/health_check_service_interface.h>

#include <chrono>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace baq::worker {

WorkerServer::WorkerServer(const WorkerServerOptions& options, WorkerDeps deps)
    : options_(options),
      host_(std::make_unique<EngineHost>(options.devices, std::move(deps.engine_factory),
                                         deps.metrics)),
      service_(std::make_unique<WorkerService>(host_.get(), deps.metrics)) {}

absl::StatusOr<std::unique_ptr<WorkerServer>> WorkerServer::Start(
    const WorkerServerOptions& options, WorkerDeps deps) {
  if (options.devices.empty()) return absl::InvalidArgumentError("worker has no devices");
  if (!deps.engine_factory) return absl::InvalidArgumentError("worker has no engine factory");
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      net::MakeServerCredentials(options.tls);
  if (!credentials.ok()) return credentials.status();
  std::unique_ptr<WorkerServer> server(new WorkerServer(options, std::move(deps)));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address, *credentials, &server->port_);
  builder.RegisterService(server->service_.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    server->host_->Stop();
    return absl::UnavailableError(
        absl::StrCat("worker: cannot listen on ", options.listen_address));
  }
  server->server_->GetHealthCheckService()->SetServingStatus(true);
  return server;
}

WorkerServer::~WorkerServer() { Shutdown(); }

void WorkerServer::Shutdown() {
  absl::MutexLock lock(&shutdown_mu_);
  if (shut_down_) return;
  shut_down_ = true;
  if (server_ != nullptr) {
    server_->GetHealthCheckService()->SetServingStatus(false);
    const absl::Time start = absl::Now();
    server_->Shutdown(absl::ToChronoTime(start + options_.shutdown_grace));
    // The operator's record of what became of the calls in flight: finished,
    // or cut off (the coordinator counts a worker loss and redoes the block).
    const absl::Duration took = absl::Now() - start;
    if (took < options_.shutdown_grace) {
      std::cerr << "baq-worker: calls in flight finished in " << absl::FormatDuration(took)
                << " (grace " << absl::FormatDuration(options_.shutdown_grace) << ")\n";
    } else {
      std::cerr << "baq-worker: shutdown grace of " << absl::FormatDuration(options_.shutdown_grace)
                << " ran out: calls in flight cancelled after " << absl::FormatDuration(took)
                << "; the coordinator redoes their blocks elsewhere\n";
    }
  }
  host_->Stop();
}

}  // namespace baq::worker

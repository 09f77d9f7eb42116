#include "worker/service/coordinator_link.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <iostream>
#include <utility>

#include "absl/time/clock.h"
#include "common/version.h"

namespace baq::worker {
namespace {

constexpr char kServiceConfig[] = R"json({
  "methodConfig": [{
    "name": [{"service": "baq.v1.CoordinatorService", "method": "Heartbeat"}],
    "retryPolicy": {
      "maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s",
      "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
})json";

constexpr int kMaxReconnectBackoffMs = 2000;

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address,
                                          std::shared_ptr<grpc::ChannelCredentials> credentials) {
  grpc::ChannelArguments args;
  args.SetServiceConfigJSON(kServiceConfig);
  // gRPC's reconnect backoff grows to 120 s; a worker that saw its
  // coordinator restart must be back well within one lease ttl.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kMaxReconnectBackoffMs);
  if (credentials == nullptr) credentials = grpc::InsecureChannelCredentials();
  return grpc::CreateCustomChannel(address, credentials, args);
}

}  // namespace

CoordinatorLink::CoordinatorLink(CoordinatorLinkOptions options)
    : options_(std::move(options)),
      stub_(v1::CoordinatorService::NewStub(
          MakeChannel(options_.coordinator_address, options_.channel_credentials))) {}

std::unique_ptr<CoordinatorLink> CoordinatorLink::Start(CoordinatorLinkOptions options) {
  std::unique_ptr<CoordinatorLink> link(new CoordinatorLink(std::move(options)));
  link->thread_ = std::thread([l = link.get()] { l->Loop(); });
  return link;
}

CoordinatorLink::~CoordinatorLink() { Stop(); }

void CoordinatorLink::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

std::optional<WorkerLeaseInfo> CoordinatorLink::lease() const {
  absl::MutexLock lock(&mu_);
  return lease_;
}

bool CoordinatorLink::AwaitRegistered(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto registered = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return lease_.has_value(); };
  return mu_.AwaitWithTimeout(absl::Condition(&registered), timeout);
}

int64_t CoordinatorLink::registrations() const {
  absl::MutexLock lock(&mu_);
  return registrations_;
}

bool CoordinatorLink::Sleep(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  auto stopping = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
  return !mu_.AwaitWithTimeout(absl::Condition(&stopping), d);
}

bool CoordinatorLink::Register() {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_timeout));
  v1::RegisterWorkerRequest req;
  req.set_address(options_.advertise_address);
  for (const std::string& d : options_.devices) req.add_devices(d);
  req.set_memory_bytes(options_.memory_bytes);
  req.set_version(std::string(BaqVersion()));
  req.set_protocol_version(kWorkerProtocolVersion);
  v1::RegisterWorkerResponse resp;
  const grpc::Status s = stub_->RegisterWorker(&ctx, req, &resp);
  absl::MutexLock lock(&mu_);
  if (!s.ok()) {
    if (s.error_message() != last_error_) {
      std::cerr << "baq-worker: cannot register with " << options_.coordinator_address << ": "
                << s.error_message() << " (retrying every "
                << absl::FormatDuration(options_.retry_interval) << ")\n";
      last_error_ = s.error_message();
    }
    return false;
  }
  last_error_.clear();
  lease_ = WorkerLeaseInfo{resp.lease().worker_id(), resp.lease().epoch(),
                           absl::Seconds(resp.lease().ttl_seconds())};
  ++registrations_;
  std::cerr << "baq-worker: registered with " << options_.coordinator_address << " as "
            << lease_->worker_id << " (epoch " << lease_->epoch << ", address "
            << options_.advertise_address << ")\n";
  return true;
}

bool CoordinatorLink::Heartbeat(const WorkerLeaseInfo& lease) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_timeout));
  v1::HeartbeatRequest req;
  req.set_worker_id(lease.worker_id);
  req.set_epoch(lease.epoch);
  v1::HeartbeatResponse resp;
  const grpc::Status s = stub_->Heartbeat(&ctx, req, &resp);
  if (!s.ok()) {
    // Coordinator unreachable: keep the lease and try again next interval;
    // if it expired meanwhile the coordinator will say so.
    absl::MutexLock lock(&mu_);
    if (s.error_message() != last_error_) {
      std::cerr << "baq-worker: heartbeat failed: " << s.error_message() << "\n";
      last_error_ = s.error_message();
    }
    return true;
  }
  if (!resp.reregister()) {
    absl::MutexLock lock(&mu_);
    last_error_.clear();  // Log the next failure even if it repeats an old one.
    return true;
  }
  std::cerr << "baq-worker: coordinator asked to register again (lease expired or fenced)\n";
  absl::MutexLock lock(&mu_);
  lease_.reset();
  return false;
}

void CoordinatorLink::Loop() {
  while (true) {
    std::optional<WorkerLeaseInfo> lease = this->lease();
    if (!lease.has_value()) {
      if (!Register() && !Sleep(options_.retry_interval)) return;
      continue;
    }
    // A third of the ttl: two heartbeats may be lost before the lease lapses.
    if (!Sleep(std::max(lease->ttl / 3, absl::Milliseconds(10)))) return;
    Heartbeat(*lease);
  }
}

}  // namespace baq::worker

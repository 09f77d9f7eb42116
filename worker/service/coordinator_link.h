// worker/service/coordinator_link.h
//
// CoordinatorLink keeps a worker daemon registered with its coordinator: a
// background thread registers (retrying every `retry_interval` while the
// coordinator is unreachable), then heartbeats every ttl/3 of its lease.
// When the coordinator answers a heartbeat with "reregister" (the lease
// expired or a newer registration fenced this epoch) it registers again at
// once. Every call has a deadline; Heartbeat, being idempotent, is also
// retried by the channel on UNAVAILABLE.
//
// Thread-safe. The destructor stops and joins the thread.
//
// Example:
//   CoordinatorLinkOptions options;
//   options.coordinator_address = "10.0.0.2:7000";
//   options.advertise_address = "10.0.0.7:7001";
//   options.devices = {"cuda:0"};
//   auto link = CoordinatorLink::Start(options);
//   link->AwaitRegistered(absl::Seconds(10));
#ifndef BAQ_WORKER_SERVICE_COORDINATOR_LINK_H_
#define BAQ_WORKER_SERVICE_COORDINATOR_LINK_H_

#include <grpcpp/security/credentials.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "baq/v1/worker.grpc.pb.h"

namespace baq::worker {

struct CoordinatorLinkOptions {
  // host:port of the coordinator's gRPC server.
  std::string coordinator_address;
  // host:port at which the coordinator can dial this worker.
  std::string advertise_address;
  std::vector<std::string> devices;
  // Host memory, informational.
  int64_t memory_bytes = 0;
  // Deadline of each RegisterWorker / Heartbeat call.
  absl::Duration rpc_timeout = absl::Seconds(5);
  // Wait between failed registrations.
  absl::Duration retry_interval = absl::Seconds(1);
  // Credentials of the channel to the coordinator (net::MakeChannelCredentials:
  // TLS, with this worker's certificate for mutual TLS); null: plaintext.
  std::shared_ptr<grpc::ChannelCredentials> channel_credentials;
};

struct WorkerLeaseInfo {
  std::string worker_id;
  int64_t epoch = 0;
  absl::Duration ttl;
};

class CoordinatorLink {
 public:
  static std::unique_ptr<CoordinatorLink> Start(CoordinatorLinkOptions options);
  ~CoordinatorLink();  // Stop().

  CoordinatorLink(const CoordinatorLink&) = delete;
  CoordinatorLink& operator=(const CoordinatorLink&) = delete;

  // The current lease, if registered.
  std::optional<WorkerLeaseInfo> lease() const ABSL_LOCKS_EXCLUDED(mu_);
  // Blocks until registered or `timeout`; returns whether registered.
  bool AwaitRegistered(absl::Duration timeout) const ABSL_LOCKS_EXCLUDED(mu_);
  // Successful registrations so far (1 + re-registrations).
  int64_t registrations() const ABSL_LOCKS_EXCLUDED(mu_);

  // Stops heartbeating and joins the thread. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  explicit CoordinatorLink(CoordinatorLinkOptions options);
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);
  bool Register() ABSL_LOCKS_EXCLUDED(mu_);
  // Returns false when the worker must register again.
  bool Heartbeat(const WorkerLeaseInfo& lease) ABSL_LOCKS_EXCLUDED(mu_);
  // Waits `d` or until Stop(); returns false if stopping.
  bool Sleep(absl::Duration d) ABSL_LOCKS_EXCLUDED(mu_);

  const CoordinatorLinkOptions options_;
  const std::unique_ptr<v1::CoordinatorService::Stub> stub_;

  mutable absl::Mutex mu_;
  std::optional<WorkerLeaseInfo> lease_ ABSL_GUARDED_BY(mu_);
  int64_t registrations_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::string last_error_ ABSL_GUARDED_BY(mu_);  // Logged once per change.

  std::thread thread_;  // Last: started after the members above.
};

}  // namespace baq::worker

#endif  // BAQ_WORKER_SERVICE_COORDINATOR_LINK_H_

// coordinator/worker_registry.h
//
// WorkerRegistry: the coordinator's view of live workers, kept by leases.
// A worker registers (address, devices, memory) and gets a lease {worker_id,
// epoch, ttl}; each heartbeat within the ttl extends it. A lease that misses
// its ttl expires and the worker disappears from LiveWorkers(). The worker id
// is stable per address; every registration bumps the epoch, so a heartbeat
// from an older incarnation (a restarted or partitioned worker) is fenced
// off: it is told to register again instead of keeping a dead lease alive.
//
// Time comes from an injectable clock, so tests drive expiry by hand.
// Expiry is evaluated lazily on each call: no thread.
//
// Thread-safe.
//
// Example:
//   WorkerRegistry registry(WorkerRegistryOptions{});
//   WorkerLease lease = registry.Register("10.0.0.7:7001", {"cuda:0"}, 64 << 30);
//   BAQ_RETURN_IF_ERROR(registry.Heartbeat(lease.worker_id, lease.epoch));
//   for (const WorkerInfo& w : registry.LiveWorkers()) ...
#ifndef BAQ_COORDINATOR_WORKER_REGISTRY_H_
#define BAQ_COORDINATOR_WORKER_REGISTRY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace baq::coordinator {

struct WorkerRegistryOptions {
  // How long a lease lives without a heartbeat. Workers heartbeat at ttl/3.
  absl::Duration lease_ttl = absl::Seconds(15);
  // The clock; tests inject a fake.
  std::function<absl::Time()> now = [] { return absl::Now(); };
};

struct WorkerLease {
  std::string worker_id;
  int64_t epoch = 0;
  absl::Duration ttl;
};

struct WorkerInfo {
  std::string worker_id;
  int64_t epoch = 0;
  std::string address;
  std::vector<std::string> devices;
  int64_t memory_bytes = 0;
  absl::Time registered;
  absl::Time expires;
};

class WorkerRegistry {
 public:
  explicit WorkerRegistry(WorkerRegistryOptions options);

  WorkerRegistry(const WorkerRegistry&) = delete;
  WorkerRegistry& operator=(const WorkerRegistry&) = delete;

  // Registers (or re-registers) the worker at `address`: same worker id as
  // before, next epoch. InvalidArgument for an empty address or no devices.
  absl::StatusOr<WorkerLease> Register(const std::string& address, std::vector<std::string> devices,
                                       int64_t memory_bytes) ABSL_LOCKS_EXCLUDED(mu_);

  // Extends the lease. NotFound if the worker is unknown or its lease has
  // expired; FailedPrecondition if `epoch` is not the current one. Either
  // way the worker must register again.
  absl::Status Heartbeat(const std::string& worker_id, int64_t epoch) ABSL_LOCKS_EXCLUDED(mu_);

  // Workers whose leases have not expired, ordered by worker id.
  std::vector<WorkerInfo> LiveWorkers() ABSL_LOCKS_EXCLUDED(mu_);

  // Blocks until at least `n` workers are live or `timeout` passes (real
  // time; lease expiry still follows the injected clock). Returns the live
  // workers at that point.
  std::vector<WorkerInfo> AwaitWorkers(size_t n, absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);

  // Calls `fn(live_count)` after every change of the live set (under no
  // lock); for the workers gauge. Set before use.
  void SetOnChange(std::function<void(size_t)> fn) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // Drops expired leases; returns true if any was dropped.
  bool ExpireLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NotifyChange() ABSL_LOCKS_EXCLUDED(mu_);

  const WorkerRegistryOptions options_;

  absl::Mutex mu_;
  // By worker id.
  std::map<std::string, WorkerInfo> workers_ ABSL_GUARDED_BY(mu_);
  // Worker ids by address, kept across expiry so ids stay stable.
  std::map<std::string, std::string> id_by_address_ ABSL_GUARDED_BY(mu_);
  int64_t next_epoch_ ABSL_GUARDED_BY(mu_) = 1;
  std::function<void(size_t)> on_change_ ABSL_GUARDED_BY(mu_);
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_WORKER_REGISTRY_H_

// coordinator/worker_pool.h
//
// WorkerPool turns the registry's live workers into the engines of one job:
// a RemoteBlockEngine per device of every live worker, ordered by worker id
// then device, over one cached gRPC channel per worker address. It is the
// JobManager's EngineProvider in the daemon, and the source of replacement
// engines when a job loses a worker (NewEnginesForJob).
//
// Every engine carries the LeaseFence of its worker's incarnation. A
// watchdog thread polls the registry every lease_check_interval; when a
// lease has expired (a hung or partitioned worker missed its heartbeats) or
// the worker re-registered under a new epoch (it restarted, or came back
// from a partition), the fence is revoked: calls in flight to that
// incarnation are aborted at once and its late responses are discarded.
// A hang is thus detected within lease_ttl + lease_check_interval.
//
// Thread-safe.
//
// Example:
//   WorkerPool pool(&registry, WorkerPoolOptions{});
//   JobManagerDeps deps{JobRunnerExecutionFactory(), pool.AsProvider(), &metrics};
#ifndef BAQ_COORDINATOR_WORKER_POOL_H_
#define BAQ_COORDINATOR_WORKER_POOL_H_

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/block_engine.h"
#include "coordinator/engine_set.h"
#include "coordinator/job_manager.h"
#include "coordinator/remote_block_engine.h"
#include "coordinator/worker_registry.h"

namespace baq::coordinator {

struct WorkerPoolOptions {
  // A job waits this long for `min_workers` live workers, then fails with
  // Unavailable.
  absl::Duration worker_wait = absl::Seconds(60);
  size_t min_workers = 1;
  RemoteEngineOptions engine;
  // How often the lease watchdog compares the engines' leases with the
  // registry; a lease that expired or was superseded is fenced (LeaseFence)
  // within this much of the registry noticing.
  absl::Duration lease_check_interval = absl::Milliseconds(500);
  // Credentials of the channels to the workers (TLS, with this coordinator's
  // certificate for mutual TLS); null: plaintext.
  std::shared_ptr<grpc::ChannelCredentials> channel_credentials;
};

class WorkerPool {
 public:
  // `registry` is not owned and must outlive *this. Starts the lease
  // watchdog thread; the destructor joins it.
  WorkerPool(WorkerRegistry* registry, WorkerPoolOptions options);
  ~WorkerPool();

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  absl::StatusOr<std::vector<std::unique_ptr<BlockEngine>>> EnginesForJob(const std::string& job_id)
      ABSL_LOCKS_EXCLUDED(mu_);
  // EnginesForJob as a JobManager EngineProvider; *this must outlive it.
  EngineProvider AsProvider();
  // Engines on the worker incarnations (worker id + lease epoch) that
  // registered since the job's last EnginesForJob/NewEnginesForJob: the
  // replacements for lost workers (a restarted worker is a new epoch).
  // Does not wait; empty if there are none.
  absl::StatusOr<std::vector<std::unique_ptr<BlockEngine>>> NewEnginesForJob(
      const std::string& job_id) ABSL_LOCKS_EXCLUDED(mu_);
  // NewEnginesForJob(job_id) as a JobRunner replacement source; *this must
  // outlive it.
  MoreEnginesFn MoreEnginesFor(const std::string& job_id);
  // Aborts the in-flight calls of every job's engines, and fails their later
  // calls (for JobManagerDeps::abort_in_flight at shutdown).
  void AbortAll() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  std::shared_ptr<grpc::Channel> ChannelFor(const std::string& address) ABSL_LOCKS_EXCLUDED(mu_);
  // Engines on `workers` for `job_id`, recorded as handed out to it.
  std::vector<std::unique_ptr<BlockEngine>> MakeEngines(const std::string& job_id,
                                                        const std::vector<WorkerInfo>& workers,
                                                        bool first) ABSL_LOCKS_EXCLUDED(mu_);
  std::shared_ptr<LeaseFence> FenceFor(const WorkerInfo& worker)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Revokes the fences of leases the registry no longer holds.
  void CheckLeases() ABSL_LOCKS_EXCLUDED(mu_);
  void WatchdogLoop() ABSL_LOCKS_EXCLUDED(mu_);

  WorkerRegistry* const registry_;
  const WorkerPoolOptions options_;

  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_ ABSL_GUARDED_BY(mu_);
  // Cancellers of the jobs whose engines are alive, by job id.
  std::map<std::string, std::weak_ptr<CallCanceller>> cancellers_ ABSL_GUARDED_BY(mu_);
  // Worker incarnations (id, epoch) handed out to each job, by job id.
  std::map<std::string, std::set<std::pair<std::string, int64_t>>> handed_out_
      ABSL_GUARDED_BY(mu_);
  // The lease fence of each worker's current incarnation, by worker id.
  std::map<std::string, std::shared_ptr<LeaseFence>> fences_ ABSL_GUARDED_BY(mu_);
  bool aborted_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  // Last: joined by the destructor before the state above goes away.
  std::thread watchdog_;
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_WORKER_POOL_H_

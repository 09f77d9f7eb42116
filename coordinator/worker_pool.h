// coordinator/worker_pool.h
//
// WorkerPool turns the registry's live workers into the engines of one job:
// a RemoteBlockEngine per device of every live worker, ordered by worker id
// then device, over one cached gRPC channel per worker address. It is the
// JobManager's EngineProvider in the daemon.
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
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/block_engine.h"
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
};

class WorkerPool {
 public:
  // `registry` is not owned and must outlive *this.
  WorkerPool(WorkerRegistry* registry, WorkerPoolOptions options);

  absl::StatusOr<std::vector<std::unique_ptr<BlockEngine>>> EnginesForJob(const std::string& job_id)
      ABSL_LOCKS_EXCLUDED(mu_);
  // EnginesForJob as a JobManager EngineProvider; *this must outlive it.
  EngineProvider AsProvider();
  // Aborts the in-flight calls of every job's engines, and fails their later
  // calls (for JobManagerDeps::abort_in_flight at shutdown).
  void AbortAll() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  std::shared_ptr<grpc::Channel> ChannelFor(const std::string& address) ABSL_LOCKS_EXCLUDED(mu_);

  WorkerRegistry* const registry_;
  const WorkerPoolOptions options_;

  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_ ABSL_GUARDED_BY(mu_);
  // Cancellers of the jobs whose engines are alive, by job id.
  std::map<std::string, std::weak_ptr<CallCanceller>> cancellers_ ABSL_GUARDED_BY(mu_);
  bool aborted_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_WORKER_POOL_H_

// coordinator/job_scheduler.h
//
// JobScheduler decides which queued job starts next. It holds no threads and
// knows nothing of executions: the JobManager tells it what was queued,
// started, finished or removed, and asks it for the next job to start.
//
// Policy (docs/operations.md, "Running a farm"):
//   1. Higher `priority` first.
//   2. Among equal priority, per-tenant fair share: the tenant with the fewest
//      running jobs first; then the tenant served least recently (whose last
//      job started earliest, a never-served tenant before all others), so
//      tenants alternate round-robin; then submission order.
//   3. Admission by memory: the chosen job starts only if its estimate plus
//      the estimates of the running jobs fit `memory_capacity` (one worker's
//      memory: every job runs blocks on every worker). If it does not fit, no
//      job starts (no backfilling of smaller jobs past it), so a large job is
//      not starved by a stream of small ones. A job always starts when
//      nothing runs, so a shrunken capacity cannot wedge the queue.
//   4. At most `max_running` jobs run; a running job is never preempted.
// Unknown estimates (0) and unknown capacity (0) skip the memory check.
//
// Thread-compatible: the JobManager calls it under its lock.
//
// Example:
//   JobScheduler s(/*max_running=*/2);
//   s.Enqueue({.id = "j1", .tenant = "a", .priority = 0, .memory_bytes = 1 << 30});
//   if (std::optional<std::string> id = s.Next(capacity)) { s.Start(*id); ... }
#ifndef BAQ_COORDINATOR_JOB_SCHEDULER_H_
#define BAQ_COORDINATOR_JOB_SCHEDULER_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"

namespace baq::coordinator {

struct SchedulableJob {
  std::string id;
  std::string tenant;
  int priority = 0;          // Higher runs first.
  int64_t memory_bytes = 0;  // Estimate on one worker; 0: unknown.
};

class JobScheduler {
 public:
  explicit JobScheduler(int max_running) : max_running_(max_running) {}

  // Queues `job` behind the queued jobs of the same priority and tenant.
  void Enqueue(SchedulableJob job);
  // Removes a queued job (cancelled); false if it is not queued.
  bool Dequeue(const std::string& id);
  // The job that should start now, or nullopt (nothing queued, all slots
  // busy, or the first in line does not fit `memory_capacity`). Const: call
  // Start() to take it.
  std::optional<std::string> Next(int64_t memory_capacity) const;
  // Moves queued job `id` to running. REQUIRES: `id` is queued.
  void Start(const std::string& id);
  // Marks running job `id` as finished (any outcome). Unknown ids: no-op.
  void Finish(const std::string& id);
  // Registers `job` as already running (jobs resumed after a restart).
  void AddRunning(SchedulableJob job);

  // The queued jobs in the order they are expected to start (queue position
  // = index), replaying the policy with no new arrivals, running jobs
  // finishing in the order they started, and memory ignored. Exact for
  // max_running == 1 without arrivals, cancellations or failures.
  std::vector<std::string> QueueOrder() const;
  // Queue position and estimated time to finish (from now) of every queued
  // job: list scheduling of QueueOrder() onto max_running slots that free up
  // when `running_etas` (one per running job) run out, each queued job taking
  // `mean` (InfiniteDuration stays infinite).
  std::map<std::string, std::pair<int, absl::Duration>> QueueEtas(
      std::vector<absl::Duration> running_etas, absl::Duration mean) const;

  size_t queued() const { return queued_.size(); }
  size_t running() const { return running_.size(); }
  int64_t running_memory_bytes() const;

 private:
  struct Queued {
    SchedulableJob job;
    int64_t seq = 0;
  };
  struct TenantState {
    int running = 0;
    int64_t last_service = -1;  // Start sequence of its last job; -1: never.
  };
  // Index into `queued` of the job to start next under `tenants`.
  static size_t Best(const std::vector<Queued>& queued,
                     const std::map<std::string, TenantState>& tenants);

  const int max_running_;
  std::vector<Queued> queued_;  // In submission order.
  struct Running {
    SchedulableJob job;
    int64_t start_seq = 0;  // Service counter value when it started.
  };
  std::map<std::string, Running> running_;
  std::map<std::string, TenantState> tenants_;
  int64_t next_seq_ = 0;
  int64_t service_counter_ = 0;
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_JOB_SCHEDULER_H_

// coordinator/job_manager.h
//
// JobManager: the coordinator's core, free of gRPC. It queues jobs, runs
// them (up to `max_concurrent_jobs` at a time, each on its own thread, in
// the order of the JobScheduler: priority, per-tenant fair share, admission
// by estimated memory) with a JobExecution — coordinator::JobRunner over the engines of the live
// workers in the daemon, a fake in tests — and answers Submit, Get, List,
// Cancel and Watch. Every state change is persisted through a JobStore, so a
// restarted coordinator lists old jobs. The disk writes happen outside the
// manager's lock (coordinator/job_record_writer.h: newest record last, per
// job), so a slow disk delays only the thread that changed that job: Submit,
// Cancel and the runners return once their change is on disk, while Get,
// List and other jobs go on. On reload, QUEUED jobs are queued
// again and RUNNING ones are queued again to resume from their checkpoint
// (with a resumable_execution_factory) or else become FAILED/ABORTED.
//
// Submit is idempotent by request id, per tenant: the same id of the same
// tenant with the same config returns the first job; with another config it
// is AlreadyExists. Another tenant's id never matches (tenants cannot see or
// collide with each other's keys).
//
// Delete removes a finished job: record, checkpoint and, on request, its
// outputs (coordinator/job_manager_list.cc, with List's filters and pages).
//
// Watchers are called under the manager's lock, in event order, with a
// snapshot of the record: first immediately, then after every change; the
// call with a terminal state is the last. A watcher must not block or call
// back into the manager (the Watch RPC only queues a write).
//
// Thread-safe. Shutdown() (also by the destructor) stops accepting jobs,
// cancels running ones and joins the threads.
//
// Example:
//   JobManagerDeps deps{JobRunnerExecutionFactory(), pool.EngineProvider(), &metrics};
//   BAQ_ASSIGN_OR_RETURN(auto jobs, JobManager::Create(options, std::move(deps)));
//   BAQ_ASSIGN_OR_RETURN(JobRecord job, jobs->Submit("req-1", config));
#ifndef BAQ_COORDINATOR_JOB_MANAGER_H_
#define BAQ_COORDINATOR_JOB_MANAGER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/block_engine.h"
#include "coordinator/coordinator_metrics.h"
#include "coordinator/job_record.h"
#include "coordinator/job_record_writer.h"
#include "coordinator/job_runner.h"
#include "coordinator/job_scheduler.h"
#include "coordinator/job_store.h"
#include "coordinator/memory_estimate.h"
#include "coordinator/retention.h"

namespace baq::coordinator {

// One run of one job: JobRunner in production.
class JobExecution {
 public:
  virtual ~JobExecution() = default;
  virtual absl::StatusOr<JobSummary> Run() = 0;
  // Thread-safe; Run() then returns Cancelled soon.
  virtual void Cancel() = 0;
};

using ExecutionFactory = std::function<std::unique_ptr<JobExecution>(
    const JobConfig& config, std::vector<BlockEngine*> engines, JobRunner::ProgressFn progress)>;

// The engines one job runs on. May block (waiting for workers to register).
using EngineProvider = std::function<absl::StatusOr<std::vector<std::unique_ptr<BlockEngine>>>(
    const std::string& job_id)>;

// Runs jobs with coordinator::JobRunner (coordinator/job_runner_execution.cc).
ExecutionFactory JobRunnerExecutionFactory();

// Like ExecutionFactory, also told the job's id: the execution keeps a
// checkpoint per job and replaces lost workers, so the manager resumes
// RUNNING jobs after a restart instead of failing them.
using ResumableExecutionFactory = std::function<std::unique_ptr<JobExecution>(
    const std::string& job_id, const JobConfig& config, std::vector<BlockEngine*> engines,
    JobRunner::ProgressFn progress)>;

// How JobRunner executions survive failures (JobRunner's header says how).
struct JobRecovery {
  // Checkpoints go to <data_dir>/jobs/<id>/; empty: none (replacements only).
  std::string data_dir;
  // Replacement engines of a job (WorkerPool::MoreEnginesFor); may be null.
  std::function<MoreEnginesFn(const std::string& job_id)> more_engines;
  int max_worker_failures = 3;
  absl::Duration replacement_wait = absl::Seconds(60);
  // Where workers checkpoint their resident calibration shards:
  // <shard_checkpoint_dir>/<job id>; empty: <data_dir>/jobs/<id>/shards
  // (JobRunnerOptions::shard_checkpoint_dir).
  std::string shard_checkpoint_dir;
  int shard_checkpoint_every = 4;  // Blocks; 0: never.
  // Per-job metrics (worker losses, wire bytes); nullable, not owned.
  CoordinatorMetrics* metrics = nullptr;
};
ResumableExecutionFactory JobRunnerExecutionFactory(JobRecovery recovery);
// <data_dir>/jobs/<id> ("" without a data_dir), and its removal (best effort).
std::string JobCheckpointDir(const std::string& data_dir, const std::string& job_id);
// A measurement named by a plain name (JobConfig::measurement_dir without a
// '/') lives in <data_dir>/measurements/<name>: rewrites `config` to that
// path. InvalidArgument for a bad name, FailedPrecondition without a data_dir.
absl::Status ResolveMeasurementName(const std::string& data_dir, JobConfig& config);
void DiscardJobCheckpoint(const std::string& data_dir, const std::string& job_id);

struct JobManagerOptions {
  // Where job records are persisted; empty: memory only.
  std::string data_dir;
  // Jobs running at once; they share the workers (each worker runs one
  // engine per job and device, so this mostly trades memory for latency).
  int max_concurrent_jobs = 1;
  // Submit fails with ResourceExhausted beyond this many queued jobs.
  size_t max_queued_jobs = 1000;
  // The clock for record timestamps; tests inject a fake.
  std::function<absl::Time()> now = [] { return absl::Now(); };
  // How often idle runners re-check the memory capacity (workers join and
  // leave without telling the manager).
  absl::Duration schedule_poll = absl::Seconds(1);
  // Garbage collection of finished jobs' intermediate state in data_dir
  // (coordinator/retention.h), run at start and after every job; disabled
  // unless a limit is set.
  RetentionOptions retention;
};

// Who submits a job and how urgent it is (coordinator/job_scheduler.h).
struct SubmitOptions {
  std::string tenant;  // From the caller's credentials; empty: the default tenant.
  int priority = 0;    // Higher runs first.
  std::map<std::string, std::string> labels;  // Validated by Submit (ValidateLabels).
};

// Which jobs List returns: filters combine with AND; empty ones match all.
struct ListFilter {
  std::vector<JobState> states;       // Any of these; empty: any state.
  std::optional<std::string> tenant;  // Only this tenant's jobs.
  std::map<std::string, std::string> labels;  // Every one of these, equal.
  int page_size = 0;       // At most this many jobs; 0: all.
  std::string page_token;  // ListPage::next_page_token of the previous page.
};
struct ListPage {
  std::vector<JobRecord> jobs;  // Oldest first.
  std::string next_page_token;  // "": the last page.
};

// What Delete removed (paths on the coordinator's file system).
struct DeleteResult {
  std::vector<std::string> removed_paths;
};

struct JobManagerDeps {
  ExecutionFactory execution_factory;     // Required, unless the next is set.
  // Optional; replaces execution_factory: jobs resume after a restart (and
  // after a shutdown, RUNNING jobs stay RUNNING on disk).
  ResumableExecutionFactory resumable_execution_factory;
  EngineProvider engine_provider;         // Required.
  CoordinatorMetrics* metrics = nullptr;  // Nullable; not owned.
  // Optional: called by Shutdown() after cancelling the executions, to abort
  // calls in flight (WorkerPool::AbortAll), so shutdown does not wait for
  // the block each running job is on.
  std::function<void()> abort_in_flight;
  // Optional: the memory one worker offers to jobs (WorkerMemoryCapacity in
  // the daemon); 0 or unset: unknown, no admission by memory.
  std::function<int64_t()> memory_capacity;
  // Optional: a job's memory estimate; unset: EstimateJobMemory(config),
  // which reads config.json (a job whose config.json the coordinator cannot
  // read gets no estimate and skips the memory checks).
  std::function<absl::StatusOr<MemoryEstimate>(const JobConfig&)> estimate_memory;
  // Optional, not owned, outlives the manager: where records are persisted;
  // unset: a JobStore on JobManagerOptions::data_dir. Tests wrap a JobStore.
  const JobStore* store = nullptr;
};

class JobManager {
 public:
  using WatchFn = std::function<void(const JobRecord&)>;

  // Loads earlier jobs from `data_dir` and starts the runner threads.
  static absl::StatusOr<std::unique_ptr<JobManager>> Create(JobManagerOptions options,
                                                            JobManagerDeps deps);
  ~JobManager();

  JobManager(const JobManager&) = delete;
  JobManager& operator=(const JobManager&) = delete;

  // InvalidArgument (config.Validate()), AlreadyExists (request id reused
  // with another config), ResourceExhausted (queue full, or the job's memory
  // estimate exceeds what one worker offers), Unavailable (shutting down).
  absl::StatusOr<JobRecord> Submit(const std::string& request_id, JobConfig config,
                                   const SubmitOptions& submit = {}) ABSL_LOCKS_EXCLUDED(mu_);
  // Queued jobs carry their queue position and an estimated time to finish
  // (progress.eta; see QueueEtasLocked).
  absl::StatusOr<JobRecord> Get(const std::string& id) ABSL_LOCKS_EXCLUDED(mu_);
  // Oldest first.
  std::vector<JobRecord> List() ABSL_LOCKS_EXCLUDED(mu_);
  // The jobs matching `filter`, one page of them; InvalidArgument for a
  // malformed page token or a negative page size. A page token stays valid
  // when jobs are added or deleted meanwhile (it names a position in the
  // submit order, not an index).
  absl::StatusOr<ListPage> List(const ListFilter& filter) ABSL_LOCKS_EXCLUDED(mu_);
  // Removes a finished job's record, its checkpoint and, with
  // `delete_outputs`, the output directories it published. NotFound if
  // unknown; FailedPrecondition for a queued or running job (cancel it
  // first). Internal when a removal fails (the job is forgotten all the same).
  absl::StatusOr<DeleteResult> Delete(const std::string& id, bool delete_outputs)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Queued: cancelled now. Running: the workers' calls in flight are aborted
  // and the job ends CANCELLED within seconds (the record
  // stays RUNNING until then). Finished: unchanged. NotFound if unknown.
  absl::StatusOr<JobRecord> Cancel(const std::string& id) ABSL_LOCKS_EXCLUDED(mu_);

  // Registers `fn` (see the file comment); returns a handle for Unwatch.
  // NotFound if unknown.
  absl::StatusOr<int64_t> Watch(const std::string& id, WatchFn fn) ABSL_LOCKS_EXCLUDED(mu_);
  // After it returns, the watcher is not called again. Unknown ids are a no-op.
  void Unwatch(int64_t handle) ABSL_LOCKS_EXCLUDED(mu_);

  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Job {
    JobRecord record;
    uint64_t seq = 0;  // Position in the submit order (page tokens).
    JobExecution* execution = nullptr;  // Owned by the running thread.
    bool cancel_requested = false;
  };
  struct Watcher {
    std::string job_id;
    WatchFn fn;
  };

  JobManager(JobManagerOptions options, JobManagerDeps deps);
  // The id_by_request_ key: request ids are scoped to their tenant.
  static std::string RequestKey(const std::string& tenant, const std::string& request_id);
  absl::Status Load() ABSL_LOCKS_EXCLUDED(mu_);
  // One record of the store: indexed, queued again or failed (see the file comment).
  void LoadLocked(JobRecord record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Submit's checks and bookkeeping; `estimate` is the job's memory
  // estimate, `capacity` what one worker offers (0: unknown).
  absl::StatusOr<JobRecord> SubmitLocked(const std::string& request_id, JobConfig config,
                                         const SubmitOptions& submit,
                                         const absl::StatusOr<MemoryEstimate>& estimate,
                                         int64_t capacity) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RunnerLoop() ABSL_LOCKS_EXCLUDED(mu_);
  void RunJob(const std::string& id) ABSL_LOCKS_EXCLUDED(mu_);
  void OnProgress(const std::string& id, const JobProgress& p) ABSL_LOCKS_EXCLUDED(mu_);
  // Moves the job to `state` (metrics, timestamps, persistence, watchers).
  // The caller writes the record with writer_.Flush after releasing mu_.
  void TransitionLocked(Job& job, JobState state, absl::Status error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stages the job's record for writer_.Flush (no I/O under mu_).
  void PersistLocked(const Job& job, bool discard_checkpoint = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NotifyLocked(const Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string NewIdLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Hands a QUEUED job to the scheduler.
  void EnqueueLocked(const Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t MemoryCapacity() const;
  // Queue position and estimated time to finish of every queued job: list
  // scheduling of the queue order onto max_concurrent_jobs slots that free
  // up when the running jobs' ETAs run out, each queued job taking the mean
  // wall time of the last succeeded jobs (InfiniteDuration until one has).
  std::map<std::string, std::pair<int, absl::Duration>> QueueEtasLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordDurationLocked(absl::Duration d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies options_.retention; failures are logged, not fatal.
  void CollectGarbage() ABSL_LOCKS_EXCLUDED(mu_, gc_mu_);

  // Constant after construction.
  const JobManagerOptions options_;
  const JobManagerDeps deps_;
  const JobStore own_store_;  // Used unless deps_.store is set.
  const JobStore* const store_;
  JobRecordWriter writer_;  // Thread-safe; taken after mu_, never the other way.

  // Serializes CollectGarbage (taken before mu_, never inside it).
  absl::Mutex gc_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  absl::Mutex mu_;
  std::map<std::string, Job> jobs_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> order_ ABSL_GUARDED_BY(mu_);  // Ids, oldest first.
  // Job ids by RequestKey(tenant, request_id).
  std::map<std::string, std::string> id_by_request_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  JobScheduler scheduler_ ABSL_GUARDED_BY(mu_);
  // Wall times of the last succeeded jobs, for queued ETAs.
  std::deque<absl::Duration> recent_durations_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, Watcher> watchers_ ABSL_GUARDED_BY(mu_);
  int64_t next_watch_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t id_counter_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;

  // Last: joined by Shutdown() before the state above goes away.
  std::vector<std::thread> runners_;
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_JOB_MANAGER_H_

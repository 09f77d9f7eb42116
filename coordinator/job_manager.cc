#include "coordinator/job_manager.h"

#include <algorithm>
#include <iostream>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coordinator/eval_gate.h"

namespace baq::coordinator {

JobManager::JobManager(JobManagerOptions options, JobManagerDeps deps)
    : options_(std::move(options)),
      deps_(std::move(deps)),
      own_store_(options_.data_dir),
      store_(deps_.store != nullptr ? deps_.store : &own_store_),
      writer_(store_,
              [data_dir = options_.data_dir](const std::string& id) {
                DiscardJobCheckpoint(data_dir, id);
              }),
      scheduler_(options_.max_concurrent_jobs) {}

namespace {
// Queued ETAs use the mean of this many latest successful wall times.
constexpr size_t kEtaHistory = 20;
}  // namespace

std::string JobManager::RequestKey(const std::string& tenant, const std::string& request_id) {
  return absl::StrCat(tenant.size(), ":", tenant, "/", request_id);  // Unambiguous.
}

absl::StatusOr<std::unique_ptr<JobManager>> JobManager::Create(JobManagerOptions options,
                                                               JobManagerDeps deps) {
  if ((!deps.execution_factory && !deps.resumable_execution_factory) || !deps.engine_provider) {
    return absl::InvalidArgumentError("job manager needs an execution factory and engines");
  }
  if (options.max_concurrent_jobs < 1) {
    return absl::InvalidArgumentError("max_concurrent_jobs must be >= 1");
  }
  std::unique_ptr<JobManager> manager(new JobManager(std::move(options), std::move(deps)));
  if (absl::Status s = manager->Load(); !s.ok()) return s;
  manager->CollectGarbage();
  for (int i = 0; i < manager->options_.max_concurrent_jobs; ++i) {
    manager->runners_.emplace_back([m = manager.get()] { m->RunnerLoop(); });
  }
  return manager;
}

JobManager::~JobManager() { Shutdown(); }

absl::Status JobManager::Load() {
  if (absl::Status s = store_->Init(); !s.ok()) return s;
  absl::StatusOr<std::vector<JobRecord>> records = store_->LoadAll();
  if (!records.ok()) return records.status();
  std::vector<std::string> ids;
  {
    absl::MutexLock lock(&mu_);
    for (JobRecord& record : *records) {
      ids.push_back(record.id);
      LoadLocked(std::move(record));
    }
  }
  for (const std::string& id : ids) writer_.Flush(id);  // What LoadLocked changed.
  return absl::OkStatus();
}

void JobManager::LoadLocked(JobRecord record) {
  const std::string id = record.id;
  if (!record.request_id.empty()) id_by_request_[RequestKey(record.tenant, record.request_id)] = id;
  order_.push_back(id);
  Job& job = jobs_[id];
  job.record = std::move(record);
  job.seq = next_seq_++;
  if (deps_.metrics != nullptr) deps_.metrics->jobs(JobStateName(job.record.state)).Increment();
  if (job.record.state == JobState::kQueued) EnqueueLocked(job);
  if (job.record.state == JobState::kSucceeded && job.record.end_time > job.record.start_time) {
    RecordDurationLocked(job.record.end_time - job.record.start_time);
  }
  if (job.record.state == JobState::kRunning && deps_.resumable_execution_factory) {
    // Runs again, from its checkpoint (JobRunner), when a runner is free.
    job.record.progress.message = "resuming after a coordinator restart";
    TransitionLocked(job, JobState::kQueued, absl::OkStatus());
    EnqueueLocked(job);
  } else if (job.record.state == JobState::kRunning) {
    // Its workers' engines are gone with the coordinator's plan.
    TransitionLocked(job, JobState::kFailed,
                     absl::AbortedError("interrupted by a coordinator restart; resubmit"));
  }
}

std::string JobManager::NewIdLocked() {
  // Sortable by time, readable, and unique within this manager.
  const std::string stamp = absl::FormatTime("%Y%m%d-%H%M%S", options_.now(), absl::UTCTimeZone());
  std::string id;
  do {
    id = absl::StrFormat("job-%s-%03d", stamp, id_counter_++ % 1000);
  } while (jobs_.count(id) != 0);
  return id;
}

void JobManager::EnqueueLocked(const Job& job) {
  scheduler_.Enqueue(SchedulableJob{job.record.id, job.record.tenant, job.record.priority,
                                    job.record.memory_estimate_bytes});
}

int64_t JobManager::MemoryCapacity() const {
  return deps_.memory_capacity ? deps_.memory_capacity() : 0;
}

void JobManager::RecordDurationLocked(absl::Duration d) {
  recent_durations_.push_back(d);
  while (recent_durations_.size() > kEtaHistory) recent_durations_.pop_front();
}

std::map<std::string, std::pair<int, absl::Duration>> JobManager::QueueEtasLocked() {
  absl::Duration mean = absl::InfiniteDuration();
  if (!recent_durations_.empty()) {
    absl::Duration sum;
    for (absl::Duration d : recent_durations_) sum += d;
    mean = sum / static_cast<int64_t>(recent_durations_.size());
  }
  std::vector<absl::Duration> running_etas;
  for (const auto& [id, job] : jobs_) {
    if (job.record.state != JobState::kRunning) continue;
    const absl::Duration eta = job.record.progress.eta;
    running_etas.push_back(eta == absl::InfiniteDuration() ? mean : eta);
  }
  return scheduler_.QueueEtas(std::move(running_etas), mean);
}

absl::StatusOr<JobRecord> JobManager::Submit(const std::string& request_id, JobConfig config,
                                             const SubmitOptions& submit) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  if (absl::Status s = ValidateLabels(submit.labels); !s.ok()) return s;
  if (absl::Status s = ResolveMeasurementName(options_.data_dir, config); !s.ok()) return s;
  // Outside mu_: it may read config.json.
  absl::StatusOr<MemoryEstimate> estimate =
      deps_.estimate_memory ? deps_.estimate_memory(config) : EstimateJobMemory(config);
  const int64_t capacity = MemoryCapacity();
  absl::StatusOr<JobRecord> result;
  {
    absl::MutexLock lock(&mu_);
    result = SubmitLocked(request_id, std::move(config), submit, estimate, capacity);
  }
  // Outside mu_: the new job's record (or a retried one's) is on disk when this returns.
  if (result.ok()) writer_.Flush(result->id);
  return result;
}

absl::StatusOr<JobRecord> JobManager::SubmitLocked(const std::string& request_id,
                                                   JobConfig config, const SubmitOptions& submit,
                                                   const absl::StatusOr<MemoryEstimate>& estimate,
                                                   int64_t capacity) {
  const int64_t memory = estimate.ok() ? estimate->total() : 0;
  if (shutting_down_) return absl::UnavailableError("coordinator is shutting down");
  if (!request_id.empty()) {
    auto it = id_by_request_.find(RequestKey(submit.tenant, request_id));
    if (it != id_by_request_.end()) {
      const JobRecord& existing = jobs_.at(it->second).record;
      if (JobConfigToJson(existing.config) != JobConfigToJson(config)) {
        return absl::AlreadyExistsError(absl::StrCat("request id ", request_id,
                                                     " was used for job ", existing.id,
                                                     " with a different spec"));
      }
      return existing;  // An idempotent retry.
    }
  }
  if (scheduler_.queued() >= options_.max_queued_jobs) {
    return absl::ResourceExhaustedError(
        absl::StrCat("job queue is full (", options_.max_queued_jobs, " queued)"));
  }
  // After the idempotency check: a retry returns its job even if the
  // capacity shrank since.
  if (memory > 0 && capacity > 0 && memory > capacity) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "job needs an estimated ", estimate->ToString(), " on a worker, but a worker offers ",
        FormatBytes(capacity), " (", capacity,
        " bytes: --max_job_memory or the smallest registered worker); use fewer calibration "
        "samples or a shorter seqlen, or add memory"));
  }
  const std::string id = NewIdLocked();
  Job& job = jobs_[id];
  job.record.id = id;
  job.record.request_id = request_id;
  job.record.config = std::move(config);
  job.record.tenant = submit.tenant;
  job.record.priority = submit.priority;
  job.record.labels = submit.labels;
  job.seq = next_seq_++;
  job.record.memory_estimate_bytes = memory;
  job.record.create_time = options_.now();
  job.record.progress.eta = absl::InfiniteDuration();
  job.record.progress.message = "queued";
  order_.push_back(id);
  if (!request_id.empty()) id_by_request_[RequestKey(submit.tenant, request_id)] = id;
  EnqueueLocked(job);
  if (deps_.metrics != nullptr) {
    deps_.metrics->jobs_submitted_total().Increment();
    deps_.metrics->jobs(JobStateName(JobState::kQueued)).Increment();
  }
  PersistLocked(job);
  JobRecord result = job.record;
  const auto queued = QueueEtasLocked();
  if (auto q = queued.find(id); q != queued.end()) {
    result.queue_position = q->second.first;
    result.progress.eta = q->second.second;
  }
  return result;
}

absl::StatusOr<JobRecord> JobManager::Get(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job ", id));
  JobRecord record = it->second.record;
  if (record.state == JobState::kQueued) {
    const auto queued = QueueEtasLocked();
    if (auto q = queued.find(id); q != queued.end()) {
      record.queue_position = q->second.first;
      record.progress.eta = q->second.second;
    }
  }
  return record;
}

std::vector<JobRecord> JobManager::List() {
  absl::MutexLock lock(&mu_);
  const auto queued = QueueEtasLocked();
  std::vector<JobRecord> records;
  records.reserve(order_.size());
  for (const std::string& id : order_) {
    records.push_back(jobs_.at(id).record);
    if (auto q = queued.find(id); q != queued.end()) {
      records.back().queue_position = q->second.first;
      records.back().progress.eta = q->second.second;
    }
  }
  return records;
}

absl::StatusOr<JobRecord> JobManager::Cancel(const std::string& id) {
  JobRecord record;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job ", id));
    Job& job = it->second;
    if (job.record.state == JobState::kQueued) {
      scheduler_.Dequeue(id);
      TransitionLocked(job, JobState::kCancelled, absl::CancelledError("cancelled before it ran"));
    } else if (job.record.state == JobState::kRunning && !job.cancel_requested) {
      job.cancel_requested = true;
      if (job.execution != nullptr) job.execution->Cancel();
      job.record.progress.message = "cancelling: stopping the workers' calls in flight";
      NotifyLocked(job);
    }
    record = job.record;
  }
  writer_.Flush(id);  // A queued job's CANCELLED record, outside mu_.
  return record;
}

absl::StatusOr<int64_t> JobManager::Watch(const std::string& id, WatchFn fn) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job ", id));
  fn(it->second.record);
  const int64_t handle = next_watch_++;
  if (!IsTerminal(it->second.record.state)) watchers_[handle] = Watcher{id, std::move(fn)};
  return handle;
}

void JobManager::Unwatch(int64_t handle) {
  absl::MutexLock lock(&mu_);
  watchers_.erase(handle);
}

void JobManager::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return;
    shutting_down_ = true;
    for (auto& [id, job] : jobs_) {
      if (job.execution != nullptr) job.execution->Cancel();
    }
  }
  if (deps_.abort_in_flight) deps_.abort_in_flight();
  for (std::thread& t : runners_) t.join();
}

void JobManager::RunnerLoop() {
  while (true) {
    std::string id;
    {
      absl::MutexLock lock(&mu_);
      // Re-evaluated whenever mu_ is released, and every schedule_poll for
      // capacity changes the manager is not told about (workers joining).
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return shutting_down_ || scheduler_.Next(MemoryCapacity()).has_value();
      };
      std::optional<std::string> next;
      while (!shutting_down_ && !next.has_value()) {
        mu_.AwaitWithTimeout(absl::Condition(&ready), options_.schedule_poll);
        if (!shutting_down_) next = scheduler_.Next(MemoryCapacity());
      }
      if (shutting_down_) return;  // Queued jobs stay QUEUED for the next start.
      id = *next;
      scheduler_.Start(id);
      Job& job = jobs_.at(id);
      job.record.progress.stage = JobStage::kStarting;
      job.record.progress.message = "waiting for workers";
      TransitionLocked(job, JobState::kRunning, absl::OkStatus());
      if (deps_.metrics != nullptr) {
        deps_.metrics->target_bits().Set(job.record.config.quant.target_bits);
        deps_.metrics->achieved_bits().Set(0);
        deps_.metrics->job_progress_percent().Set(0);
      }
    }
    writer_.Flush(id);  // The RUNNING record, outside mu_.
    RunJob(id);
    CollectGarbage();
  }
}

void JobManager::CollectGarbage() {
  if (!options_.retention.enabled() || options_.data_dir.empty()) return;
  absl::MutexLock gc_lock(&gc_mu_);
  // The snapshot may age while the scan runs; a job that starts meanwhile has
  // no state to lose yet (its checkpoint dir is created by its run).
  const Retention retention(options_.data_dir, options_.retention);
  absl::StatusOr<RetentionReport> report = retention.Collect(List());
  if (!report.ok()) {
    std::cerr << "baq-coordinator: retention: " << report.status() << "\n";
  } else if (!report->removed.empty()) {
    std::cerr << "baq-coordinator: retention removed " << report->removed.size()
              << " item(s), " << FormatBytes(report->bytes_freed) << "; "
              << FormatBytes(report->bytes_kept) << " of intermediate state kept\n";
  }
}

void JobManager::RunJob(const std::string& id) {
  JobConfig config;
  {
    absl::MutexLock lock(&mu_);
    config = jobs_.at(id).record.config;
  }
  absl::StatusOr<std::vector<std::unique_ptr<BlockEngine>>> engines = deps_.engine_provider(id);
  std::unique_ptr<JobExecution> execution;
  absl::StatusOr<JobSummary> result = absl::UnknownError("not run");
  if (!engines.ok()) {
    result = engines.status();
  } else {
    std::vector<BlockEngine*> raw;
    for (auto& e : *engines) raw.push_back(e.get());
    JobRunner::ProgressFn progress = [this, id](const JobProgress& p) { OnProgress(id, p); };
    execution = deps_.resumable_execution_factory
                    ? deps_.resumable_execution_factory(id, config, raw, std::move(progress))
                    : deps_.execution_factory(config, raw, std::move(progress));
    bool cancelled;
    {
      absl::MutexLock lock(&mu_);
      Job& job = jobs_.at(id);
      job.execution = execution.get();
      cancelled = job.cancel_requested || shutting_down_;
    }
    // Cancelled while waiting for workers: skip the run (Start alone loads
    // the model on every worker).
    result = cancelled ? absl::StatusOr<JobSummary>(absl::CancelledError("cancelled"))
                       : execution->Run();
    // Free the job's state on every worker, whatever happened.
    for (auto& e : *engines) e->Reset();
  }
  {
    absl::MutexLock lock(&mu_);
    Job& job = jobs_.at(id);
    job.execution = nullptr;
    scheduler_.Finish(id);
    if (result.ok()) {
      job.record.summary = *result;
      job.record.progress.stage = JobStage::kDone;
      job.record.progress.percent = 100;
      job.record.progress.eta = absl::ZeroDuration();
      job.record.progress.achieved_bits = result->achieved_bits;
      if (deps_.metrics != nullptr) deps_.metrics->achieved_bits().Set(result->achieved_bits);
      if (deps_.metrics != nullptr && job.record.config.eval_gate.enabled()) {
        deps_.metrics->RecordEvalGate(true, result->eval_gate_ppl, result->eval_gate_base_ppl);
      }
      TransitionLocked(job, JobState::kSucceeded, absl::OkStatus());
      RecordDurationLocked(job.record.end_time - job.record.start_time);
    } else if (job.cancel_requested) {
      TransitionLocked(job, JobState::kCancelled, absl::CancelledError("cancelled by request"));
    } else if (shutting_down_ && deps_.resumable_execution_factory) {
      // Stays RUNNING on disk: the next start resumes it from its checkpoint.
      job.record.progress.message = "interrupted by a coordinator shutdown; resumes on restart";
      PersistLocked(job);
      NotifyLocked(job);
    } else if (shutting_down_ && result.status().code() == absl::StatusCode::kCancelled) {
      TransitionLocked(job, JobState::kFailed,
                       absl::AbortedError("interrupted by a coordinator shutdown; resubmit"));
    } else if (std::optional<EvalGateResult> gate = EvalGateResultOf(result.status())) {
      // Missed its evaluation gate: nothing was published; the error names the numbers.
      if (deps_.metrics != nullptr) deps_.metrics->RecordEvalGate(false, gate->ppl, gate->base_ppl);
      TransitionLocked(job, JobState::kFailedGate, result.status());
    } else {
      TransitionLocked(job, JobState::kFailed, result.status());
    }
    execution.reset();  // Under mu_: nothing else references it any more.
  }
  writer_.Flush(id);  // The final record, outside mu_.
}

void JobManager::OnProgress(const std::string& id, const JobProgress& p) {
  absl::MutexLock lock(&mu_);
  Job& job = jobs_.at(id);
  if (IsTerminal(job.record.state)) return;
  job.record.progress = p;
  if (job.cancel_requested) job.record.progress.message = "cancelling: stopping the workers' calls in flight";
  if (deps_.metrics != nullptr) {
    deps_.metrics->job_progress_percent().Set(p.percent);
    deps_.metrics->achieved_bits().Set(p.achieved_bits);
    deps_.metrics->SetJobProgress(id, p.blocks_done, p.num_blocks, p.eta);
  }
  NotifyLocked(job);
}

void JobManager::TransitionLocked(Job& job, JobState state, absl::Status error) {
  const JobState old = job.record.state;
  job.record.state = state;
  job.record.error = std::move(error);
  const absl::Time now = options_.now();
  if (state == JobState::kRunning) job.record.start_time = now;
  if (IsTerminal(state)) {
    job.record.end_time = now;
    if (!job.record.error.ok())
      job.record.progress.message = std::string(job.record.error.message());
  }
  if (deps_.metrics != nullptr) {
    deps_.metrics->jobs(JobStateName(old)).Decrement();
    deps_.metrics->jobs(JobStateName(state)).Increment();
    if (IsTerminal(state) && old == JobState::kRunning) {
      deps_.metrics->job_seconds().Observe(
          absl::ToDoubleSeconds(job.record.end_time - job.record.start_time));
      const JobProgress& p = job.record.progress;
      deps_.metrics->SetJobProgress(job.record.id, p.blocks_done, p.num_blocks,
                                    absl::ZeroDuration());
      deps_.metrics->FinishJob(job.record.id);
    }
  }
  // A finished job's checkpoint (activations: large) has no further use: the
  // writer removes it before saving this record.
  PersistLocked(job, IsTerminal(state) && deps_.resumable_execution_factory != nullptr);
  NotifyLocked(job);
}

void JobManager::PersistLocked(const Job& job, bool discard_checkpoint) {
  writer_.Stage(job.record, discard_checkpoint);
}

void JobManager::NotifyLocked(const Job& job) {
  const bool last = IsTerminal(job.record.state);
  for (auto it = watchers_.begin(); it != watchers_.end();) {
    if (it->second.job_id != job.record.id) {
      ++it;
      continue;
    }
    it->second.fn(job.record);
    it = last ? watchers_.erase(it) : std::next(it);
  }
}

}  // namespace baq::coordinator

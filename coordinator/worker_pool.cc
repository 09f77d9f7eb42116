#include "coordinator/worker_pool.h"

#include <algorithm>
#include <iostream>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"

namespace baq::coordinator {

WorkerPool::WorkerPool(WorkerRegistry* registry, WorkerPoolOptions options)
    : registry_(registry), options_(std::move(options)) {
  watchdog_ = std::thread([this] { WatchdogLoop(); });
}

WorkerPool::~WorkerPool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  watchdog_.join();
}

void WorkerPool::WatchdogLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
      mu_.AwaitWithTimeout(absl::Condition(&stop), options_.lease_check_interval);
      if (stopping_) return;
    }
    CheckLeases();
  }
}

void WorkerPool::CheckLeases() {
  // Outside mu_: the registry evaluates expiry on this call.
  std::map<std::string, int64_t> live;
  for (const WorkerInfo& w : registry_->LiveWorkers()) live[w.worker_id] = w.epoch;
  absl::MutexLock lock(&mu_);
  for (auto it = fences_.begin(); it != fences_.end();) {
    const LeaseFence& fence = *it->second;
    auto l = live.find(fence.worker_id());
    std::string reason;
    if (l == live.end()) {
      reason = "lease expired: no heartbeat within the lease ttl";
    } else if (l->second != fence.epoch()) {
      reason = absl::StrCat("re-registered as epoch ", l->second);
    }
    if (reason.empty()) {
      ++it;
      continue;
    }
    std::cerr << "baq-coordinator: worker " << fence.worker_id() << " epoch " << fence.epoch()
              << ": " << reason << "; aborting its calls, discarding its results" << std::endl;
    it->second->Revoke(reason);
    it = fences_.erase(it);
  }
}

std::shared_ptr<LeaseFence> WorkerPool::FenceFor(const WorkerInfo& worker) {
  std::shared_ptr<LeaseFence>& fence = fences_[worker.worker_id];
  if (fence != nullptr && fence->epoch() != worker.epoch) {
    fence->Revoke(absl::StrCat("re-registered as epoch ", worker.epoch));
    fence = nullptr;
  }
  if (fence == nullptr) fence = std::make_shared<LeaseFence>(worker.worker_id, worker.epoch);
  return fence;
}

std::shared_ptr<grpc::Channel> WorkerPool::ChannelFor(const std::string& address) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<grpc::Channel>& channel = channels_[address];
  if (channel == nullptr) {
    channel = options_.channel_credentials != nullptr
                  ? MakeWorkerChannel(address, options_.channel_credentials)
                  : MakeWorkerChannel(address);
  }
  return channel;
}

absl::StatusOr<std::vector<std::unique_ptr<BlockEngine>>> WorkerPool::EnginesForJob(
    const std::string& job_id) {
  std::vector<WorkerInfo> workers =
      registry_->AwaitWorkers(options_.min_workers, options_.worker_wait);
  if (workers.size() < options_.min_workers) {
    return absl::UnavailableError(absl::StrCat(workers.size(), " live worker(s) after waiting ",
                                               absl::FormatDuration(options_.worker_wait),
                                               "; need ", options_.min_workers,
                                               " (start baq-worker --coordinator ...)"));
  }
  // Least busy first: a job whose calibration set is one shard runs on its
  // first engine (coordinator/resident_shards.h), so concurrent small jobs
  // spread over the workers, and a worker that just joined takes the next job.
  {
    absl::MutexLock lock(&mu_);
    std::map<std::string, int> jobs_on;
    for (const auto& [job, given] : handed_out_) {
      auto c = cancellers_.find(job);
      if (c == cancellers_.end() || c->second.expired()) continue;
      for (const auto& [worker_id, epoch] : given) ++jobs_on[worker_id];
    }
    std::stable_sort(workers.begin(), workers.end(),
                     [&jobs_on](const WorkerInfo& a, const WorkerInfo& b) {
                       return jobs_on[a.worker_id] < jobs_on[b.worker_id];
                     });
  }
  return MakeEngines(job_id, workers, /*first=*/true);
}

absl::StatusOr<std::vector<std::unique_ptr<BlockEngine>>> WorkerPool::NewEnginesForJob(
    const std::string& job_id) {
  std::vector<WorkerInfo> fresh;
  const std::vector<WorkerInfo> live = registry_->LiveWorkers();
  {
    absl::MutexLock lock(&mu_);
    const auto& given = handed_out_[job_id];
    for (const WorkerInfo& w : live) {
      if (given.count({w.worker_id, w.epoch}) == 0) fresh.push_back(w);
    }
  }
  return MakeEngines(job_id, fresh, /*first=*/false);
}

std::vector<std::unique_ptr<BlockEngine>> WorkerPool::MakeEngines(
    const std::string& job_id, const std::vector<WorkerInfo>& workers, bool first) {
  std::shared_ptr<CallCanceller> canceller;
  std::vector<std::shared_ptr<LeaseFence>> fences;
  {
    absl::MutexLock lock(&mu_);
    if (!first) canceller = cancellers_[job_id].lock();
    if (canceller == nullptr) {
      canceller = std::make_shared<CallCanceller>();
      if (aborted_) canceller->CancelAll();
      // Forget jobs whose engines are gone.
      for (auto it = cancellers_.begin(); it != cancellers_.end();) {
        if (it->second.expired()) {
          handed_out_.erase(it->first);
          it = cancellers_.erase(it);
        } else {
          ++it;
        }
      }
      cancellers_[job_id] = canceller;
    }
    auto& given = handed_out_[job_id];
    if (first) given.clear();
    for (const WorkerInfo& w : workers) {
      given.insert({w.worker_id, w.epoch});
      fences.push_back(FenceFor(w));
    }
  }
  std::vector<std::unique_ptr<BlockEngine>> engines;
  for (size_t i = 0; i < workers.size(); ++i) {
    const WorkerInfo& w = workers[i];
    std::shared_ptr<grpc::Channel> channel = ChannelFor(w.address);
    for (size_t d = 0; d < w.devices.size(); ++d) {
      engines.push_back(std::make_unique<RemoteBlockEngine>(
          channel, absl::StrCat(w.worker_id, "@", w.address, " epoch ", w.epoch), job_id,
          static_cast<int>(d), options_.engine, canceller, fences[i]));
    }
  }
  return engines;
}

MoreEnginesFn WorkerPool::MoreEnginesFor(const std::string& job_id) {
  return [this, job_id] { return NewEnginesForJob(job_id); };
}

void WorkerPool::AbortAll() {
  absl::MutexLock lock(&mu_);
  aborted_ = true;
  for (auto& [id, weak] : cancellers_) {
    if (std::shared_ptr<CallCanceller> c = weak.lock()) c->CancelAll();
  }
}

EngineProvider WorkerPool::AsProvider() {
  return [this](const std::string& job_id) { return EnginesForJob(job_id); };
}

}  // namespace baq::coordinator

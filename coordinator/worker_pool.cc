#include "coordinator/worker_pool.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace baq::coordinator {

WorkerPool::WorkerPool(WorkerRegistry* registry, WorkerPoolOptions options)
    : registry_(registry), options_(std::move(options)) {}

std::shared_ptr<grpc::Channel> WorkerPool::ChannelFor(const std::string& address) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<grpc::Channel>& channel = channels_[address];
  if (channel == nullptr) channel = MakeWorkerChannel(address);
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
  auto canceller = std::make_shared<CallCanceller>();
  {
    absl::MutexLock lock(&mu_);
    if (aborted_) canceller->CancelAll();
    // Forget jobs whose engines are gone.
    for (auto it = cancellers_.begin(); it != cancellers_.end();) {
      it = it->second.expired() ? cancellers_.erase(it) : std::next(it);
    }
    cancellers_[job_id] = canceller;
  }
  std::vector<std::unique_ptr<BlockEngine>> engines;
  for (const WorkerInfo& w : workers) {
    std::shared_ptr<grpc::Channel> channel = ChannelFor(w.address);
    for (size_t d = 0; d < w.devices.size(); ++d) {
      engines.push_back(std::make_unique<RemoteBlockEngine>(
          channel, absl::StrCat(w.worker_id, "@", w.address), job_id, static_cast<int>(d),
          options_.engine, canceller));
    }
  }
  return engines;
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

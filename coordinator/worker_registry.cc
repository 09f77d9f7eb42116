#include "coordinator/worker_registry.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace baq::coordinator {

WorkerRegistry::WorkerRegistry(WorkerRegistryOptions options) : options_(std::move(options)) {
  // Epochs start at the registry's start time in microseconds, so a
  // restarted coordinator never hands out an epoch an earlier incarnation
  // did: a worker still heartbeating an old lease is fenced and re-registers
  // even though worker ids (w001, ...) start over.
  absl::MutexLock lock(&mu_);
  next_epoch_ = std::max<int64_t>(1, absl::ToUnixMicros(options_.now()));
}

absl::StatusOr<WorkerLease> WorkerRegistry::Register(const std::string& address,
                                                     std::vector<std::string> devices,
                                                     int64_t memory_bytes) {
  if (address.empty()) return absl::InvalidArgumentError("worker address is empty");
  if (devices.empty()) return absl::InvalidArgumentError("worker has no devices");
  WorkerLease lease;
  {
    absl::MutexLock lock(&mu_);
    ExpireLocked();
    auto [it, inserted] = id_by_address_.try_emplace(address);
    if (inserted) it->second = absl::StrFormat("w%03d", id_by_address_.size());
    const absl::Time now = options_.now();
    WorkerInfo& info = workers_[it->second];
    info.worker_id = it->second;
    // Epochs are global, not per worker, so they never repeat across ids.
    info.epoch = next_epoch_++;
    info.address = address;
    info.devices = std::move(devices);
    info.memory_bytes = memory_bytes;
    info.registered = now;
    info.expires = now + options_.lease_ttl;
    lease = WorkerLease{info.worker_id, info.epoch, options_.lease_ttl};
  }
  NotifyChange();
  return lease;
}

absl::Status WorkerRegistry::Heartbeat(const std::string& worker_id, int64_t epoch) {
  absl::Status status;
  bool changed = false;
  {
    absl::MutexLock lock(&mu_);
    changed = ExpireLocked();
    auto it = workers_.find(worker_id);
    if (it == workers_.end()) {
      status = absl::NotFoundError(
          absl::StrCat("worker ", worker_id, " is not registered or its lease expired"));
    } else if (it->second.epoch != epoch) {
      status = absl::FailedPreconditionError(absl::StrCat(
          "worker ", worker_id, " epoch ", epoch, " is stale (current ", it->second.epoch, ")"));
    } else {
      it->second.expires = options_.now() + options_.lease_ttl;
    }
  }
  if (changed) NotifyChange();
  return status;
}

std::vector<WorkerInfo> WorkerRegistry::LiveWorkers() {
  std::vector<WorkerInfo> live;
  bool changed = false;
  {
    absl::MutexLock lock(&mu_);
    changed = ExpireLocked();
    for (const auto& [id, info] : workers_) live.push_back(info);
  }
  if (changed) NotifyChange();
  return live;
}

std::vector<WorkerInfo> WorkerRegistry::AwaitWorkers(size_t n, absl::Duration timeout) {
  {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return workers_.size() >= n; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  return LiveWorkers();
}

void WorkerRegistry::SetOnChange(std::function<void(size_t)> fn) {
  absl::MutexLock lock(&mu_);
  on_change_ = std::move(fn);
}

bool WorkerRegistry::ExpireLocked() {
  const absl::Time now = options_.now();
  bool changed = false;
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (it->second.expires <= now) {
      it = workers_.erase(it);
      changed = true;
    } else {
      ++it;
    }
  }
  return changed;
}

void WorkerRegistry::NotifyChange() {
  std::function<void(size_t)> fn;
  size_t live = 0;
  {
    absl::MutexLock lock(&mu_);
    fn = on_change_;
    live = workers_.size();
  }
  if (fn) fn(live);
}

}  // namespace baq::coordinator

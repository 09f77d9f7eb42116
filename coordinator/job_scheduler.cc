#include "coordinator/job_scheduler.h"

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <tuple>
#include <utility>

namespace baq::coordinator {

void JobScheduler::Enqueue(SchedulableJob job) {
  queued_.push_back(Queued{std::move(job), next_seq_++});
}

bool JobScheduler::Dequeue(const std::string& id) {
  for (auto it = queued_.begin(); it != queued_.end(); ++it) {
    if (it->job.id == id) {
      queued_.erase(it);
      return true;
    }
  }
  return false;
}

size_t JobScheduler::Best(const std::vector<Queued>& queued,
                          const std::map<std::string, TenantState>& tenants) {
  auto key = [&](const Queued& q) {
    auto it = tenants.find(q.job.tenant);
    const TenantState t = it == tenants.end() ? TenantState{} : it->second;
    // Smaller is better.
    return std::make_tuple(-q.job.priority, t.running, t.last_service, q.seq);
  };
  size_t best = 0;
  for (size_t i = 1; i < queued.size(); ++i) {
    if (key(queued[i]) < key(queued[best])) best = i;
  }
  return best;
}

std::optional<std::string> JobScheduler::Next(int64_t memory_capacity) const {
  if (queued_.empty() || static_cast<int>(running_.size()) >= max_running_) return std::nullopt;
  const Queued& q = queued_[Best(queued_, tenants_)];
  if (!running_.empty() && memory_capacity > 0 && q.job.memory_bytes > 0 &&
      running_memory_bytes() + q.job.memory_bytes > memory_capacity) {
    return std::nullopt;  // Wait for memory; nothing overtakes it.
  }
  return q.job.id;
}

void JobScheduler::Start(const std::string& id) {
  for (auto it = queued_.begin(); it != queued_.end(); ++it) {
    if (it->job.id != id) continue;
    TenantState& t = tenants_[it->job.tenant];
    ++t.running;
    t.last_service = service_counter_;
    running_[id] = Running{std::move(it->job), service_counter_++};
    queued_.erase(it);
    return;
  }
  // A broken caller invariant (R14): crash rather than run a job twice.
  std::cerr << "JobScheduler::Start: job " << id << " is not queued\n";
  std::abort();
}

void JobScheduler::AddRunning(SchedulableJob job) {
  TenantState& t = tenants_[job.tenant];
  ++t.running;
  t.last_service = service_counter_;
  const std::string id = job.id;
  running_[id] = Running{std::move(job), service_counter_++};
}

void JobScheduler::Finish(const std::string& id) {
  auto it = running_.find(id);
  if (it == running_.end()) return;
  --tenants_[it->second.job.tenant].running;
  running_.erase(it);
}

int64_t JobScheduler::running_memory_bytes() const {
  int64_t sum = 0;
  for (const auto& [id, r] : running_) sum += r.job.memory_bytes;
  return sum;
}

std::vector<std::string> JobScheduler::QueueOrder() const {
  std::vector<Queued> queued = queued_;
  std::map<std::string, TenantState> tenants = tenants_;
  int64_t service = service_counter_;
  // (start sequence, tenant) of the running jobs, oldest first.
  std::deque<std::pair<int64_t, std::string>> running;
  for (const auto& [id, r] : running_) running.emplace_back(r.start_seq, r.job.tenant);
  std::sort(running.begin(), running.end());
  std::vector<std::string> order;
  order.reserve(queued.size());
  while (!queued.empty()) {
    if (static_cast<int>(running.size()) >= max_running_ && !running.empty()) {
      --tenants[running.front().second].running;  // The oldest finishes first.
      running.pop_front();
    }
    const size_t i = Best(queued, tenants);
    TenantState& t = tenants[queued[i].job.tenant];
    ++t.running;
    t.last_service = service;
    running.emplace_back(service++, queued[i].job.tenant);
    order.push_back(queued[i].job.id);
    queued.erase(queued.begin() + static_cast<std::ptrdiff_t>(i));
  }
  return order;
}

std::map<std::string, std::pair<int, absl::Duration>> JobScheduler::QueueEtas(
    std::vector<absl::Duration> running_etas, absl::Duration mean) const {
  // When each slot frees up, from now.
  std::vector<absl::Duration> slots = std::move(running_etas);
  while (slots.size() < static_cast<size_t>(max_running_)) slots.push_back(absl::ZeroDuration());
  std::map<std::string, std::pair<int, absl::Duration>> view;
  int position = 0;
  for (const std::string& id : QueueOrder()) {
    auto earliest = std::min_element(slots.begin(), slots.end());
    const absl::Duration finish = *earliest + mean;  // Infinite stays infinite.
    *earliest = finish;
    view[id] = {position++, finish};
  }
  return view;
}

}  // namespace baq::coordinator

#include "worker/service/device_executor.h"

#include <utility>

namespace baq::worker {

DeviceExecutor::DeviceExecutor(std::string device, WorkerMetrics* metrics)
    : device_(std::move(device)), metrics_(metrics), thread_([this] { Loop(); }) {}

DeviceExecutor::~DeviceExecutor() { Stop(); }

bool DeviceExecutor::Post(Task task) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return false;
  queue_.push_back(std::move(task));
  if (metrics_ != nullptr) metrics_->queued_tasks(device_).Set(queue_.size());
  return true;
}

void DeviceExecutor::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void DeviceExecutor::Loop() {
  while (true) {
    Task task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](DeviceExecutor* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->stopping_ || !self->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // Stopping and drained.
      task = std::move(queue_.front());
      queue_.pop_front();
      if (metrics_ != nullptr) metrics_->queued_tasks(device_).Set(queue_.size());
    }
    if (metrics_ != nullptr) metrics_->busy(device_).Set(1);
    task();
    if (metrics_ != nullptr) metrics_->busy(device_).Set(0);
  }
}

}  // namespace baq::worker

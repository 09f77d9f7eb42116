// worker/service/device_executor.h
//
// DeviceExecutor: one thread and a FIFO queue that own one device (STYLE
// R19). Everything that touches the device — creating engines, running
// blocks, freeing them — is posted here, so gRPC threads never block and
// LibTorch work on a device is serialized like one CUDA stream.
//
// Post() is thread-safe. Stop() runs the tasks already queued, then joins the
// thread; Post() after Stop() drops the task and returns false, so the owner
// stops posting first (WorkerServer shuts the gRPC server down, letting
// in-flight RPCs finish, before it stops the executors).
//
// Example:
//   DeviceExecutor executor("cuda:0", &metrics);
//   executor.Post([&] { engine->Measure(3); });
//   executor.Stop();  // also done by the destructor
#ifndef BAQ_WORKER_SERVICE_DEVICE_EXECUTOR_H_
#define BAQ_WORKER_SERVICE_DEVICE_EXECUTOR_H_

#include <deque>
#include <functional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "worker/service/worker_metrics.h"

namespace baq::worker {

class DeviceExecutor {
 public:
  using Task = std::function<void()>;

  // `metrics` may be null; not owned, must outlive *this.
  DeviceExecutor(std::string device, WorkerMetrics* metrics);
  ~DeviceExecutor();  // Stop().

  DeviceExecutor(const DeviceExecutor&) = delete;
  DeviceExecutor& operator=(const DeviceExecutor&) = delete;

  // Queues `task` to run on the executor thread, after every task posted
  // before it. Returns false (and drops the task) after Stop().
  bool Post(Task task) ABSL_LOCKS_EXCLUDED(mu_);

  // Runs what is queued, then joins the thread. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  const std::string& device() const { return device_; }

 private:
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);

  // Constant after construction.
  const std::string device_;
  WorkerMetrics* const metrics_;  // Nullable; not owned.

  absl::Mutex mu_;
  std::deque<Task> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  // Last: started after everything above is initialized.
  std::thread thread_;
};

}  // namespace baq::worker

#endif  // BAQ_WORKER_SERVICE_DEVICE_EXECUTOR_H_

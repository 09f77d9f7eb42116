// worker/service/engine_host.h
//
// EngineHost: the worker's core, free of gRPC. It owns one DeviceExecutor per
// device and, on each executor, that device's BlockEngines keyed by job id.
// Engines are created by an injected factory (MakeTorchBlockEngine in the
// daemon, a fake in tests), are touched only on their device's thread and
// are destroyed there too (a CUDA engine frees memory on its own device).
//
// Calls are asynchronous: each takes a completion callback that runs exactly
// once, on the device's executor thread — or inline on the caller's thread
// for an immediate error (bad device index, host stopping). The service
// layer (worker_service.cc) finishes its RPC reactors from those callbacks.
//
// Cancellation: ResetJob (and CancelJob) reach an engine from any thread
// through BlockEngine::Cancel(), so a block in progress stops between layers
// or calibration windows instead of running to its end; the engine is then
// Reset and destroyed on its executor, which frees its memory.
//
// Thread-safe.
//
// Example:
//   EngineHost host({"cuda:0", "cuda:1"}, factory, &metrics);
//   host.StartJob("job-1", /*device=*/1, config, [](absl::StatusOr<int64_t> n) { ... });
//   host.WithEngine("job-1", 1, [](absl::StatusOr<BlockEngine*> e) {
//     if (e.ok()) (*e)->Measure(0);
//   });
#ifndef BAQ_WORKER_SERVICE_ENGINE_HOST_H_
#define BAQ_WORKER_SERVICE_ENGINE_HOST_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/block_engine.h"
#include "absl/synchronization/mutex.h"
#include "common/job_config.h"
#include "worker/service/device_executor.h"
#include "worker/service/worker_metrics.h"

namespace baq::worker {

// Makes the engine of one job on `device` ("cpu", "cuda:0").
using EngineFactory =
    std::function<absl::StatusOr<std::unique_ptr<BlockEngine>>(const std::string& device)>;

class EngineHost {
 public:
  // REQUIRES: `devices` non-empty, `factory` set. `metrics` may be null; not
  // owned, must outlive *this.
  EngineHost(std::vector<std::string> devices, EngineFactory factory, WorkerMetrics* metrics);
  ~EngineHost();  // Stop().

  EngineHost(const EngineHost&) = delete;
  EngineHost& operator=(const EngineHost&) = delete;

  const std::vector<std::string>& devices() const { return devices_; }

  // Creates the job's engine on `device` (replacing an existing one, so a
  // coordinator may retry) and runs BlockEngine::Start. `done` gets
  // num_blocks(); on failure the engine is dropped.
  void StartJob(const std::string& job_id, int device, JobConfig config,
                std::function<void(absl::StatusOr<int64_t>)> done);

  // Runs `fn` on the device's executor with the job's engine (valid only
  // during `fn`), or with NotFound if the job has no engine there.
  void WithEngine(const std::string& job_id, int device,
                  std::function<void(absl::StatusOr<BlockEngine*>)> fn);

  // Cancels the job's work on `device` (CancelJob), then resets and drops
  // its engine on the executor; OK if there is none. `done` runs once the
  // engine is gone.
  void ResetJob(const std::string& job_id, int device, std::function<void(absl::Status)> done);

  // Returns at once: makes the job's call in progress on `device`, and its
  // later calls there, return Cancelled soon; a StartJob of the job on that
  // device fails Cancelled (creates no engine) until a ResetJob has run.
  // The engine stays until ResetJob drops it. Unknown device: no-op.
  void CancelJob(const std::string& job_id, int device) ABSL_LOCKS_EXCLUDED(live_mu_);

  // Engines that exist (starting or started), over all devices.
  size_t num_engines() const ABSL_LOCKS_EXCLUDED(live_mu_);

  // Drops every engine on its own thread, then stops the executors.
  // Idempotent. REQUIRES: no more calls after it (later ones get Unavailable).
  void Stop();

 private:
  struct Device {
    int index = 0;
    std::unique_ptr<DeviceExecutor> executor;
    // Touched only on `executor`'s thread.
    absl::flat_hash_map<std::string, std::unique_ptr<BlockEngine>> engines;
  };

  // Posts `task` to the device's executor; on a bad index or after Stop(),
  // runs `fail` inline with the reason instead.
  void Run(int device, std::function<void(Device&)> task,
           const std::function<void(absl::Status)>& fail);
  void DropEngine(Device& d, const std::string& job_id);
  // On the executor: makes a new engine reachable by CancelJob; Cancelled
  // if a ResetJob asked before the engine existed.
  absl::Status Register(const Device& d, const std::string& job_id, BlockEngine* engine)
      ABSL_LOCKS_EXCLUDED(live_mu_);
  void Unregister(const Device& d, const std::string& job_id) ABSL_LOCKS_EXCLUDED(live_mu_);

  // Constant after construction.
  const std::vector<std::string> devices_;
  const EngineFactory factory_;
  WorkerMetrics* const metrics_;  // Nullable; not owned.
  // One per entry of devices_; the vector itself never changes.
  std::vector<std::unique_ptr<Device>> device_state_;

  // What CancelJob reaches from other threads. An engine is in `live_` from
  // before its Start() until before it is destroyed, so a pointer read under
  // the lock is valid while the lock is held.
  mutable absl::Mutex live_mu_;
  absl::flat_hash_map<std::pair<int, std::string>, BlockEngine*> live_ ABSL_GUARDED_BY(live_mu_);
  // (device, job) pairs cancelled by a ResetJob whose drop has not run yet:
  // a StartJob queued before that drop does not start an engine.
  absl::flat_hash_set<std::pair<int, std::string>> cancelled_ ABSL_GUARDED_BY(live_mu_);
};

}  // namespace baq::worker

#endif  // BAQ_WORKER_SERVICE_ENGINE_HOST_H_

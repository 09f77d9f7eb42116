// worker/engine_host.h
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
// Thread-safe.
//
// Example:
//   EngineHost host({"cuda:0", "cuda:1"}, factory, &metrics);
//   host.StartJob("job-1", /*device=*/1, config, [](absl::StatusOr<int64_t> n) { ... });
//   host.WithEngine("job-1", 1, [](absl::StatusOr<BlockEngine*> e) {
//     if (e.ok()) (*e)->Measure(0);
//   });
#ifndef BAQ_WORKER_ENGINE_HOST_H_
#define BAQ_WORKER_ENGINE_HOST_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/block_engine.h"
#include "common/job_config.h"
#include "worker/device_executor.h"
#include "worker/worker_metrics.h"

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

  // Resets and drops the job's engine; OK if there is none.
  void ResetJob(const std::string& job_id, int device, std::function<void(absl::Status)> done);

  // Drops every engine on its own thread, then stops the executors.
  // Idempotent. REQUIRES: no more calls after it (later ones get Unavailable).
  void Stop();

 private:
  struct Device {
    std::unique_ptr<DeviceExecutor> executor;
    // Touched only on `executor`'s thread.
    absl::flat_hash_map<std::string, std::unique_ptr<BlockEngine>> engines;
  };

  // Posts `task` to the device's executor; on a bad index or after Stop(),
  // runs `fail` inline with the reason instead.
  void Run(int device, std::function<void(Device&)> task,
           const std::function<void(absl::Status)>& fail);
  void DropEngine(Device& d, const std::string& job_id);

  // Constant after construction.
  const std::vector<std::string> devices_;
  const EngineFactory factory_;
  WorkerMetrics* const metrics_;  // Nullable; not owned.
  // One per entry of devices_; the vector itself never changes.
  std::vector<std::unique_ptr<Device>> device_state_;
};

}  // namespace baq::worker

#endif  // BAQ_WORKER_ENGINE_HOST_H_

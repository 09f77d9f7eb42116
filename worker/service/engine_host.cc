#include "worker/service/engine_host.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/trace_recorder.h"

namespace baq::worker {

EngineHost::EngineHost(std::vector<std::string> devices, EngineFactory factory,
                       WorkerMetrics* metrics)
    : devices_(std::move(devices)), factory_(std::move(factory)), metrics_(metrics) {
  for (const std::string& device : devices_) {
    auto d = std::make_unique<Device>();
    d->index = static_cast<int>(device_state_.size());
    d->executor = std::make_unique<DeviceExecutor>(device, metrics_);
    device_state_.push_back(std::move(d));
  }
}

EngineHost::~EngineHost() { Stop(); }

void EngineHost::Run(int device, std::function<void(Device&)> task,
                     const std::function<void(absl::Status)>& fail) {
  if (device < 0 || static_cast<size_t>(device) >= device_state_.size()) {
    fail(absl::InvalidArgumentError(absl::StrCat("device_index ", device,
                                                 " out of range: this worker has ", devices_.size(),
                                                 " device(s)")));
    return;
  }
  Device* d = device_state_[device].get();
  if (!d->executor->Post([d, task = std::move(task)] { task(*d); })) {
    fail(absl::UnavailableError("worker is shutting down"));
  }
}

absl::Status EngineHost::Register(const Device& d, const std::string& job_id,
                                  BlockEngine* engine) {
  absl::MutexLock lock(&live_mu_);
  if (cancelled_.contains({d.index, job_id})) {
    return absl::CancelledError(
        absl::StrCat("job ", job_id, " on ", d.executor->device(), " was cancelled"));
  }
  live_[{d.index, job_id}] = engine;
  return absl::OkStatus();
}

void EngineHost::Unregister(const Device& d, const std::string& job_id) {
  absl::MutexLock lock(&live_mu_);
  live_.erase({d.index, job_id});
}

void EngineHost::CancelJob(const std::string& job_id, int device) {
  if (device < 0 || static_cast<size_t>(device) >= device_state_.size()) return;
  absl::MutexLock lock(&live_mu_);
  cancelled_.insert({device, job_id});
  auto it = live_.find({device, job_id});
  if (it != live_.end()) it->second->Cancel();
}

size_t EngineHost::num_engines() const {
  absl::MutexLock lock(&live_mu_);
  return live_.size();
}

void EngineHost::DropEngine(Device& d, const std::string& job_id) {
  auto it = d.engines.find(job_id);
  if (it == d.engines.end()) return;
  Unregister(d, job_id);
  it->second->Reset();
  d.engines.erase(it);
  if (metrics_ != nullptr) metrics_->engines().Decrement();
}

void EngineHost::StartJob(const std::string& job_id, int device, JobConfig config,
                          std::function<void(absl::StatusOr<int64_t>)> done) {
  auto fail = [done](absl::Status s) { done(std::move(s)); };
  Run(
      device,
      [this, job_id, config = std::move(config), done](Device& d) {
        BAQ_TRACE_SCOPE("rpc", "StartJob");
        DropEngine(d, job_id);
        absl::StatusOr<std::unique_ptr<BlockEngine>> engine = factory_(d.executor->device());
        if (!engine.ok()) {
          done(engine.status());
          return;
        }
        if (absl::Status s = Register(d, job_id, engine->get()); !s.ok()) {
          done(s);
          return;
        }
        if (absl::Status s = (*engine)->Start(config); !s.ok()) {
          Unregister(d, job_id);
          (*engine)->Reset();
          done(s);
          return;
        }
        const int64_t num_blocks = (*engine)->num_blocks();
        d.engines[job_id] = *std::move(engine);
        if (metrics_ != nullptr) metrics_->engines().Increment();
        done(num_blocks);
      },
      fail);
}

void EngineHost::WithEngine(const std::string& job_id, int device,
                            std::function<void(absl::StatusOr<BlockEngine*>)> fn) {
  auto fail = [fn](absl::Status s) { fn(std::move(s)); };
  Run(
      device,
      [job_id, fn](Device& d) {
        auto it = d.engines.find(job_id);
        if (it == d.engines.end()) {
          fn(absl::NotFoundError(absl::StrCat("job ", job_id, " has no engine on ",
                                              d.executor->device(),
                                              " (not started, reset, or worker restarted)")));
          return;
        }
        fn(it->second.get());
      },
      fail);
}

void EngineHost::ResetJob(const std::string& job_id, int device,
                          std::function<void(absl::Status)> done) {
  CancelJob(job_id, device);
  Run(
      device,
      [this, job_id, done](Device& d) {
        DropEngine(d, job_id);
        {
          absl::MutexLock lock(&live_mu_);
          cancelled_.erase({d.index, job_id});
        }
        done(absl::OkStatus());
      },
      done);
}

void EngineHost::Stop() {
  for (auto& d : device_state_) {
    Device* device = d.get();
    device->executor->Post([this, device] {
      while (!device->engines.empty()) {
        const std::string job_id = device->engines.begin()->first;
        DropEngine(*device, job_id);
      }
    });
    device->executor->Stop();
  }
}

}  // namespace baq::worker

// daemon/daemon.h
//
// What baq-coordinator and baq-worker share around their wiring: stop-signal
// handling and the Prometheus /metrics endpoint (both thin main.cc files use
// it; libraries do not).
//
// StopSignals blocks SIGTERM and SIGINT in the constructing thread, so every
// thread started afterwards inherits the mask and Wait() in the main thread
// is the only place they arrive: nothing runs in a signal handler. Construct
// it first in main(), before any thread starts. Thread-compatible.
//
// StartMetricsEndpoint serves a registry over HTTP with prometheus-cpp's
// Exposer (civetweb), turning its bind failure (an exception) into a Status,
// and adds the process metrics (daemon/process_metrics.h) to every scrape.
// MetricsEndpoint owns the Exposer and the collectors it serves besides the
// registry (the Exposer holds only weak references): a daemon adds its own
// scrape-time collectors (the worker's GPU readings, the coordinator's data
// dir) with Add(). Thread-safe as the Exposer is (it locks its collectables).
//
// Example:
//   baq::daemon::StopSignals stop;
//   auto registry = std::make_shared<prometheus::Registry>();
//   BAQ_ASSIGN_OR_RETURN(auto endpoint, StartMetricsEndpoint("0.0.0.0:9400", registry));
//   endpoint->Add(std::make_shared<MyCollector>());
//   ... start servers ...
//   int signal = stop.Wait();
#ifndef BAQ_DAEMON_DAEMON_H_
#define BAQ_DAEMON_DAEMON_H_

#include <prometheus/exposer.h>
#include <prometheus/registry.h>
#include <signal.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace baq::daemon {

class StopSignals {
 public:
  StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // Blocks until SIGTERM or SIGINT arrives; returns the signal number.
  int Wait();

 private:
  sigset_t signals_;
};

class MetricsEndpoint {
 public:
  explicit MetricsEndpoint(std::unique_ptr<prometheus::Exposer> exposer)
      : exposer_(std::move(exposer)) {}
  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  // Serves `collectable` at /metrics too, for the endpoint's lifetime.
  void Add(std::shared_ptr<prometheus::Collectable> collectable);
  // The bound ports (one per address; port 0 resolved).
  std::vector<int> GetListeningPorts() const { return exposer_->GetListeningPorts(); }

 private:
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::vector<std::shared_ptr<prometheus::Collectable>> owned_;
};

// An endpoint serving `registry` and the process metrics at /metrics on `address` (HOST:PORT; port 0
// picks a free one, see Exposer::GetListeningPorts). Unavailable, naming
// the address, when it cannot be bound.
absl::StatusOr<std::unique_ptr<MetricsEndpoint>> StartMetricsEndpoint(
    const std::string& address, std::shared_ptr<prometheus::Registry> registry);

}  // namespace baq::daemon

#endif  // BAQ_DAEMON_DAEMON_H_

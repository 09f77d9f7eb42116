#include "daemon/daemon.h"

#include <pthread.h>

#include <exception>

#include "absl/strings/str_cat.h"
#include "daemon/process_metrics.h"

namespace baq::daemon {

StopSignals::StopSignals() {
  sigemptyset(&signals_);
  sigaddset(&signals_, SIGTERM);
  sigaddset(&signals_, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
}

int StopSignals::Wait() {
  int signal = 0;
  sigwait(&signals_, &signal);
  return signal;
}

void MetricsEndpoint::Add(std::shared_ptr<prometheus::Collectable> collectable) {
  exposer_->RegisterCollectable(collectable);
  owned_.push_back(std::move(collectable));
}

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> StartMetricsEndpoint(
    const std::string& address, std::shared_ptr<prometheus::Registry> registry) {
  try {  // civetweb reports a failed bind by throwing.
    auto endpoint = std::make_unique<MetricsEndpoint>(std::make_unique<prometheus::Exposer>(address));
    endpoint->Add(std::move(registry));
    endpoint->Add(std::make_shared<ProcessCollector>());
    return endpoint;
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", address, ": ", e.what()));
  }
}

}  // namespace baq::daemon

// tests/fakes/scrape_metrics.h
//
// ScrapeMetrics: serves a registry with a real prometheus::Exposer on an
// ephemeral loopback port and GETs /metrics once over HTTP, the way
// Prometheus sees it — the preamble every *_metrics_test shares. Header-only;
// the tests that include it link prometheus-cpp::pull. Thread-safe.
#ifndef BAQ_TESTS_FAKES_SCRAPE_METRICS_H_
#define BAQ_TESTS_FAKES_SCRAPE_METRICS_H_

#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "tests/fakes/http_get.h"

namespace baq::testing {

// The text exposition of `registry`; Internal when the Exposer binds no
// port, HttpGet's error when the request fails.
inline absl::StatusOr<std::string> ScrapeMetrics(std::shared_ptr<prometheus::Registry> registry) {
  prometheus::Exposer exposer("127.0.0.1:0");
  exposer.RegisterCollectable(registry);
  if (exposer.GetListeningPorts().size() != 1) {
    return absl::InternalError(
        absl::StrCat("exposer bound ", exposer.GetListeningPorts().size(), " ports, not 1"));
  }
  return HttpGet(exposer.GetListeningPorts()[0], "/metrics");
}

}  // namespace baq::testing

#endif  // BAQ_TESTS_FAKES_SCRAPE_METRICS_H_

// The daemons' shared plumbing: the /metrics endpoint over real HTTP, a
// clear error when its address cannot be bound, and stop signals delivered
// to Wait() only.
#include "daemon/daemon.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/metric_family.h>
#include <signal.h>

#include <thread>

#include "tests/fakes/http_get.h"

namespace baq::daemon {
namespace {

using ::testing::HasSubstr;

TEST(DaemonTest, MetricsEndpointServesTheRegistry) {
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::BuildCounter().Name("baq_test_total").Help("t").Register(*registry).Add({}).Increment(3);
  auto exposer = StartMetricsEndpoint("127.0.0.1:0", registry);
  ASSERT_TRUE(exposer.ok()) << exposer.status();
  ASSERT_EQ((*exposer)->GetListeningPorts().size(), 1u);
  auto body = baq::testing::HttpGet((*exposer)->GetListeningPorts()[0], "/metrics");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_THAT(*body, HasSubstr("baq_test_total 3"));
  // Every daemon's endpoint carries the process metrics (daemon/process_metrics.h).
  EXPECT_THAT(*body, HasSubstr("\nprocess_resident_memory_bytes "));
  EXPECT_THAT(*body, HasSubstr("\nbaq_process_peak_resident_memory_bytes "));
}

// A collector added to the endpoint is served, and kept alive by it.
class OneGauge : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    prometheus::ClientMetric m;
    m.gauge.value = 7;
    return {prometheus::MetricFamily{"baq_test_added", "t", prometheus::MetricType::Gauge, {m}}};
  }
};

TEST(DaemonTest, AddedCollectorsAreServed) {
  auto endpoint = StartMetricsEndpoint("127.0.0.1:0", std::make_shared<prometheus::Registry>());
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  (*endpoint)->Add(std::make_shared<OneGauge>());
  auto body = baq::testing::HttpGet((*endpoint)->GetListeningPorts()[0], "/metrics");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_THAT(*body, HasSubstr("baq_test_added 7"));
}

TEST(DaemonTest, MetricsEndpointOnATakenPortIsUnavailable) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto first = StartMetricsEndpoint("127.0.0.1:0", registry);
  ASSERT_TRUE(first.ok());
  const std::string taken = "127.0.0.1:" + std::to_string((*first)->GetListeningPorts()[0]);
  auto second = StartMetricsEndpoint(taken, registry);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(taken));
}

TEST(DaemonTest, StopSignalsReachWaitFromAnyThread) {
  StopSignals stop;  // Blocks SIGTERM here; the thread below inherits the mask.
  std::thread sender([] { kill(getpid(), SIGTERM); });  // Process-directed.
  EXPECT_EQ(stop.Wait(), SIGTERM);
  sender.join();
}

}  // namespace
}  // namespace baq::daemon

// CoordinatorMetrics scraped over HTTP from a real prometheus::Exposer on an
// ephemeral port, the way Prometheus sees them.
#include "coordinator/coordinator_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <memory>

#include "tests/fakes/scrape_metrics.h"

namespace baq::coordinator {
namespace {

using ::testing::HasSubstr;

TEST(CoordinatorMetricsTest, ExposesEveryMetricOverHttp) {
  auto registry = std::make_shared<prometheus::Registry>();
  CoordinatorMetrics metrics(*registry);
  metrics.RecordRpc("Submit", absl::OkStatus());
  metrics.RecordRpc("Get", absl::NotFoundError("no job"));
  metrics.jobs("running").Increment();
  metrics.jobs_submitted_total().Increment();
  metrics.workers().Set(2);
  metrics.job_progress_percent().Set(42.5);
  metrics.target_bits().Set(3);
  metrics.achieved_bits().Set(2.99);
  metrics.job_seconds().Observe(12);
  metrics.auth_failures_total("unknown_token").Increment();

  absl::StatusOr<std::string> body = baq::testing::ScrapeMetrics(registry);
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_THAT(*body, HasSubstr("baq_coordinator_rpcs_total{code=\"OK\",method=\"Submit\"} 1"));
  EXPECT_THAT(*body, HasSubstr("baq_coordinator_rpcs_total{code=\"NOT_FOUND\",method=\"Get\"} 1"));
  EXPECT_THAT(*body, HasSubstr("baq_coordinator_jobs{state=\"running\"} 1"));
  EXPECT_THAT(*body, HasSubstr("baq_coordinator_jobs{state=\"failed\"} 0"));
  EXPECT_THAT(*body, HasSubstr("baq_coordinator_jobs_submitted_total 1"));
  EXPECT_THAT(*body, HasSubstr("baq_coordinator_workers 2"));
  EXPECT_THAT(*body, HasSubstr("baq_coordinator_job_progress_percent 42.5"));
  EXPECT_THAT(*body, HasSubstr("baq_coordinator_target_bits 3"));
  EXPECT_THAT(*body, HasSubstr("baq_coordinator_achieved_bits 2.99"));
  EXPECT_THAT(*body, HasSubstr("baq_coordinator_job_seconds_count 1"));
  EXPECT_THAT(*body, HasSubstr("baq_coordinator_auth_failures_total{reason=\"unknown_token\"} 1"));
  EXPECT_THAT(*body, HasSubstr("baq_coordinator_auth_failures_total{reason=\"missing\"} 0"));
}

}  // namespace
}  // namespace baq::coordinator

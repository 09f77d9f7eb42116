// CoordinatorMetrics scraped over HTTP from a real prometheus::Exposer on an
// ephemeral port, the way Prometheus sees them.
#include "coordinator/coordinator_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

#include "tests/fakes/scrape_metrics.h"

namespace baq::coordinator {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

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

TEST(CoordinatorMetricsTest, PerJobSeriesAreLabelledJobId) {
  auto registry = std::make_shared<prometheus::Registry>();
  CoordinatorMetrics metrics(*registry);
  metrics.SetJobProgress("job-a", 3, 60, absl::Seconds(90));
  metrics.AddWireBytes("job-a", WireKind::kHessian, 1000);
  metrics.AddWireBytes("job-a", WireKind::kHessian, 24);
  metrics.AddWireBytes("job-a", WireKind::kWeights, 7);
  metrics.AddWorkerLoss("job-a");
  metrics.SetJobProgress("job-b", 0, 32, absl::InfiniteDuration());

  absl::StatusOr<std::string> body = baq::testing::ScrapeMetrics(registry);
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_THAT(*body, HasSubstr("baq_coordinator_job_blocks_done{job_id=\"job-a\"} 3"));
  EXPECT_THAT(*body, HasSubstr("baq_coordinator_job_blocks_total{job_id=\"job-a\"} 60"));
  EXPECT_THAT(*body, HasSubstr("baq_coordinator_job_eta_seconds{job_id=\"job-a\"} 90"));
  EXPECT_THAT(*body, HasSubstr("baq_coordinator_job_eta_seconds{job_id=\"job-b\"} Nan"));
  EXPECT_THAT(*body, HasSubstr(
      "baq_coordinator_job_wire_bytes_total{job_id=\"job-a\",kind=\"hessian\"} 1024"));
  EXPECT_THAT(*body, HasSubstr(
      "baq_coordinator_job_wire_bytes_total{job_id=\"job-a\",kind=\"weights\"} 7"));
  EXPECT_THAT(*body, HasSubstr("baq_coordinator_job_worker_losses_total{job_id=\"job-a\"} 1"));
  // Exported from the job's first progress, before any loss.
  EXPECT_THAT(*body, HasSubstr("baq_coordinator_job_worker_losses_total{job_id=\"job-b\"} 0"));
}

TEST(CoordinatorMetricsTest, FinishedJobsSeriesAreForgottenOldestFirst) {
  auto registry = std::make_shared<prometheus::Registry>();
  CoordinatorMetrics metrics(*registry);
  const size_t jobs = CoordinatorMetrics::kFinishedJobsKept + 2;
  for (size_t i = 0; i < jobs; ++i) {
    const std::string id = "job-" + std::to_string(i);
    metrics.SetJobProgress(id, 1, 1, absl::ZeroDuration());
    metrics.AddWireBytes(id, WireKind::kActivations, 5);
    metrics.FinishJob(id);
    metrics.FinishJob(id);  // Twice: counted once.
  }
  absl::StatusOr<std::string> body = baq::testing::ScrapeMetrics(registry);
  ASSERT_TRUE(body.ok()) << body.status();
  for (const char* gone : {"job-0", "job-1"}) {
    EXPECT_THAT(*body, Not(HasSubstr(absl::StrCat("job_id=\"", gone, "\""))));
  }
  for (size_t i = 2; i < jobs; ++i) {
    EXPECT_THAT(*body, HasSubstr(absl::StrCat("baq_coordinator_job_blocks_done{job_id=\"job-", i,
                                              "\"} 1")));
    EXPECT_THAT(*body, HasSubstr(absl::StrCat("job_id=\"job-", i, "\",kind=\"activations\"} 5")));
  }
}

}  // namespace
}  // namespace baq::coordinator

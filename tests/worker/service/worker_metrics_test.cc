// WorkerMetrics scraped over HTTP from a real prometheus::Exposer on an
// ephemeral port.
#include "worker/service/worker_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <memory>

#include "tests/fakes/scrape_metrics.h"

namespace baq::worker {
namespace {

using ::testing::HasSubstr;

TEST(WorkerMetricsTest, ExposesEveryMetricOverHttp) {
  auto registry = std::make_shared<prometheus::Registry>();
  WorkerMetrics metrics(*registry);
  metrics.RecordRpc("Measure", absl::OkStatus());
  metrics.RecordRpc("Quantize", absl::ResourceExhaustedError("oom"));
  metrics.RecordBlock("measure", 0.3);
  metrics.blocks_measured_total().Increment();
  metrics.blocks_quantized_total().Increment(2);
  metrics.busy("cuda:0").Set(1);
  metrics.queued_tasks("cuda:0").Set(3);
  metrics.engines().Set(1);
  metrics.bytes_sent_total().Increment(1024);

  absl::StatusOr<std::string> body = baq::testing::ScrapeMetrics(registry);
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_THAT(*body, HasSubstr("baq_worker_rpcs_total{code=\"OK\",method=\"Measure\"} 1"));
  EXPECT_THAT(
      *body, HasSubstr("baq_worker_rpcs_total{code=\"RESOURCE_EXHAUSTED\",method=\"Quantize\"} 1"));
  EXPECT_THAT(*body, HasSubstr("baq_worker_block_seconds_count{op=\"measure\"} 1"));
  EXPECT_THAT(*body, HasSubstr("baq_worker_blocks_measured_total 1"));
  EXPECT_THAT(*body, HasSubstr("baq_worker_blocks_quantized_total 2"));
  EXPECT_THAT(*body, HasSubstr("baq_worker_busy{device=\"cuda:0\"} 1"));
  EXPECT_THAT(*body, HasSubstr("baq_worker_queued_tasks{device=\"cuda:0\"} 3"));
  EXPECT_THAT(*body, HasSubstr("baq_worker_engines 1"));
  EXPECT_THAT(*body, HasSubstr("baq_worker_stream_bytes_total{direction=\"sent\"} 1024"));
}

}  // namespace
}  // namespace baq::worker

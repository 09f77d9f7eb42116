#include "worker/service/worker_metrics.h"

#include "absl/status/status.h"

namespace baq::worker {
namespace {

// Block wall times span milliseconds (fakes, tiny models) to tens of minutes
// (70B blocks on CPU).
const prometheus::Histogram::BucketBoundaries& BlockBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800};
  return *buckets;
}

}  // namespace

WorkerMetrics::WorkerMetrics(prometheus::Registry& registry)
    : rpcs_total_(prometheus::BuildCounter()
                      .Name("baq_worker_rpcs_total")
                      .Help("Worker RPCs finished, by method and gRPC code")
                      .Register(registry)),
      block_seconds_(prometheus::BuildHistogram()
                         .Name("baq_worker_block_seconds")
                         .Help("Wall time of one block's Measure or Quantize")
                         .Register(registry)),
      busy_(prometheus::BuildGauge()
                .Name("baq_worker_busy")
                .Help("1 while the device's executor runs a task")
                .Register(registry)),
      queued_tasks_(prometheus::BuildGauge()
                        .Name("baq_worker_queued_tasks")
                        .Help("Tasks waiting for the device's executor")
                        .Register(registry)) {
  blocks_measured_total_ = &prometheus::BuildCounter()
                                .Name("baq_worker_blocks_measured_total")
                                .Help("Blocks measured")
                                .Register(registry)
                                .Add({});
  blocks_quantized_total_ = &prometheus::BuildCounter()
                                 .Name("baq_worker_blocks_quantized_total")
                                 .Help("Blocks quantized")
                                 .Register(registry)
                                 .Add({});
  engines_ = &prometheus::BuildGauge()
                  .Name("baq_worker_engines")
                  .Help("Live block engines (one per job and device)")
                  .Register(registry)
                  .Add({});
  auto& bytes = prometheus::BuildCounter()
                    .Name("baq_worker_stream_bytes_total")
                    .Help("Tensor and activation bytes streamed, by direction")
                    .Register(registry);
  bytes_sent_total_ = &bytes.Add({{"direction", "sent"}});
  bytes_received_total_ = &bytes.Add({{"direction", "received"}});
}

void WorkerMetrics::RecordRpc(absl::string_view method, const absl::Status& status) {
  rpcs_total_
      .Add({{"method", std::string(method)}, {"code", absl::StatusCodeToString(status.code())}})
      .Increment();
}

void WorkerMetrics::RecordBlock(absl::string_view op, double seconds) {
  block_seconds_.Add({{"op", std::string(op)}}, BlockBuckets()).Observe(seconds);
}

prometheus::Gauge& WorkerMetrics::busy(const std::string& device) {
  return busy_.Add({{"device", device}});
}

prometheus::Gauge& WorkerMetrics::queued_tasks(const std::string& device) {
  return queued_tasks_.Add({{"device", device}});
}

}  // namespace baq::worker

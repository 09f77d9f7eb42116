// worker/service/worker_metrics.h
//
// Prometheus metrics of one worker daemon, built on a registry the caller
// owns (main exposes it with prometheus::Exposer; tests use a fresh one) and
// injected by pointer (STYLE R23). Labels are low-cardinality: method, code,
// device, op — never a job id or a layer name.
//
//   baq_worker_rpcs_total{method,code}        RPCs finished, by gRPC code name
//   baq_worker_blocks_measured_total           BlockEngine::Measure successes
//   baq_worker_blocks_quantized_total          BlockEngine::Quantize successes
//   baq_worker_block_seconds{op}               Measure/Quantize wall time
//   baq_worker_busy{device}                    1 while the device runs a task
//   baq_worker_queued_tasks{device}            tasks waiting for the device
//   baq_worker_engines                         live (job, device) engines
//   baq_worker_stream_bytes_total{direction}   tensor/activation bytes sent/received
//
// Thread-safe (prometheus-cpp metrics are).
//
// Example:
//   prometheus::Registry registry;
//   WorkerMetrics metrics(registry);
//   metrics.RecordRpc("Measure", absl::OkStatus());
#ifndef BAQ_WORKER_SERVICE_WORKER_METRICS_H_
#define BAQ_WORKER_SERVICE_WORKER_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace baq::worker {

class WorkerMetrics {
 public:
  explicit WorkerMetrics(prometheus::Registry& registry);

  WorkerMetrics(const WorkerMetrics&) = delete;
  WorkerMetrics& operator=(const WorkerMetrics&) = delete;

  void RecordRpc(absl::string_view method, const absl::Status& status);
  // `op` is "measure", "quantize" or "accumulate" (AccumulateHessians).
  void RecordBlock(absl::string_view op, double seconds);

  prometheus::Counter& blocks_measured_total() { return *blocks_measured_total_; }
  prometheus::Counter& blocks_quantized_total() { return *blocks_quantized_total_; }
  prometheus::Gauge& busy(const std::string& device);
  prometheus::Gauge& queued_tasks(const std::string& device);
  prometheus::Gauge& engines() { return *engines_; }
  prometheus::Counter& bytes_sent_total() { return *bytes_sent_total_; }
  prometheus::Counter& bytes_received_total() { return *bytes_received_total_; }

 private:
  prometheus::Family<prometheus::Counter>& rpcs_total_;       // labels: method, code
  prometheus::Family<prometheus::Histogram>& block_seconds_;  // labels: op
  prometheus::Family<prometheus::Gauge>& busy_;               // labels: device
  prometheus::Family<prometheus::Gauge>& queued_tasks_;       // labels: device
  prometheus::Counter* blocks_measured_total_;
  prometheus::Counter* blocks_quantized_total_;
  prometheus::Gauge* engines_;
  prometheus::Counter* bytes_sent_total_;
  prometheus::Counter* bytes_received_total_;
};

}  // namespace baq::worker

#endif  // BAQ_WORKER_SERVICE_WORKER_METRICS_H_

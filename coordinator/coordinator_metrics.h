// coordinator/coordinator_metrics.h
//
// Prometheus metrics of the coordinator daemon, built on a registry the
// caller owns (main exposes it with prometheus::Exposer) and injected by
// pointer (STYLE R23). Labels are low-cardinality: state, method, code.
//
//   baq_coordinator_rpcs_total{method,code}    JobService/CoordinatorService RPCs
//   baq_coordinator_jobs{state}                jobs known, by state
//   baq_coordinator_jobs_submitted_total       new jobs accepted
//   baq_coordinator_job_seconds                wall time of finished jobs
//   baq_coordinator_workers                    workers with a live lease
//   baq_coordinator_job_progress_percent       progress of the latest running job
//   baq_coordinator_achieved_bits              achieved bits of the latest job
//   baq_coordinator_target_bits                target bits of the latest job
//   baq_coordinator_auth_failures_total{reason} JobService calls rejected UNAUTHENTICATED
//   baq_coordinator_eval_gates_total{outcome}  evaluation gates run: passed | failed
//   baq_coordinator_eval_gate_ppl              perplexity the latest gate measured
//   baq_coordinator_eval_gate_base_ppl         unquantized perplexity of the latest ratio gate
//
// Thread-safe (prometheus-cpp metrics are).
#ifndef BAQ_COORDINATOR_COORDINATOR_METRICS_H_
#define BAQ_COORDINATOR_COORDINATOR_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace baq::coordinator {

class CoordinatorMetrics {
 public:
  explicit CoordinatorMetrics(prometheus::Registry& registry);

  CoordinatorMetrics(const CoordinatorMetrics&) = delete;
  CoordinatorMetrics& operator=(const CoordinatorMetrics&) = delete;

  void RecordRpc(absl::string_view method, const absl::Status& status);
  // `state` is a JobStateName ("queued", "running", ...).
  prometheus::Gauge& jobs(absl::string_view state);
  // `reason`: "missing", "malformed", "unknown_token" (coordinator/job_auth.h).
  prometheus::Counter& auth_failures_total(absl::string_view reason);
  // One evaluation gate's outcome and numbers (base_ppl 0: not measured).
  void RecordEvalGate(bool passed, double ppl, double base_ppl);

  prometheus::Counter& jobs_submitted_total() { return *jobs_submitted_total_; }
  prometheus::Histogram& job_seconds() { return *job_seconds_; }
  prometheus::Gauge& workers() { return *workers_; }
  prometheus::Gauge& job_progress_percent() { return *job_progress_percent_; }
  prometheus::Gauge& achieved_bits() { return *achieved_bits_; }
  prometheus::Gauge& target_bits() { return *target_bits_; }

 private:
  prometheus::Family<prometheus::Counter>& rpcs_total_;  // labels: method, code
  prometheus::Family<prometheus::Gauge>& jobs_;          // labels: state
  prometheus::Family<prometheus::Counter>& auth_failures_total_;  // labels: reason
  prometheus::Counter* jobs_submitted_total_;
  prometheus::Histogram* job_seconds_;
  prometheus::Gauge* workers_;
  prometheus::Gauge* job_progress_percent_;
  prometheus::Gauge* achieved_bits_;
  prometheus::Gauge* target_bits_;
  prometheus::Family<prometheus::Counter>& eval_gates_total_;  // labels: outcome
  prometheus::Gauge* eval_gate_ppl_;
  prometheus::Gauge* eval_gate_base_ppl_;
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_COORDINATOR_METRICS_H_

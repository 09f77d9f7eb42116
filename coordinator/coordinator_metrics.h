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
// Per-job series (label job_id), what a dashboard of one long job selects:
//   baq_coordinator_job_blocks_done{job_id}            blocks quantized
//   baq_coordinator_job_blocks_total{job_id}           blocks of the model
//   baq_coordinator_job_eta_seconds{job_id}            the runner's estimate of the time left
//   baq_coordinator_job_worker_losses_total{job_id}    worker losses survived or fatal
//   baq_coordinator_job_wire_bytes_total{job_id,kind}  bytes moved for the job, by kind
// (and baq_coordinator_job_checkpoint_bytes{job_id}, coordinator/data_dir_collector.h).
// They break the rule above on purpose: a job id is unbounded, so the series
// of a finished job are removed once kFinishedJobsKept newer jobs finished
// (a dashboard still sees the last few). The label is `job_id`, not `job`:
// Prometheus owns `job` (the scrape job; it would rename ours exported_job).
//
// Thread-safe (prometheus-cpp metrics are; the finished-job list is locked).
#ifndef BAQ_COORDINATOR_COORDINATOR_METRICS_H_
#define BAQ_COORDINATOR_COORDINATOR_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <deque>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace baq::coordinator {

// What crossed the network for a job (baq_coordinator_job_wire_bytes_total{kind}).
enum class WireKind {
  kHessian,      // Hessian partials (fp64 sums) sent to the coordinator.
  kWeights,      // Quantized layer weights (to the coordinator, or owner to workers).
  kActivations,  // Calibration activations (block inputs/outputs, shard moves).
};
absl::string_view WireKindName(WireKind kind);  // "hessian", "weights", "activations"

class CoordinatorMetrics {
 public:
  // Finished jobs whose per-job series are kept (the oldest go first).
  static constexpr size_t kFinishedJobsKept = 5;

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

  // Per-job series (see the file comment).
  // Adds `bytes` moved for `job_id`: the runner calls it for each transfer.
  void AddWireBytes(absl::string_view job_id, WireKind kind, int64_t bytes);
  // The job's progress; `eta` infinite: unknown (exported as NaN).
  void SetJobProgress(absl::string_view job_id, int64_t blocks_done, int64_t blocks_total,
                      absl::Duration eta);
  void AddWorkerLoss(absl::string_view job_id);
  // The job ended: its series stay until kFinishedJobsKept newer jobs ended.
  void FinishJob(absl::string_view job_id);

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
  // Per job; labels: job_id (and kind).
  prometheus::Family<prometheus::Gauge>& job_blocks_done_;
  prometheus::Family<prometheus::Gauge>& job_blocks_total_;
  prometheus::Family<prometheus::Gauge>& job_eta_seconds_;
  prometheus::Family<prometheus::Counter>& job_worker_losses_total_;
  prometheus::Family<prometheus::Counter>& job_wire_bytes_total_;

  absl::Mutex finished_mu_;
  std::deque<std::string> finished_ ABSL_GUARDED_BY(finished_mu_);  // Oldest first.
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_COORDINATOR_METRICS_H_

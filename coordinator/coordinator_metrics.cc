#include "coordinator/coordinator_metrics.h"

#include <algorithm>
#include <limits>
#include <string>

namespace baq::coordinator {
namespace {

prometheus::Gauge* SimpleGauge(prometheus::Registry& registry, const std::string& name,
                               const std::string& help) {
  return &prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add({});
}

prometheus::Family<prometheus::Gauge>& GaugeFamily(prometheus::Registry& registry,
                                                   const std::string& name,
                                                   const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry);
}

prometheus::Family<prometheus::Counter>& CounterFamily(prometheus::Registry& registry,
                                                       const std::string& name,
                                                       const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
}

prometheus::Labels JobLabels(absl::string_view job_id) { return {{"job_id", std::string(job_id)}}; }

}  // namespace

absl::string_view WireKindName(WireKind kind) {
  switch (kind) {
    case WireKind::kHessian: return "hessian";
    case WireKind::kWeights: return "weights";
    case WireKind::kActivations: return "activations";
  }
  return "?";
}

CoordinatorMetrics::CoordinatorMetrics(prometheus::Registry& registry)
    : rpcs_total_(prometheus::BuildCounter()
                      .Name("baq_coordinator_rpcs_total")
                      .Help("Coordinator RPCs finished, by method and gRPC code")
                      .Register(registry)),
      jobs_(prometheus::BuildGauge()
                .Name("baq_coordinator_jobs")
                .Help("Jobs known to the coordinator, by state")
                .Register(registry)),
      auth_failures_total_(prometheus::BuildCounter()
                               .Name("baq_coordinator_auth_failures_total")
                               .Help("JobService calls rejected UNAUTHENTICATED, by reason")
                               .Register(registry)),
      eval_gates_total_(prometheus::BuildCounter()
                            .Name("baq_coordinator_eval_gates_total")
                            .Help("Evaluation gates run, by outcome (passed, failed)")
                            .Register(registry)),
      job_blocks_done_(GaugeFamily(registry, "baq_coordinator_job_blocks_done",
                                   "Blocks the job has quantized, by job")),
      job_blocks_total_(GaugeFamily(registry, "baq_coordinator_job_blocks_total",
                                    "Blocks of the job's model, by job")),
      job_eta_seconds_(GaugeFamily(registry, "baq_coordinator_job_eta_seconds",
                                   "The coordinator's estimate of the job's time left (NaN: "
                                   "unknown yet; 0 once finished), by job")),
      job_worker_losses_total_(CounterFamily(registry, "baq_coordinator_job_worker_losses_total",
                                             "Worker losses (crash, hang, fenced lease) the job "
                                             "met, by job; each one fails over its work")),
      job_wire_bytes_total_(CounterFamily(registry, "baq_coordinator_job_wire_bytes_total",
                                          "Bytes moved over the network for the job, by job and "
                                          "kind (hessian, weights, activations)")) {
  jobs_submitted_total_ = &prometheus::BuildCounter()
                               .Name("baq_coordinator_jobs_submitted_total")
                               .Help("New jobs accepted (idempotent retries not counted)")
                               .Register(registry)
                               .Add({});
  // Jobs run from seconds (tiny models) to many hours (70B on CPU).
  job_seconds_ = &prometheus::BuildHistogram()
                      .Name("baq_coordinator_job_seconds")
                      .Help("Wall time of finished jobs")
                      .Register(registry)
                      .Add({}, prometheus::Histogram::BucketBoundaries{10, 60, 300, 900, 1800, 3600,
                                                                       7200, 14400, 43200, 86400});
  workers_ = SimpleGauge(registry, "baq_coordinator_workers", "Workers with a live lease");
  job_progress_percent_ = SimpleGauge(registry, "baq_coordinator_job_progress_percent",
                                      "Progress of the latest running job, 0..100");
  achieved_bits_ = SimpleGauge(registry, "baq_coordinator_achieved_bits",
                               "Average bits achieved so far by the latest job");
  target_bits_ =
      SimpleGauge(registry, "baq_coordinator_target_bits", "Target bits of the latest job");
  for (const char* state : {"queued", "running", "succeeded", "failed", "cancelled", "failed_gate"}) {
    jobs_.Add({{"state", state}});  // Export zeros, so dashboards see every state.
  }
  eval_gate_ppl_ = SimpleGauge(registry, "baq_coordinator_eval_gate_ppl",
                               "Perplexity of the latest evaluation gate's quantized result");
  eval_gate_base_ppl_ =
      SimpleGauge(registry, "baq_coordinator_eval_gate_base_ppl",
                  "Perplexity of the unquantized model in the latest ratio gate (0: none)");
  for (const char* outcome : {"passed", "failed"}) eval_gates_total_.Add({{"outcome", outcome}});
  for (const char* reason : {"missing", "malformed", "unknown_token"}) {
    auth_failures_total_.Add({{"reason", reason}});
  }
}

void CoordinatorMetrics::RecordEvalGate(bool passed, double ppl, double base_ppl) {
  eval_gates_total_.Add({{"outcome", passed ? "passed" : "failed"}}).Increment();
  eval_gate_ppl_->Set(ppl);
  eval_gate_base_ppl_->Set(base_ppl);
}

void CoordinatorMetrics::RecordRpc(absl::string_view method, const absl::Status& status) {
  rpcs_total_
      .Add({{"method", std::string(method)}, {"code", absl::StatusCodeToString(status.code())}})
      .Increment();
}

prometheus::Gauge& CoordinatorMetrics::jobs(absl::string_view state) {
  return jobs_.Add({{"state", std::string(state)}});
}

prometheus::Counter& CoordinatorMetrics::auth_failures_total(absl::string_view reason) {
  return auth_failures_total_.Add({{"reason", std::string(reason)}});
}

}  // namespace baq::coordinator

namespace baq::coordinator {

void CoordinatorMetrics::AddWireBytes(absl::string_view job_id, WireKind kind, int64_t bytes) {
  job_wire_bytes_total_
      .Add({{"job_id", std::string(job_id)}, {"kind", std::string(WireKindName(kind))}})
      .Increment(static_cast<double>(std::max<int64_t>(bytes, 0)));
}

void CoordinatorMetrics::SetJobProgress(absl::string_view job_id, int64_t blocks_done,
                                        int64_t blocks_total, absl::Duration eta) {
  const prometheus::Labels labels = JobLabels(job_id);
  job_blocks_done_.Add(labels).Set(static_cast<double>(blocks_done));
  job_blocks_total_.Add(labels).Set(static_cast<double>(blocks_total));
  job_eta_seconds_.Add(labels).Set(eta == absl::InfiniteDuration()
                                        ? std::numeric_limits<double>::quiet_NaN()
                                        : absl::ToDoubleSeconds(eta));
  // Export the loss counter from the job's start, so rate() and the
  // dashboard see a 0 rather than no series.
  job_worker_losses_total_.Add(labels);
}

void CoordinatorMetrics::AddWorkerLoss(absl::string_view job_id) {
  job_worker_losses_total_.Add(JobLabels(job_id)).Increment();
}

void CoordinatorMetrics::FinishJob(absl::string_view job_id) {
  std::string forget;
  {
    absl::MutexLock lock(&finished_mu_);
    if (std::find(finished_.begin(), finished_.end(), job_id) != finished_.end()) return;
    finished_.emplace_back(job_id);
    if (finished_.size() <= kFinishedJobsKept) return;
    forget = std::move(finished_.front());
    finished_.pop_front();
  }
  const prometheus::Labels labels = JobLabels(forget);
  for (auto* family : {&job_blocks_done_, &job_blocks_total_, &job_eta_seconds_}) {
    if (family->Has(labels)) family->Remove(&family->Add(labels));
  }
  if (job_worker_losses_total_.Has(labels)) {
    job_worker_losses_total_.Remove(&job_worker_losses_total_.Add(labels));
  }
  for (WireKind kind : {WireKind::kHessian, WireKind::kWeights, WireKind::kActivations}) {
    prometheus::Labels with_kind = labels;
    with_kind["kind"] = std::string(WireKindName(kind));
    if (job_wire_bytes_total_.Has(with_kind)) {
      job_wire_bytes_total_.Remove(&job_wire_bytes_total_.Add(with_kind));
    }
  }
}

}  // namespace baq::coordinator

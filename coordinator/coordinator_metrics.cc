#include "coordinator/coordinator_metrics.h"

#include <string>

namespace baq::coordinator {
namespace {

prometheus::Gauge* SimpleGauge(prometheus::Registry& registry, const std::string& name,
                               const std::string& help) {
  return &prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add({});
}

}  // namespace

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
                            .Register(registry)) {
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

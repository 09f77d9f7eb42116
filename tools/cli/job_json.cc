#include "tools/cli/job_json.h"

#include "coordinator/job_convert.h"
#include "tools/cli/cli_output.h"

namespace baq::cli {

std::string JobStateName(v1::JobState s) {
  switch (s) {
    case v1::JOB_STATE_QUEUED:
      return "queued";
    case v1::JOB_STATE_RUNNING:
      return "running";
    case v1::JOB_STATE_SUCCEEDED:
      return "succeeded";
    case v1::JOB_STATE_FAILED:
      return "failed";
    case v1::JOB_STATE_CANCELLED:
      return "cancelled";
    case v1::JOB_STATE_FAILED_GATE:
      return "failed_gate";
    default:
      return "unknown";
  }
}

bool IsTerminal(v1::JobState s) {
  return s == v1::JOB_STATE_SUCCEEDED || s == v1::JOB_STATE_FAILED || s == v1::JOB_STATE_CANCELLED ||
         s == v1::JOB_STATE_FAILED_GATE;
}

nlohmann::json JobEventJson(const v1::JobEvent& event) {
  nlohmann::json j = ProgressJson(coordinator::FromProto(event));
  j["job_id"] = event.job_id();
  j["state"] = JobStateName(event.state());
  return j;
}

nlohmann::json JobJson(const v1::Job& job) {
  const v1::JobSpec& spec = job.spec();
  nlohmann::json targets = nlohmann::json::array({spec.quantization().target_bits()});
  for (double t : spec.extra_target_bits()) targets.push_back(t);
  nlohmann::json j = {{"id", job.id()},
                      {"request_id", job.request_id()},
                      {"state", JobStateName(job.state())},
                      {"progress", ProgressJson(coordinator::FromProto(job.progress()))},
                      {"error_code", job.error_code()},
                      {"error", job.error()},
                      {"model_dir", spec.model_dir()},
                      {"output_dir", spec.output_dir()},
                      {"target_bits", std::move(targets)},
                      {"measurement_dir", spec.measurement_dir()},
                      {"tenant", job.tenant()},
                      {"priority", job.priority()},
                      {"queue_position", job.queue_position()},
                      {"memory_estimate_bytes", job.memory_estimate_bytes()},
                      {"summary", nullptr},
                      {"create_time_unix_ms", job.create_time_unix_ms()},
                      {"start_time_unix_ms", job.start_time_unix_ms()},
                      {"end_time_unix_ms", job.end_time_unix_ms()}};
  nlohmann::json labels = nlohmann::json::object();
  for (const auto& [key, value] : spec.labels()) labels[key] = value;
  j["labels"] = std::move(labels);
  if (job.has_summary()) {
    const v1::JobSummary& s = job.summary();
    nlohmann::json outputs = nlohmann::json::array();
    for (const v1::TargetOutput& t : s.targets()) {
      outputs.push_back({{"target_bits", t.target_bits()},
                         {"achieved_bits", t.achieved_bits()},
                         {"proxy_loss", t.total_proxy_loss()},
                         {"output_dir", t.output_dir()},
                         {"published", t.published()}});
    }
    j["summary"] = {{"output_dir", s.output_dir()},
                    {"target_bits", s.target_bits()},
                    {"achieved_bits", s.achieved_bits()},
                    {"allocation", s.allocation()},
                    {"proxy_loss", s.total_proxy_loss()},
                    {"quantized_elements", s.quantized_elements()},
                    {"seconds", s.wall_seconds()},
                    {"targets", std::move(outputs)}};
  }
  return j;
}

}  // namespace baq::cli

#include "coordinator/job_convert.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "proto/convert.h"

namespace baq::coordinator {
namespace {

int64_t UnixMillisOrZero(absl::Time t) {
  return t == absl::UnixEpoch() ? 0 : absl::ToUnixMillis(t);
}

}  // namespace

absl::StatusOr<JobState> FromProto(v1::JobState state) {
  for (JobState s : {JobState::kQueued, JobState::kRunning, JobState::kSucceeded,
                     JobState::kFailed, JobState::kCancelled, JobState::kFailedGate}) {
    if (ToProto(s) == state) return s;
  }
  return absl::InvalidArgumentError(absl::StrCat("job state ", static_cast<int>(state),
                                                 " is not a state a job can be in"));
}

v1::JobState ToProto(JobState state) {
  switch (state) {
    case JobState::kQueued:
      return v1::JOB_STATE_QUEUED;
    case JobState::kRunning:
      return v1::JOB_STATE_RUNNING;
    case JobState::kSucceeded:
      return v1::JOB_STATE_SUCCEEDED;
    case JobState::kFailed:
      return v1::JOB_STATE_FAILED;
    case JobState::kCancelled:
      return v1::JOB_STATE_CANCELLED;
    case JobState::kFailedGate:
      return v1::JOB_STATE_FAILED_GATE;
  }
  return v1::JOB_STATE_UNSPECIFIED;
}

v1::JobStage ToProto(JobStage stage) {
  switch (stage) {
    case JobStage::kQueued:
      return v1::JOB_STAGE_QUEUED;
    case JobStage::kStarting:
      return v1::JOB_STAGE_STARTING;
    case JobStage::kMeasuring:
      return v1::JOB_STAGE_MEASURING;
    case JobStage::kQuantizing:
      return v1::JOB_STAGE_QUANTIZING;
    case JobStage::kPublishing:
      return v1::JOB_STAGE_PUBLISHING;
    case JobStage::kDone:
      return v1::JOB_STAGE_DONE;
  }
  return v1::JOB_STAGE_UNSPECIFIED;
}

JobStage FromProto(v1::JobStage stage) {
  switch (stage) {
    case v1::JOB_STAGE_STARTING:
      return JobStage::kStarting;
    case v1::JOB_STAGE_MEASURING:
      return JobStage::kMeasuring;
    case v1::JOB_STAGE_QUANTIZING:
      return JobStage::kQuantizing;
    case v1::JOB_STAGE_PUBLISHING:
      return JobStage::kPublishing;
    case v1::JOB_STAGE_DONE:
      return JobStage::kDone;
    default:
      return JobStage::kQueued;
  }
}

void ToProtoEvent(const JobRecord& record, v1::JobEvent* event) {
  const JobProgress& p = record.progress;
  event->set_job_id(record.id);
  event->set_state(ToProto(record.state));
  event->set_stage(ToProto(p.stage));
  event->set_block(p.block);
  event->set_blocks_done(p.blocks_done);
  event->set_num_blocks(p.num_blocks);
  event->set_percent(p.percent);
  event->set_eta_seconds(p.eta == absl::InfiniteDuration() ? -1.0 : absl::ToDoubleSeconds(p.eta));
  event->set_elapsed_seconds(absl::ToDoubleSeconds(p.elapsed));
  event->set_achieved_bits(p.achieved_bits);
  event->set_message(p.message);
}

void ToProto(const JobRecord& record, v1::Job* job) {
  job->Clear();
  job->set_id(record.id);
  job->set_request_id(record.request_id);
  job->set_state(ToProto(record.state));
  if (!record.error.ok()) {
    job->set_error_code(absl::StatusCodeToString(record.error.code()));
    job->set_error(std::string(record.error.message()));
  }
  baq::ToProto(record.config, job->mutable_spec());
  job->mutable_spec()->set_priority(record.priority);
  job->mutable_spec()->set_tenant(record.tenant);
  job->mutable_spec()->mutable_labels()->insert(record.labels.begin(), record.labels.end());
  job->set_tenant(record.tenant);
  job->set_priority(record.priority);
  job->set_queue_position(record.queue_position);
  job->set_memory_estimate_bytes(record.memory_estimate_bytes);
  if (record.summary.has_value()) {
    const JobSummary& s = *record.summary;
    v1::JobSummary* summary = job->mutable_summary();
    summary->set_output_dir(s.output_dir);
    summary->set_target_bits(s.target_bits);
    summary->set_achieved_bits(s.achieved_bits);
    summary->set_allocation(s.allocation);
    summary->set_total_proxy_loss(s.total_proxy_loss);
    summary->set_quantized_elements(s.quantized_elements);
    summary->set_wall_seconds(absl::ToDoubleSeconds(s.wall_time));
    for (const TargetSummary& t : s.targets) {
      v1::TargetOutput* o = summary->add_targets();
      o->set_output_dir(t.output_dir);
      o->set_target_bits(t.target_bits);
      o->set_achieved_bits(t.achieved_bits);
      o->set_total_proxy_loss(t.total_proxy_loss);
      o->set_published(t.published);
      o->set_eval_gate_ppl(t.eval_gate_ppl);
    }
  }
  ToProtoEvent(record, job->mutable_progress());
  job->set_create_time_unix_ms(UnixMillisOrZero(record.create_time));
  job->set_start_time_unix_ms(UnixMillisOrZero(record.start_time));
  job->set_end_time_unix_ms(UnixMillisOrZero(record.end_time));
}

JobProgress FromProto(const v1::JobEvent& e) {
  JobProgress p;
  p.stage = FromProto(e.stage());
  p.block = e.block();
  p.blocks_done = e.blocks_done();
  p.num_blocks = e.num_blocks();
  p.percent = e.percent();
  p.elapsed = absl::Seconds(e.elapsed_seconds());
  p.eta = e.eta_seconds() < 0 ? absl::InfiniteDuration() : absl::Seconds(e.eta_seconds());
  p.achieved_bits = e.achieved_bits();
  p.message = e.message();
  return p;
}

}  // namespace baq::coordinator

// coordinator/job_convert.h
//
// Conversions between the coordinator's job types (job_record.h,
// job_runner.h) and baq.v1 job messages: used by the JobService (records to
// Job/JobEvent) and by the CLI (JobEvent back to JobProgress for its
// progress bar). Stateless; thread-safe.
#ifndef BAQ_COORDINATOR_JOB_CONVERT_H_
#define BAQ_COORDINATOR_JOB_CONVERT_H_

#include "baq/v1/job.pb.h"
#include "coordinator/job_record.h"
#include "coordinator/job_runner.h"

namespace baq::coordinator {

v1::JobState ToProto(JobState state);
v1::JobStage ToProto(JobStage stage);
JobStage FromProto(v1::JobStage stage);
// InvalidArgument for JOB_STATE_UNSPECIFIED and unknown values.
absl::StatusOr<JobState> FromProto(v1::JobState state);

void ToProto(const JobRecord& record, v1::Job* job);
// The record's latest progress as an event (state included).
void ToProtoEvent(const JobRecord& record, v1::JobEvent* event);
// For clients: eta_seconds < 0 becomes InfiniteDuration.
JobProgress FromProto(const v1::JobEvent& event);

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_JOB_CONVERT_H_

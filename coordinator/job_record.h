// coordinator/job_record.h
//
// JobRecord: what the coordinator knows about one job — its config, state,
// latest progress, result or error — as a plain value type shared by the
// JobManager (the core), the JobStore (persistence) and the JobService
// (which converts it to baq.v1.Job). Thread-compatible value types.
#ifndef BAQ_COORDINATOR_JOB_RECORD_H_
#define BAQ_COORDINATOR_JOB_RECORD_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/job_config.h"
#include "coordinator/job_runner.h"

namespace baq::coordinator {

// kFailedGate: the result missed the job's evaluation gate (nothing published).
enum class JobState { kQueued, kRunning, kSucceeded, kFailed, kCancelled, kFailedGate };

// "queued", "running", "succeeded", "failed", "cancelled", "failed_gate".
absl::string_view JobStateName(JobState state);
absl::StatusOr<JobState> ParseJobState(absl::string_view name);
// Labels of a job: at most kMaxLabels; keys 1-63 characters of
// [a-z0-9._/-] starting with a letter or digit; values at most 255 printable
// ASCII characters. InvalidArgument naming the offending label.
inline constexpr size_t kMaxLabels = 16;
absl::Status ValidateLabels(const std::map<std::string, std::string>& labels);

inline bool IsTerminal(JobState s) {
  return s == JobState::kSucceeded || s == JobState::kFailed || s == JobState::kCancelled ||
         s == JobState::kFailedGate;
}

struct JobRecord {
  std::string id;
  std::string request_id;  // Client idempotency key; may be empty.
  JobConfig config;
  // Scheduling (coordinator/job_scheduler.h). The tenant comes from the
  // caller's credentials (or the spec when the coordinator has no auth).
  std::string tenant;
  int priority = 0;  // Higher runs first.
  // The submitter's labels (JobSpec.labels; ValidateLabels), for List's filter.
  std::map<std::string, std::string> labels;
  // Estimated memory on one worker (coordinator/memory_estimate.h); 0: unknown.
  int64_t memory_estimate_bytes = 0;
  // While QUEUED: 0-based place in the start order (computed on Get/List,
  // not persisted); -1 otherwise.
  int queue_position = -1;
  JobState state = JobState::kQueued;
  absl::Status error;                 // Non-OK exactly when FAILED or CANCELLED.
  std::optional<JobSummary> summary;  // Set when SUCCEEDED.
  JobProgress progress;               // The latest event.
  // absl::UnixEpoch() means "not yet".
  absl::Time create_time = absl::UnixEpoch();
  absl::Time start_time = absl::UnixEpoch();
  absl::Time end_time = absl::UnixEpoch();
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_JOB_RECORD_H_

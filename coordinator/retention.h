// coordinator/retention.h
//
// Retention: garbage-collects the intermediate state of finished jobs in the
// coordinator's data dir, by age and by total size. What it may remove:
//   - <data_dir>/jobs/<id>/          a job's checkpoints (per-block results),
//                                    once the job is terminal (or unknown:
//                                    an orphan left by a deleted record,
//                                    which only the age limit removes);
//   - <data_dir>/measurements/<key>/ stored measurements (pass-1 losses and
//                                    Hessians, keyed by fingerprint).
// It never touches job records (<data_dir>/jobs/<id>.json), the state of
// queued or running jobs, or outputs (which live outside the data dir and
// are never scanned).
//
// Policy: first every candidate older than `max_age` goes (a job's age runs
// from its end time, a measurement's from its newest file); then, while all
// intermediate state (running jobs' included) exceeds `max_bytes`, the
// oldest remaining candidate goes. A running job's state is counted but
// never removed, so the total may stay above the limit.
//
// Thread-compatible: one Collect() at a time (the JobManager serializes it).
//
// Example:
//   RetentionOptions options{.max_age = absl::Hours(72), .max_bytes = 50LL << 30};
//   Retention retention(data_dir, options);
//   BAQ_ASSIGN_OR_RETURN(RetentionReport r, retention.Collect(jobs->List()));
#ifndef BAQ_COORDINATOR_RETENTION_H_
#define BAQ_COORDINATOR_RETENTION_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "coordinator/job_record.h"

namespace baq::coordinator {

struct RetentionOptions {
  // Candidates older than this are removed; InfiniteDuration: no age limit.
  absl::Duration max_age = absl::InfiniteDuration();
  // Total bytes of intermediate state kept; 0: no size limit.
  int64_t max_bytes = 0;
  // The clock; tests inject a fake.
  std::function<absl::Time()> now = [] { return absl::Now(); };

  bool enabled() const { return max_age != absl::InfiniteDuration() || max_bytes > 0; }
};

struct RetentionReport {
  std::vector<std::string> removed;  // Paths, in removal order.
  int64_t bytes_freed = 0;
  int64_t bytes_kept = 0;  // All intermediate state left, running jobs' included.
};

class Retention {
 public:
  Retention(std::string data_dir, RetentionOptions options);

  // Applies the policy given the coordinator's job records (their states and
  // end times decide what is removable). Internal on a directory that cannot
  // be listed or removed; what was removed before the error stays removed.
  absl::StatusOr<RetentionReport> Collect(const std::vector<JobRecord>& jobs) const;

  static constexpr char kMeasurementsDir[] = "measurements";

 private:
  const std::string data_dir_;
  const RetentionOptions options_;
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_RETENTION_H_

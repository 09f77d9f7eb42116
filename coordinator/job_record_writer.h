// coordinator/job_record_writer.h
//
// JobRecordWriter persists JobRecords through a JobStore without holding the
// caller's lock during the disk I/O. The JobManager stages a snapshot of a
// record under its own lock, in state-change order (Stage: a copy, no I/O),
// and writes it after releasing that lock (Flush).
//
// Ordering: the writes of one job are serialized, and each write takes the
// newest snapshot staged so far, so a record written after a newer state was
// staged can never overwrite it; the last write of a job is always its newest
// snapshot. Snapshots staged while a write is in flight are coalesced: only
// the newest of them is written next (each save replaces the whole record).
// Different jobs write in parallel.
//
// Flush(id) returns once every snapshot staged for `id` before the call is on
// disk (or its save failed, which is logged: a failed save loses durability,
// not the job). A job whose checkpoint is to be discarded (it reached a
// terminal state) has it removed before the next save of its record, as the
// manager did before.
//
// Thread-safe. Lock order: the caller's lock, then this writer's; no I/O
// happens under either.
//
// Example:
//   JobRecordWriter writer(&store, [dir](const std::string& id) { DiscardJobCheckpoint(dir, id); });
//   { absl::MutexLock lock(&mu_); job.state = ...; writer.Stage(job, false); }
//   writer.Flush(job.id);  // Outside mu_.
#ifndef BAQ_COORDINATOR_JOB_RECORD_WRITER_H_
#define BAQ_COORDINATOR_JOB_RECORD_WRITER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/job_record.h"
#include "coordinator/job_store.h"

namespace baq::coordinator {

class JobRecordWriter {
 public:
  using DiscardFn = std::function<void(const std::string& job_id)>;

  // `store` is not owned and must outlive *this. `discard_checkpoint` may
  // be null (nothing to discard).
  JobRecordWriter(const JobStore* store, DiscardFn discard_checkpoint)
      : store_(store), discard_checkpoint_(std::move(discard_checkpoint)) {}

  JobRecordWriter(const JobRecordWriter&) = delete;
  JobRecordWriter& operator=(const JobRecordWriter&) = delete;

  // Makes `record` the newest snapshot of its job; with
  // `discard_checkpoint`, the job's checkpoint is removed before the next
  // save. Cheap: a copy under this writer's lock.
  void Stage(const JobRecord& record, bool discard_checkpoint) ABSL_LOCKS_EXCLUDED(mu_);

  // Writes the job's staged snapshots (see the file comment); waits for a
  // write of the same job already in flight rather than racing it. A no-op
  // for a job with nothing staged.
  void Flush(const std::string& job_id) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct JobWrites {
    std::optional<JobRecord> unsaved;  // The newest snapshot not yet taken by a writer.
    bool discard_checkpoint = false;   // Before the next save.
    int64_t staged = 0;                // Sequence number of the newest snapshot.
    int64_t saved = 0;                 // Sequence number of the newest one written.
    bool writing = false;              // A thread is writing this job's record.
  };

  // Constant after construction.
  const JobStore* const store_;
  const DiscardFn discard_checkpoint_;

  absl::Mutex mu_;
  // By job id; entries stay (a JobWrites is small, and so are job counts).
  std::map<std::string, JobWrites> jobs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_JOB_RECORD_WRITER_H_

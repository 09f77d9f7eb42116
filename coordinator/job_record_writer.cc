#include "coordinator/job_record_writer.h"

#include <iostream>
#include <utility>

namespace baq::coordinator {

void JobRecordWriter::Stage(const JobRecord& record, bool discard_checkpoint) {
  absl::MutexLock lock(&mu_);
  JobWrites& w = jobs_[record.id];
  w.unsaved = record;
  w.discard_checkpoint = w.discard_checkpoint || discard_checkpoint;
  ++w.staged;
}

void JobRecordWriter::Flush(const std::string& job_id) {
  mu_.Lock();
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    mu_.Unlock();
    return;
  }
  JobWrites& w = it->second;  // std::map: stable while mu_ is released.
  const int64_t target = w.staged;
  while (w.saved < target) {
    if (w.writing) {
      // That writer takes the newest snapshot when it is done with its own,
      // or this thread does, once it finishes.
      auto idle_or_done = [&w, target]() {
        return !w.writing || w.saved >= target;
      };
      mu_.Await(absl::Condition(&idle_or_done));
      continue;
    }
    w.writing = true;
    JobRecord record = *std::move(w.unsaved);
    w.unsaved.reset();
    const int64_t seq = w.staged;
    const bool discard = std::exchange(w.discard_checkpoint, false);
    mu_.Unlock();
    // A finished job's checkpoint (activations: large) has no further use.
    if (discard && discard_checkpoint_) discard_checkpoint_(job_id);
    // A failed save loses durability, not the job: log and go on.
    if (absl::Status s = store_->Save(record); !s.ok()) {
      std::cerr << "baq-coordinator: cannot persist job " << job_id << ": " << s << "\n";
    }
    mu_.Lock();
    w.saved = seq;
    w.writing = false;
  }
  mu_.Unlock();
}

}  // namespace baq::coordinator

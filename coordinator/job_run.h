// coordinator/job_run.h
//
// JobRun: what the pieces of one JobRunner::Run share — the job, its
// options, the engines (all of them, and the EngineSet that plans blocks
// over the live ones), the progress reporter and the cancellation flag.
// Built by JobRunner::Run on its stack; the pieces (SequentialRun,
// ParallelRun, TargetOutput::Finish) hold it by reference for the run.
//
// Thread-compatible: the job's runner thread uses it; only `cancelled` is
// written by other threads (JobRunner::Cancel).
#ifndef BAQ_COORDINATOR_JOB_RUN_H_
#define BAQ_COORDINATOR_JOB_RUN_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/block_engine.h"
#include "common/job_config.h"
#include "coordinator/engine_set.h"
#include "coordinator/job_progress.h"
#include "coordinator/job_runner.h"

namespace baq::coordinator {

struct JobRun {
  const JobConfig& config;                // The whole job (every target).
  const JobRunnerOptions& options;
  const std::vector<BlockEngine*>& all_engines;  // As given to JobRunner.
  EngineSet& engines;                     // Started; plans blocks over the live ones.
  ProgressReporter& progress;
  const std::atomic<bool>& cancelled;
  std::function<void(const std::string&)> log;
  int64_t num_blocks = 0;

  // Cancelled once JobRunner::Cancel() was called.
  absl::Status CheckCancel() const {
    if (cancelled.load()) return absl::CancelledError("job cancelled");
    return absl::OkStatus();
  }
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_JOB_RUN_H_

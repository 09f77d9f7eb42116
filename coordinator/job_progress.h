// coordinator/job_progress.h
//
// What a running job tells its watchers (JobProgress, what `baq watch` and
// the Watch RPC stream) and the ProgressReporter through which the pieces of
// JobRunner (coordinator/sequential_run.h, parallel_run.h, target_output.h)
// report it. The reporter counts work units (measuring a block and
// quantizing it count one each, per target), estimates the time left from
// the rate so far, and records stage times in the quant report of the
// target being worked on.
//
// Thread-compatible: the job's runner thread makes every call; the progress
// callback runs on that thread.
//
// Example:
//   ProgressReporter progress(callback);
//   progress.set_num_blocks(n);
//   progress.set_units_total(2 * n);
//   progress.Report(JobStage::kMeasuring, b, b, budget.achieved_bits(), "block 3");
//   progress.AddUnits(2);
#ifndef BAQ_COORDINATOR_JOB_PROGRESS_H_
#define BAQ_COORDINATOR_JOB_PROGRESS_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "coordinator/quant_report.h"

namespace baq::coordinator {

enum class JobStage { kQueued, kStarting, kMeasuring, kQuantizing, kPublishing, kDone };
absl::string_view JobStageName(JobStage stage);

// A progress event.
struct JobProgress {
  JobStage stage = JobStage::kQueued;
  int64_t block = -1;        // Block being worked on, -1 if none.
  int64_t blocks_done = 0;   // Blocks quantized.
  int64_t num_blocks = 0;
  double percent = 0;        // 0..100.
  absl::Duration elapsed;
  absl::Duration eta;        // Estimated time left; InfiniteDuration if unknown.
  double achieved_bits = 0;  // Average bits of the blocks quantized so far.
  std::string message;
};

class ProgressReporter {
 public:
  using ProgressFn = std::function<void(const JobProgress&)>;

  // `fn` may be null (nothing is reported, stage times are still kept). The
  // elapsed time counts from construction.
  explicit ProgressReporter(ProgressFn fn) : fn_(std::move(fn)) {}

  ProgressReporter(const ProgressReporter&) = delete;
  ProgressReporter& operator=(const ProgressReporter&) = delete;

  // Sends one event: the stage (also entered in the stage report), the block
  // worked on (-1: none), the blocks done, the bits achieved so far.
  void Report(JobStage stage, int64_t block, int64_t blocks_done, double bits,
              std::string message);

  void set_num_blocks(int64_t n) { progress_.num_blocks = n; }
  void set_units_total(int64_t units) { units_total_ = units; }
  void set_units_done(int64_t units) { units_done_ = units; }
  void AddUnits(int64_t units) { units_done_ += units; }
  // The quant report that records stage times (the target being worked on);
  // null: none. Not owned.
  void set_stage_report(QuantReport* report) { stage_report_ = report; }

  absl::Time start() const { return start_; }

 private:
  const ProgressFn fn_;
  const absl::Time start_ = absl::Now();
  int64_t units_total_ = 1;
  int64_t units_done_ = 0;
  JobProgress progress_;  // The last event; fields not passed to Report persist.
  QuantReport* stage_report_ = nullptr;
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_JOB_PROGRESS_H_

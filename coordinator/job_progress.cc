#include "coordinator/job_progress.h"

#include <utility>

namespace baq::coordinator {

absl::string_view JobStageName(JobStage stage) {
  switch (stage) {
    case JobStage::kQueued: return "queued";
    case JobStage::kStarting: return "starting";
    case JobStage::kMeasuring: return "measuring";
    case JobStage::kQuantizing: return "quantizing";
    case JobStage::kPublishing: return "publishing";
    case JobStage::kDone: return "done";
  }
  return "?";
}

void ProgressReporter::Report(JobStage stage, int64_t block, int64_t blocks_done, double bits,
                              std::string message) {
  JobProgress& p = progress_;
  p.stage = stage;
  if (stage_report_ != nullptr) stage_report_->EnterStage(JobStageName(stage));
  p.block = block;
  p.blocks_done = blocks_done;
  p.achieved_bits = bits;
  p.message = std::move(message);
  // Work units for progress: measuring and quantizing a block count one each.
  p.elapsed = absl::Now() - start_;
  p.percent = 100.0 * static_cast<double>(units_done_) / static_cast<double>(units_total_);
  p.eta = units_done_ == 0 ? absl::InfiniteDuration()
                           : p.elapsed * (static_cast<double>(units_total_ - units_done_) /
                                          static_cast<double>(units_done_));
  if (fn_) fn_(p);
}

}  // namespace baq::coordinator

// coordinator/parallel_run.h
//
// ParallelRun: the blocks of a parallel-mode job. Every block's Hessians
// come from the unquantized model, so one measurement serves every bit
// target (and is kept in, or reused from, JobConfig::measurement_dir). For
// each target: pass 1 of every block at the target's reference width from
// the kept Hessians, the exact global allocation over all blocks, then the
// quantization of every block, handed to the target's output. Activations
// cross engines only while the first target's pass computes them. Not
// checkpointed: a worker loss fails the job.
//
// Thread-compatible: the job's runner thread makes every call.
//
// Example:
//   BAQ_RETURN_IF_ERROR(ParallelRun(run, targets).Run());
#ifndef BAQ_COORDINATOR_PARALLEL_RUN_H_
#define BAQ_COORDINATOR_PARALLEL_RUN_H_

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/block_protocol.h"
#include "coordinator/job_run.h"
#include "coordinator/target_output.h"

namespace baq::coordinator {

class ParallelRun {
 public:
  // `run` and `targets` must outlive *this.
  ParallelRun(const JobRun& run, std::vector<std::unique_ptr<TargetOutput>>& targets)
      : run_(run), targets_(targets) {}

  absl::Status Run();

 private:
  // Whether measurement_dir holds a measurement of this job to reuse.
  absl::StatusOr<bool> ReuseKeptMeasurement();
  // Pass 1 of every block for target `t` (`of_target` names it in messages).
  absl::StatusOr<std::vector<BlockMeasurement>> MeasureAll(size_t t, const std::string& of_target);
  // The global allocation from `measurements`, then every block quantized.
  absl::Status QuantizeAll(TargetOutput& target, const std::vector<BlockMeasurement>& measurements,
                           const std::string& of_target);

  const JobRun& run_;
  std::vector<std::unique_ptr<TargetOutput>>& targets_;
  bool reuse_ = false;  // The measurement comes from measurement_dir.
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_PARALLEL_RUN_H_

// coordinator/memory_estimate.h
//
// How much memory one quantization job needs on a worker, estimated from the
// model's config.json and the job's calibration settings, for the scheduler's
// admission check (coordinator/job_scheduler.h). A worker holds, per job:
//   - the weights of one transformer block (in the model's dtype),
//   - one fp64 Hessian (in x in) per distinct layer input of that block,
//   - the calibration activations entering and leaving the block:
//     num_samples x seqlen x hidden x 4 bytes (fp32), twice.
// Model-wide tensors (embeddings, lm_head) live on the worker only while it
// runs the first/last block and are not counted. This is an estimate, not a
// bound: allocator slack and GPTQ's temporaries come on top.
//
// Stateless functions; thread-safe.
#ifndef BAQ_COORDINATOR_MEMORY_ESTIMATE_H_
#define BAQ_COORDINATOR_MEMORY_ESTIMATE_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "common/job_config.h"
#include "common/model_config.h"
#include "coordinator/worker_registry.h"

namespace baq::coordinator {

struct MemoryEstimate {
  int64_t block_weight_bytes = 0;
  int64_t hessian_bytes = 0;
  int64_t activation_bytes = 0;

  int64_t total() const { return block_weight_bytes + hessian_bytes + activation_bytes; }
  // "1.23 GiB (block weights 0.10 GiB + Hessians 0.50 GiB + activations 0.63 GiB)".
  std::string ToString() const;
};

// The estimate for `config` on a model described by `model` (the largest
// block counts; all blocks of the supported families are the same size).
MemoryEstimate EstimateJobMemory(const ModelConfig& model, const JobConfig& config);

// Reads `<config.model_dir>/config.json` (NotFound/InvalidArgument from
// LoadModelConfig when it cannot) and estimates.
absl::StatusOr<MemoryEstimate> EstimateJobMemory(const JobConfig& config);

// "1.50 GiB" / "12.0 MiB" / "512 B".
std::string FormatBytes(int64_t bytes);

// The memory one worker offers to jobs, for JobManagerDeps::memory_capacity:
// `max_job_memory` if > 0, else the smallest memory_bytes among the live
// workers of `registry` that report one, else 0 (unknown: no admission by
// memory). `registry` is not owned and must outlive the function.
std::function<int64_t()> WorkerMemoryCapacity(WorkerRegistry* registry, int64_t max_job_memory);

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_MEMORY_ESTIMATE_H_

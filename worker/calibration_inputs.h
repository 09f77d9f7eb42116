// worker/calibration_inputs.h
//
// The calibration data of a job:
//  * LoadCalibrationIds: the calibration files tokenized one by one with the
//    model's tokenizer, concatenated in order, and `num_samples` windows of
//    `seqlen` tokens drawn with the reference GPTQ code's sampler (Python's
//    random.seed(seed) + randint), so the same job gives the same windows on
//    every worker and matches the public codes;
//  * AllocateActivations: the buffer for one block boundary's activations
//    [windows, seqlen, hidden], in memory or, above a memory limit, in a
//    memory-mapped file on disk (docs/model-execution.md, "Activation
//    spilling").
// Stateless functions; thread-safe.
#ifndef BAQ_WORKER_CALIBRATION_INPUTS_H_
#define BAQ_WORKER_CALIBRATION_INPUTS_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/bpe_tokenizer.h"
#include "common/job_config.h"

namespace baq::worker {

// int64 [num_samples, seqlen] on the CPU. Errors name the file at fault
// (missing, empty, not UTF-8) or the shortfall (fewer tokens than seqlen + 1).
absl::StatusOr<at::Tensor> LoadCalibrationIds(const CalibrationConfig& config,
                                              const BpeTokenizer& tokenizer);

struct ActivationSpillOptions {
  // 0: activations always stay in memory (on the engine's device). > 0: the
  // activations of a block boundary larger than this many bytes are kept in
  // a file instead (sequential mode holds two boundaries at a time).
  int64_t memory_limit_bytes = 0;
  // Directory of the spill files; empty = the system temp dir. Files are
  // unlinked as soon as they are mapped, so nothing outlives the process.
  std::string spill_dir;
};

// An uninitialized tensor of `shape` and `dtype` for calibration
// activations: on `device` when it fits options.memory_limit_bytes (or there
// is no limit), else on the CPU, backed by a shared mapping of an unlinked
// file in options.spill_dir, so the kernel pages it to disk instead of the
// process holding it (the mapping is released with the last tensor using
// it). Callers move slices to `device` for compute. InvalidArgument for a
// spill dir that is not a writable directory; ResourceExhausted when the
// file cannot be sized (disk full) or mapped.
absl::StatusOr<at::Tensor> AllocateActivations(at::IntArrayRef shape, at::ScalarType dtype,
                                               at::Device device,
                                               const ActivationSpillOptions& options);
// Whether AllocateActivations put `activations` in a spill file.
bool IsSpilled(const at::Tensor& activations);

}  // namespace baq::worker

#endif  // BAQ_WORKER_CALIBRATION_INPUTS_H_

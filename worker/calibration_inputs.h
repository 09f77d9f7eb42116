// worker/calibration_inputs.h
//
// The calibration token windows of a job: the calibration files tokenized
// one by one with the model's tokenizer, concatenated in order, and
// `num_samples` windows of `seqlen` tokens drawn with the reference GPTQ
// code's sampler (Python's random.seed(seed) + randint), so the same job
// gives the same windows on every worker and matches the public codes.
// Stateless; thread-safe.
#ifndef BAQ_WORKER_CALIBRATION_INPUTS_H_
#define BAQ_WORKER_CALIBRATION_INPUTS_H_

#include <ATen/ATen.h>

#include "absl/status/statusor.h"
#include "common/bpe_tokenizer.h"
#include "common/job_config.h"

namespace baq::worker {

// int64 [num_samples, seqlen] on the CPU. Errors name the file at fault
// (missing, empty, not UTF-8) or the shortfall (fewer tokens than seqlen + 1).
absl::StatusOr<at::Tensor> LoadCalibrationIds(const CalibrationConfig& config,
                                              const BpeTokenizer& tokenizer);

}  // namespace baq::worker

#endif  // BAQ_WORKER_CALIBRATION_INPUTS_H_

// common/measurement_store.h
//
// The on-disk form of a kept measurement: every linear layer's Hessian of a
// parallel-mode job (computed from the unquantized model, so it depends only
// on the model and the calibration set), for later jobs that want another
// bit target without running the calibration forwards again
// (JobConfig::measurement_dir, docs/operations.md "Measurement reuse").
//
//   <dir>/block-00000.safetensors   one per block, written by the engine that
//   <dir>/block-00001.safetensors   measured it: the float32 Hessian of each
//   ...                             layer (named by layer), metadata with the
//                                   engine's Hessian partial count
//   <dir>/measurement.json          written last by the job runner, once all
//                                   blocks are on disk: the fingerprint of
//                                   what was measured and the block count
//
// A measurement is reusable only when its fingerprint equals the new job's:
// the model directory's files (name, size, modification time), the
// calibration files (same), sample count, sequence length, seed and mode.
// Every file is written to a temporary name, fsynced and renamed, so a
// crash leaves no half measurement that looks complete.
//
// Functions only; thread-safe (no shared state).
#ifndef BAQ_COMMON_MEASUREMENT_STORE_H_
#define BAQ_COMMON_MEASUREMENT_STORE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/job_config.h"
#include "nlohmann/json.hpp"

namespace baq {

// What a measurement depends on (see above). NotFound/InvalidArgument when a
// model or calibration file cannot be listed, naming it.
absl::StatusOr<nlohmann::json> MeasurementFingerprint(const JobConfig& config);

// "<dir>/block-00012.safetensors".
std::string MeasurementBlockPath(const std::string& dir, int64_t block);

// The number of blocks of the complete measurement in `dir` when its
// fingerprint equals `config`'s. NotFound when `dir` holds no complete
// measurement (nothing to reuse: measure and keep it there);
// FailedPrecondition naming the first differing entry when it holds one of
// another model or calibration set; DataLoss for an unreadable manifest.
absl::StatusOr<int64_t> FindReusableMeasurement(const std::string& dir, const JobConfig& config);

// Marks the measurement in `dir` complete (all `num_blocks` block files are
// written): writes measurement.json atomically. NotFound naming the first
// missing block file.
absl::Status CompleteMeasurement(const std::string& dir, const JobConfig& config,
                                 int64_t num_blocks);

}  // namespace baq

#endif  // BAQ_COMMON_MEASUREMENT_STORE_H_

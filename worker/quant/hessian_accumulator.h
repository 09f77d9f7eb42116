// worker/quant/hessian_accumulator.h
//
// HessianAccumulator collects the GPTQ proxy Hessian H = 2/n * sum_t x_t x_t^T
// of one linear layer's inputs (n = number of rows x_t), batch by batch.
//
// It keeps the UNNORMALIZED float64 sum and the row count, so partial sums from
// any number of batches, devices or workers merge by addition (Merge(), an
// all-reduce, or Serialize() -> Deserialize() -> Merge()), in any order, with
// only float64 rounding between orders; Finalize() divides once at the end.
// (IST-DASLab/gptq `add_batch` keeps a float32 running mean instead, whose
// rescaling makes the result depend on the batch split.)
//
// On CUDA (BAQ_WITH_CUDA builds) Add() runs cuBLAS DSYRK on LibTorch's
// current stream: only the upper triangle is accumulated (half the float64
// multiply-adds), and the lower one is mirrored from it once, when the full
// sum is first read (sum(), mutable_sum(), Merge(), Finalize(), Serialize()).
// Add() then also skips its per-batch NaN/Inf check (a device sync each); a
// non-finite input makes a diagonal entry non-finite, which Finalize()
// reports as InvalidArgument. On CPU, Add() is the column-chunked GEMM, and
// its bits do not depend on the thread count.
//
// Thread-compatible: one thread (the device executor) calls all methods,
// const ones included (they may mirror the triangle in place).
//
// Example:
//   HessianAccumulator acc(/*num_columns=*/4096, at::kCUDA);
//   BAQ_RETURN_IF_ERROR(acc.Add(activations));   // [batch, seq, 4096]
//   std::string wire = acc.Serialize();          // to the coordinator / a peer
//   BAQ_ASSIGN_OR_RETURN(at::Tensor h, acc.Finalize(at::kFloat));
#ifndef BAQ_WORKER_QUANT_HESSIAN_ACCUMULATOR_H_
#define BAQ_WORKER_QUANT_HESSIAN_ACCUMULATOR_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace baq::worker {

class HessianAccumulator {
 public:
  // An empty accumulator (zero sum, zero rows) on `device`.
  // REQUIRES: num_columns > 0.
  explicit HessianAccumulator(int64_t num_columns, at::Device device = at::kCPU);

  HessianAccumulator(const HessianAccumulator&) = delete;
  HessianAccumulator& operator=(const HessianAccumulator&) = delete;
  HessianAccumulator(HessianAccumulator&&) = default;
  HessianAccumulator& operator=(HessianAccumulator&&) = default;

  // Adds activations [..., num_columns] (any floating dtype, any device; leading
  // dims are flattened into rows; zero rows is a no-op). InvalidArgument on a
  // width mismatch, non-floating dtype or NaN/Inf.
  absl::Status Add(const at::Tensor& activations);

  // Adds another accumulator's sum and rows. InvalidArgument on a width mismatch.
  absl::Status Merge(const HessianAccumulator& other);

  // 2/rows * sum as float32 or float64 [num_columns, num_columns] on device(),
  // built from the sum's upper triangle (mirrored onto the lower one), so it
  // is exactly symmetric and equals what an upper-triangle round trip gives.
  // FailedPrecondition if no rows were added; InvalidArgument for other dtypes.
  absl::StatusOr<at::Tensor> Finalize(at::ScalarType dtype = at::kFloat) const;

  // The "BAQH" wire format of the sum and rows (common/hessian_format.h, the
  // one implementation; docs/wire-formats.md): the full sum (version 1) or
  // its upper triangle (version 2, half the bytes; what Finalize reads).
  enum class HessianLayout { kFull, kUpperTriangle };
  std::string Serialize(HessianLayout layout = HessianLayout::kFull) const;
  // Either layout. InvalidArgument (naming the fault) on malformed bytes or a
  // non-finite sum.
  static absl::StatusOr<HessianAccumulator> Deserialize(absl::string_view bytes,
                                                        at::Device device = at::kCPU);

  int64_t num_columns() const { return num_columns_; }
  int64_t rows() const { return rows_; }
  at::Device device() const { return sum_.device(); }
  // The raw float64 sum, both triangles (for an all-reduce across ranks);
  // rows() must be summed alongside it.
  const at::Tensor& sum() const;
  at::Tensor& mutable_sum();
  void set_rows(int64_t rows) { rows_ = rows; }

 private:
  // Mirrors the upper triangle into the lower one if only the upper one is
  // kept. May throw (callers are inside CallTorch or accept a throw).
  void MirrorUpper() const;

  int64_t num_columns_;
  // [num_columns, num_columns], float64, on the device. Mutable: the lazy
  // mirror of the upper triangle (upper_only_) happens in const readers.
  mutable at::Tensor sum_;
  // Whether sum_ holds the sum in its upper triangle only (the strictly lower
  // one is zero): the CUDA DSYRK path.
  mutable bool upper_only_ = false;
  // Whether rows were added without the per-batch NaN/Inf check (CUDA);
  // Finalize() checks the diagonal once and clears it.
  mutable bool unchecked_ = false;
  int64_t rows_ = 0;
};

}  // namespace baq::worker

#endif  // BAQ_WORKER_QUANT_HESSIAN_ACCUMULATOR_H_

// worker/communicator.h
//
// Communicator: collective operations across the ranks of one quantization
// job (STYLE R4, R21). A rank is one device; a worker that owns several GPUs
// holds one Communicator per GPU, each used only from that GPU's executor
// thread (R19). Implementations:
//   - LocalCommunicator (worker/local_communicator.h): one rank, in place.
//   - InProcessCommunicators (worker/local_communicator.h): N ranks on N
//     threads of one process, any device; CPU tests of the multi-rank paths.
//   - NCCL (worker/nccl/nccl_communicator.h, BAQ_WITH_NCCL): CUDA tensors,
//     one rank per GPU; built through worker/nccl/communicator_factory.h.
//
// Every collective takes a timeout and returns DeadlineExceeded after it; the
// communicator is then aborted and every later call returns Aborted (a stuck
// peer cannot be recovered from inside one job: the job fails, R21).
//
// Thread-compatible: one thread per rank calls a Communicator's methods.
//
// Example (one executor per GPU, splitting calibration windows by rank):
//   HessianAccumulator acc(cols, device);
//   for (int64_t w = comm.rank(); w < num_windows; w += comm.world_size()) {
//     BAQ_RETURN_IF_ERROR(acc.Add(layer_inputs(w)));
//   }
//   BAQ_RETURN_IF_ERROR(AllReduceHessian(acc, comm, absl::Minutes(5)));
//   // every rank now holds the same sum and rows as one rank over all windows.
#ifndef BAQ_WORKER_COMMUNICATOR_H_
#define BAQ_WORKER_COMMUNICATOR_H_

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace baq::worker {

class HessianAccumulator;

class Communicator {
 public:
  virtual ~Communicator() = default;

  // Sums `tensor` in place across all ranks. REQUIRES: same shape, dtype and
  // device kind on every rank, contiguous, and every rank issues collectives
  // in the same order. InvalidArgument on a tensor this backend cannot reduce
  // (e.g. a CPU tensor for NCCL); DeadlineExceeded after `timeout`; Aborted
  // once the communicator was aborted.
  virtual absl::Status AllReduceSum(at::Tensor& tensor, absl::Duration timeout) = 0;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  // OK while the communicator can run collectives; the error that broke it
  // otherwise (the worker reports itself unhealthy). Thread-safe.
  virtual absl::Status Health() const { return absl::OkStatus(); }
};

// How AllReduceHessian adds the partial sums of the ranks.
enum class HessianReduction {
  // The backend's all-reduce (NCCL ring/tree): fastest; the rounding depends
  // on the backend's order (with 2 ranks it is exactly p0 + p1).
  kBackend,
  // Exactly ((p_0 + p_1) + p_2) + ... in rank order on every rank, as
  // HessianAccumulator::Merge of the partials in rank order would give:
  // all-reduces a [world, n, n] tensor holding each rank's partial in its own
  // slot (adding zeros is exact), then sums the slots locally. Costs world
  // times the memory and bytes of kBackend.
  kRankOrdered,
};

// Sums the accumulator's float64 sum and its row count across all ranks, in
// place: afterwards every rank's accumulator equals the merge of all ranks'
// partial accumulators. Ranks whose share was empty pass an accumulator with
// zero rows. Errors as AllReduceSum; InvalidArgument if the accumulator's sum
// is not a float64 [n, n] tensor. On error the accumulator is unspecified.
absl::Status AllReduceHessian(HessianAccumulator& accumulator, Communicator& communicator,
                              absl::Duration timeout,
                              HessianReduction reduction = HessianReduction::kBackend);

}  // namespace baq::worker

#endif  // BAQ_WORKER_COMMUNICATOR_H_

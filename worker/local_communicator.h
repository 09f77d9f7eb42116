// worker/local_communicator.h
//
// Communicators that need no network or NCCL (STYLE R4, R24):
//
//   LocalCommunicator: world size 1; AllReduceSum leaves the tensor as it is.
//   The communicator of a worker with one device and of every single-rank job.
//
//   MakeInProcessCommunicators(n): n ranks in one process, rank r used from
//   its own thread (like one executor per GPU). Tensors may live on any
//   device. The last rank to arrive sums the ranks' tensors in rank order,
//   t_0 + t_1 + ... (so results are deterministic), and writes the sum into
//   every rank's tensor. A rank that waits longer than its timeout returns
//   DeadlineExceeded and aborts the group: every later call on any rank, and
//   every rank still waiting, returns Aborted; mismatched shapes or dtypes
//   across ranks abort the group with InvalidArgument. For tests of the
//   multi-rank code paths (and of their failures) on CPU.
//
// Thread-safety: each Communicator is thread-compatible (one thread per
// rank); the ranks of one in-process group may be used concurrently.
//
// Example:
//   std::vector<std::unique_ptr<Communicator>> comms = MakeInProcessCommunicators(2);
//   std::thread t([&] { (void)comms[1]->AllReduceSum(b, absl::Seconds(5)); });
//   absl::Status s = comms[0]->AllReduceSum(a, absl::Seconds(5));  // a = b = a + b
//   t.join();
#ifndef BAQ_WORKER_LOCAL_COMMUNICATOR_H_
#define BAQ_WORKER_LOCAL_COMMUNICATOR_H_

#include <memory>
#include <vector>

#include "worker/communicator.h"

namespace baq::worker {

class LocalCommunicator final : public Communicator {
 public:
  LocalCommunicator() = default;

  // OK for any defined tensor (InvalidArgument for an undefined one).
  absl::Status AllReduceSum(at::Tensor& tensor, absl::Duration timeout) override;
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
};

// REQUIRES: world_size >= 1. The communicators share their rendezvous; it
// lives as long as any of them.
std::vector<std::unique_ptr<Communicator>> MakeInProcessCommunicators(int world_size);

}  // namespace baq::worker

#endif  // BAQ_WORKER_LOCAL_COMMUNICATOR_H_

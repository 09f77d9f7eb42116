// worker/nccl/nccl_communicator.h
//
// The NCCL backend of Communicator (STYLE R4, R13, R21): one rank per CUDA
// device, all-reduce of CUDA tensors. Built only with BAQ_WITH_NCCL; code
// outside worker/nccl/ reaches it through communicator_factory.h. This header
// names no NCCL or CUDA type: nccl_communicator.cc is the only file that
// includes <nccl.h>.
//
// Each communicator is NCCL's non-blocking kind (ncclConfig_t.blocking = 0):
// no NCCL call blocks the caller. A collective runs on the communicator's own
// CUDA stream, created blocking, so it is ordered after the work LibTorch
// queued on the device's default (legacy) stream and that stream's later work
// waits for it. REQUIRES: the caller's LibTorch work runs on the default
// stream (our executors do). AllReduceSum returns once the reduction is done.
//
// Watchdog: a thread per communicator polls the collective in flight
// (cudaEventQuery, ncclCommGetAsyncError); on an asynchronous NCCL error or
// when the timeout passes, it logs what was in flight, calls ncclCommAbort
// and fails the call with Internal/Unavailable or DeadlineExceeded. Every later
// call returns Aborted and Health() reports why. The destructor aborts the
// communicator too (local, never waits for peers), after its last collective.
//
// Thread-compatible: one thread (the device's executor) calls a communicator;
// Health() is thread-safe.
//
// Example (one process, two GPUs, one executor thread per GPU):
//   BAQ_ASSIGN_OR_RETURN(auto comms, CreateLocalNcclGroup({0, 1}, absl::Minutes(1)));
//   // thread of GPU i: BAQ_RETURN_IF_ERROR(comms[i]->AllReduceSum(t_i, absl::Minutes(5)));
// Several processes: rank 0 calls NewNcclUniqueId() and sends the bytes to the
// others (e.g. through the coordinator); every rank calls CreateNcclCommunicator.
#ifndef BAQ_WORKER_NCCL_NCCL_COMMUNICATOR_H_
#define BAQ_WORKER_NCCL_NCCL_COMMUNICATOR_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "worker/communicator.h"

namespace baq::worker {

struct NcclCommunicatorOptions {
  // CUDA device index of this rank.
  int device_index = 0;
  int rank = 0;
  int world_size = 1;
  // NewNcclUniqueId() of rank 0 (128 bytes), the same on every rank.
  std::string unique_id;
  // How long the communicator's creation may wait for its peers.
  absl::Duration init_timeout = absl::Minutes(5);
  // How often the watchdog polls a collective in flight.
  absl::Duration poll_interval = absl::Microseconds(20);
};

// A fresh NCCL unique id (ncclGetUniqueId) as bytes. Internal on failure.
absl::StatusOr<std::string> NewNcclUniqueId();

// One rank of a communicator; every rank calls this concurrently (other
// threads or processes). InvalidArgument on bad options; DeadlineExceeded if
// the peers do not all arrive within init_timeout; Internal/Unavailable on
// NCCL or CUDA errors.
absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(
    const NcclCommunicatorOptions& options);

// All ranks of a communicator in this process, rank i on device_indices[i],
// created from one thread (ncclGroupStart/End). Errors as above.
absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> CreateLocalNcclGroup(
    absl::Span<const int> device_indices, absl::Duration init_timeout);

// cudaGetDeviceCount(), 0 when CUDA reports an error (no driver, no device).
int NcclVisibleDeviceCount();

// "2.28.9" (the NCCL library's version, ncclGetVersion).
std::string NcclVersionString();

}  // namespace baq::worker

#endif  // BAQ_WORKER_NCCL_NCCL_COMMUNICATOR_H_

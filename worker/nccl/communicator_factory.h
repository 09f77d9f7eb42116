// worker/nccl/communicator_factory.h
//
// Builds the communicators of one worker's devices (STYLE R4): the one place
// that knows whether this build has NCCL (BAQ_WITH_NCCL). Always compiled;
// code above it depends only on Communicator.
//
//   one device (any kind)      -> LocalCommunicator
//   several CUDA devices, NCCL -> one NCCL communicator per device, one process
//   several devices otherwise  -> Unimplemented (or, with allow_in_process,
//                                 the in-process group of local_communicator.h:
//                                 correct on any device, but slow for CUDA)
//
// Thread-safe (stateless). The returned communicators are used one per
// device executor thread, rank i on devices[i].
//
// Example (a worker that owns two GPUs):
//   BAQ_ASSIGN_OR_RETURN(std::vector<std::unique_ptr<Communicator>> comms,
//                        MakeDeviceCommunicators({at::Device("cuda:0"), at::Device("cuda:1")},
//                                                CommunicatorOptions{}));
#ifndef BAQ_WORKER_NCCL_COMMUNICATOR_FACTORY_H_
#define BAQ_WORKER_NCCL_COMMUNICATOR_FACTORY_H_

#include <c10/core/Device.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "worker/communicator.h"

namespace baq::worker {

struct CommunicatorOptions {
  // How long creating a multi-device communicator may wait for its ranks.
  absl::Duration init_timeout = absl::Minutes(1);
  // Without NCCL (or for CPU devices), fall back to the in-process group.
  bool allow_in_process = false;
  // Use NCCL even for a single CUDA device (tests; timing the collective path).
  bool nccl_for_single_device = false;
};

// Errors: InvalidArgument for no devices or duplicates; Unimplemented when
// several CUDA devices need NCCL and this build has none; the NCCL errors of
// nccl_communicator.h.
absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> MakeDeviceCommunicators(
    absl::Span<const c10::Device> devices, const CommunicatorOptions& options);

// Jobs whose ranks live in several processes: rank 0 makes the id
// (NewCommunicatorId) and it travels to every rank (e.g. in the job spec);
// each rank calls MakeCommunicatorRank concurrently. Unimplemented without
// NCCL; InvalidArgument for a non-CUDA device; DeadlineExceeded if the peers
// do not all arrive within options.init_timeout.
absl::StatusOr<std::string> NewCommunicatorId();
absl::StatusOr<std::unique_ptr<Communicator>> MakeCommunicatorRank(
    c10::Device device, int rank, int world_size, const std::string& id,
    const CommunicatorOptions& options);

// Whether this binary was built with BAQ_WITH_NCCL.
bool HasNcclBackend();

// CUDA devices NCCL can use (0 without NCCL, driver or device).
int NcclDeviceCount();

// The NCCL library's version, or "none" without NCCL.
std::string NcclBackendVersion();

}  // namespace baq::worker

#endif  // BAQ_WORKER_NCCL_COMMUNICATOR_FACTORY_H_

// worker/nccl/communicator_factory.cc: with nccl_communicator.cc, the only
// file that tests BAQ_WITH_NCCL (STYLE R4).
#include "worker/nccl/communicator_factory.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "worker/local_communicator.h"
#if BAQ_WITH_NCCL
#include "worker/nccl/nccl_communicator.h"
#endif

namespace baq::worker {

bool HasNcclBackend() { return BAQ_WITH_NCCL != 0; }

int NcclDeviceCount() {
#if BAQ_WITH_NCCL
  return NcclVisibleDeviceCount();
#else
  return 0;
#endif
}

std::string NcclBackendVersion() {
#if BAQ_WITH_NCCL
  return NcclVersionString();
#else
  return "none";
#endif
}

absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> MakeDeviceCommunicators(
    absl::Span<const c10::Device> devices, const CommunicatorOptions& options) {
  if (devices.empty()) return absl::InvalidArgumentError("no devices");
  for (size_t i = 0; i < devices.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (devices[i] == devices[j]) {
        return absl::InvalidArgumentError(
            absl::StrCat("device ", devices[i].str(), " listed twice"));
      }
    }
  }
  std::vector<std::unique_ptr<Communicator>> comms;
  if (devices.size() == 1 && !(options.nccl_for_single_device && devices[0].is_cuda())) {
    comms.push_back(std::make_unique<LocalCommunicator>());
    return comms;
  }
  bool all_cuda = true;
  for (const c10::Device& d : devices) all_cuda = all_cuda && d.is_cuda() && d.has_index();
#if BAQ_WITH_NCCL
  if (all_cuda) {
    std::vector<int> indices;
    for (const c10::Device& d : devices) indices.push_back(d.index());
    return CreateLocalNcclGroup(indices, options.init_timeout);
  }
#endif
  if (devices.size() == 1) {
    return absl::UnimplementedError("nccl_for_single_device needs NCCL (BAQ_WITH_NCCL) and cuda:N");
  }
  if (options.allow_in_process) {
    return MakeInProcessCommunicators(static_cast<int>(devices.size()));
  }
  return absl::UnimplementedError(absl::StrCat(
      devices.size(), " devices need a multi-rank communicator: ",
      all_cuda ? "this build has no NCCL (configure with -DBAQ_WITH_NCCL=ON)"
               : "use CUDA devices with explicit indices, or allow_in_process"));
}

absl::StatusOr<std::string> NewCommunicatorId() {
#if BAQ_WITH_NCCL
  return NewNcclUniqueId();
#else
  return absl::UnimplementedError("multi-process communicators need NCCL (BAQ_WITH_NCCL)");
#endif
}

absl::StatusOr<std::unique_ptr<Communicator>> MakeCommunicatorRank(
    c10::Device device, int rank, int world_size, const std::string& id,
    const CommunicatorOptions& options) {
  if (!device.is_cuda() || !device.has_index()) {
    return absl::InvalidArgumentError(
        absl::StrCat("multi-process communicators need a CUDA device with an index, got ",
                     device.str()));
  }
#if BAQ_WITH_NCCL
  NcclCommunicatorOptions nccl;
  nccl.device_index = device.index();
  nccl.rank = rank;
  nccl.world_size = world_size;
  nccl.unique_id = id;
  nccl.init_timeout = options.init_timeout;
  return CreateNcclCommunicator(nccl);
#else
  return absl::UnimplementedError("multi-process communicators need NCCL (BAQ_WITH_NCCL)");
#endif
}

}  // namespace baq::worker

// worker/engine/device_group.h
//
// DeviceGroup: the devices one TorchBlockEngine spans ("cuda:0+cuda:1"), one
// rank each, with the rank's communicator (rank = index; rank 0's device
// holds the embeddings and the block-boundary activations). OnRanks() runs
// a function on every rank at once: rank 0 on the calling thread (the
// engine's device executor), rank r > 0 on a persistent thread of its own,
// created with the group and joined by its destructor (STYLE R19/R20: no
// thread per call). Forward() deals calibration chunks over the ranks.
//
// Thread-compatible: one thread (the engine's caller) uses the group.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(std::vector<at::Device> devices, ParseDevices("cpu+cpu"));
//   BAQ_ASSIGN_OR_RETURN(std::unique_ptr<DeviceGroup> group, DeviceGroup::Create(devices));
//   BAQ_RETURN_IF_ERROR(group->OnRanks([&](int r) { return Work(group->device(r)); }));
#ifndef BAQ_WORKER_ENGINE_DEVICE_GROUP_H_
#define BAQ_WORKER_ENGINE_DEVICE_GROUP_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/job_config.h"
#include "worker/communicator.h"
#include "worker/model/decoder_block.h"
#include "worker/quant/hessian_accumulator.h"

namespace baq::worker {

// Calibration windows per forward call: bounds attention memory. Also the
// unit by which windows are dealt to devices, Hessian partials and shards.
inline constexpr int64_t kWindowsPerForward = kCalibrationWindowsPerChunk;

// Parses a device list: "cpu", "cuda", "cuda:N", several joined by '+' or
// ','. InvalidArgument for an unparsable list or mixed CPU and CUDA devices;
// Unavailable for CUDA in a build or on a machine without it.
absl::StatusOr<std::vector<at::Device>> ParseDevices(const std::string& spec);

class DeviceGroup {
 public:
  // Makes the ranks' communicators (the in-process group for several CPU
  // "devices", NCCL for several GPUs: the communicator factory's errors) and
  // starts a thread per extra rank. REQUIRES: `devices` from ParseDevices.
  static absl::StatusOr<std::unique_ptr<DeviceGroup>> Create(std::vector<at::Device> devices);
  ~DeviceGroup();

  DeviceGroup(const DeviceGroup&) = delete;
  DeviceGroup& operator=(const DeviceGroup&) = delete;

  int world() const { return static_cast<int>(ranks_.size()); }
  const at::Device& device(int rank) const { return ranks_[rank].device; }
  // Rank 0's device: embeddings and activations live here.
  const at::Device& first() const { return ranks_.front().device; }

  // Runs fn(rank) for every rank at once, each with its device current, and
  // returns the first error in rank order (naming the device when there are
  // several). LibTorch exceptions become Status. REQUIRES: with world() > 1,
  // not called from inside another OnRanks().
  absl::Status OnRanks(const std::function<absl::Status(int)>& fn);

  // Runs the windows of `x` through the block, kWindowsPerForward at a time:
  // chunk c on rank c % world() (replicas[rank]); chunk_of_rank(r) names the
  // chunk rank r is forwarding, for the Hessian observers. With `out`
  // defined, each chunk's output is copied into it in window order (memory
  // or a spill file). `check` runs before each chunk (cancellation).
  absl::Status Forward(const std::vector<DecoderBlock*>& replicas, const at::Tensor& x,
                       at::Tensor out, const std::function<absl::Status()>& check);
  int64_t chunk_of_rank(int rank) const { return chunk_of_rank_[rank]; }

  // Sums the Hessian partials in partial order: with one rank, merges them
  // into partials[0]; with several (one partial each), all-reduces them in
  // rank order so that every rank's partial holds p_0 + p_1 + ... (the same
  // additions as the merge).
  absl::Status ReducePartials(std::vector<std::map<int, HessianAccumulator>>& partials);

 private:
  struct Rank {
    at::Device device;
    std::unique_ptr<Communicator> communicator;
  };
  class RankThread;

  explicit DeviceGroup(std::vector<Rank> ranks);

  const std::vector<Rank> ranks_;
  std::vector<int64_t> chunk_of_rank_;  // Written by rank r's thread only.
  // threads_[r - 1] runs rank r's share. Last: joined first.
  std::vector<std::unique_ptr<RankThread>> threads_;
};

}  // namespace baq::worker

#endif  // BAQ_WORKER_ENGINE_DEVICE_GROUP_H_

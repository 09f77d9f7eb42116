#include "worker/engine/device_group.h"

#include <c10/core/DeviceGuard.h>

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "common/trace_recorder.h"
#include "worker/local_communicator.h"
#include "worker/nccl/communicator_factory.h"
#include "worker/torch/torch_call.h"

namespace baq::worker {
namespace {

// Bound on one Hessian all-reduce between the devices of one engine (a peer
// that failed earlier in the same call makes the others wait this long).
constexpr absl::Duration kCollectiveTimeout = absl::Minutes(5);

absl::StatusOr<at::Device> ParseDevice(const std::string& device) {
  if (device == "cpu") return at::Device(at::kCPU);
  int index = 0;
  if (device == "cuda" || (absl::StartsWith(device, "cuda:") &&
                           absl::SimpleAtoi(device.substr(5), &index) && index >= 0)) {
    if (!at::hasCUDA()) {
      return absl::UnavailableError(absl::StrCat("device ", device,
                                                 ": this build or machine has no CUDA"));
    }
    return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown device \"", device, "\" (use cpu, cuda or cuda:N)"));
}

}  // namespace

absl::StatusOr<std::vector<at::Device>> ParseDevices(const std::string& spec) {
  std::vector<at::Device> devices;
  for (absl::string_view part : absl::StrSplit(spec, absl::ByAnyChar("+,"))) {
    BAQ_ASSIGN_OR_RETURN(at::Device d, ParseDevice(std::string(part)));
    if (!devices.empty() && d.type() != devices.front().type()) {
      return absl::InvalidArgumentError(
          absl::StrCat("device list \"", spec, "\" mixes CPU and CUDA devices"));
    }
    devices.push_back(d);
  }
  return devices;
}

// One persistent thread that runs one task at a time for its rank.
class DeviceGroup::RankThread {
 public:
  RankThread() : thread_([this] { Loop(); }) {}
  ~RankThread() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    thread_.join();
  }

  // REQUIRES: the previous task was waited for.
  void Start(std::function<void()> task) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    task_ = std::move(task);
    done_ = false;
  }
  void Wait() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
  }

 private:
  bool HasWork() const ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || task_ != nullptr; }

  void Loop() ABSL_LOCKS_EXCLUDED(mu_) {
    while (true) {
      std::function<void()> task;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &RankThread::HasWork));
        if (task_ == nullptr) return;  // Stopping, nothing queued.
        task = std::move(task_);
        task_ = nullptr;
      }
      task();
      absl::MutexLock lock(&mu_);
      done_ = true;
    }
  }

  absl::Mutex mu_;
  std::function<void()> task_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = true;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // Last: started after the state above.
};

absl::StatusOr<std::unique_ptr<DeviceGroup>> DeviceGroup::Create(
    std::vector<at::Device> devices) {
  const int world = static_cast<int>(devices.size());
  std::vector<std::unique_ptr<Communicator>> comms;
  if (world == 1) {
    comms.push_back(std::make_unique<LocalCommunicator>());
  } else if (devices.front().is_cpu()) {
    comms = MakeInProcessCommunicators(world);
  } else {
    BAQ_ASSIGN_OR_RETURN(comms, MakeDeviceCommunicators(devices, CommunicatorOptions{}));
  }
  if (world > 1 && devices.front().is_cuda()) {
    // LibTorch loads its CUDA linear-algebra library on the first linalg call,
    // and that lazy load is not thread-safe ("lazy wrapper should be called at
    // most once" when two device threads race): do it here, on one thread.
    BAQ_RETURN_IF_ERROR(CallTorch("CUDA linalg warm-up", [&] {
      for (const at::Device& d : devices) {
        (void)at::linalg_cholesky_ex(at::eye(1, at::TensorOptions().device(d)));
      }
    }));
  }
  std::vector<Rank> ranks;
  for (int r = 0; r < world; ++r) ranks.push_back(Rank{devices[r], std::move(comms[r])});
  return std::unique_ptr<DeviceGroup>(new DeviceGroup(std::move(ranks)));
}

DeviceGroup::DeviceGroup(std::vector<Rank> ranks)
    : ranks_(std::move(ranks)), chunk_of_rank_(ranks_.size(), 0) {
  for (size_t r = 1; r < ranks_.size(); ++r) threads_.push_back(std::make_unique<RankThread>());
}

DeviceGroup::~DeviceGroup() = default;

absl::Status DeviceGroup::OnRanks(const std::function<absl::Status(int)>& fn) {
  const int n = world();
  std::vector<absl::Status> status(n);
  auto run = [&](int r) {
    status[r] = CallTorch("device thread", [&]() -> absl::Status {
      c10::DeviceGuard guard(ranks_[r].device);
      return fn(r);
    });
  };
  for (int r = 1; r < n; ++r) threads_[r - 1]->Start([&run, r] { run(r); });
  run(0);
  for (int r = 1; r < n; ++r) threads_[r - 1]->Wait();
  for (int r = 0; r < n; ++r) {
    if (!status[r].ok()) {
      return n == 1 ? status[r]
                    : Annotate(status[r], absl::StrCat("device ", r, " (",
                                                       ranks_[r].device.str(), ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status DeviceGroup::Forward(const std::vector<DecoderBlock*>& replicas, const at::Tensor& x,
                                  at::Tensor out, const std::function<absl::Status()>& check) {
  BAQ_TRACE_SCOPE("engine", "forward", {{"windows", x.size(0)}});
  const int n = world();
  const int64_t chunks = (x.size(0) + kWindowsPerForward - 1) / kWindowsPerForward;
  return OnRanks([&](int r) -> absl::Status {
    for (int64_t c = r; c < chunks; c += n) {
      BAQ_RETURN_IF_ERROR(check());
      chunk_of_rank_[r] = c;
      BAQ_TRACE_SCOPE("engine", "forward_chunk", {{"chunk", c}, {"rank", r}});
      const int64_t s = c * kWindowsPerForward;
      const int64_t e = std::min(x.size(0), s + kWindowsPerForward);
      // A no-op view unless the rank is another device or x is spilled.
      const at::Tensor in = x.slice(0, s, e).to(ranks_[r].device);
      BAQ_ASSIGN_OR_RETURN(at::Tensor y, replicas[r]->Forward(in));
      if (out.defined()) out.slice(0, s, e).copy_(y);
    }
    return absl::OkStatus();
  });
}

absl::Status DeviceGroup::ReducePartials(
    std::vector<std::map<int, HessianAccumulator>>& partials) {
  BAQ_TRACE_SCOPE("engine", "hessian_reduce_partials", {{"partials", partials.size()}});
  if (ranks_.size() == 1) {
    return CallTorch("merge Hessian partials", [&]() -> absl::Status {
      for (size_t p = 1; p < partials.size(); ++p) {
        for (auto& [group, acc] : partials[0]) {
          BAQ_RETURN_IF_ERROR(acc.Merge(partials[p].at(group)));
        }
      }
      return absl::OkStatus();
    });
  }
  return OnRanks([&](int r) -> absl::Status {
    for (auto& [group, acc] : partials[r]) {
      BAQ_RETURN_IF_ERROR(AllReduceHessian(acc, *ranks_[r].communicator, kCollectiveTimeout,
                                           HessianReduction::kRankOrdered));
    }
    return absl::OkStatus();
  });
}

}  // namespace baq::worker

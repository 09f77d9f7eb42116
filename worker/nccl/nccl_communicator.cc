// worker/nccl/nccl_communicator.cc: the only file that includes <nccl.h>.
#include "worker/nccl/nccl_communicator.h"

#include <ATen/core/Tensor.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstdint>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace baq::worker {
namespace {

// c10d's C10D_NCCL_CHECK idea (file:line, NCCL's own message), but returning
// a Status (STYLE R13). ncclInProgress is not an error: a non-blocking
// communicator reports it while a call is still being enqueued.
absl::Status NcclError(ncclResult_t result, const char* call, const char* file, int line) {
  const std::string message = absl::StrCat(file, ":", line, ": ", call, ": ",
                                           ncclGetErrorString(result), " (",
                                           ncclGetLastError(nullptr), ")");
  switch (result) {
    case ncclInvalidArgument:
      return absl::InvalidArgumentError(message);
    case ncclSystemError:  // sockets, shared memory: a peer or the host
    case ncclRemoteError:  // a peer failed
      return absl::UnavailableError(message);
    default:  // ncclUnhandledCudaError, ncclInternalError, ncclInvalidUsage
      return absl::InternalError(message);
  }
}

absl::Status CudaError(cudaError_t error, const char* call, const char* file, int line) {
  const std::string message =
      absl::StrCat(file, ":", line, ": ", call, ": ", cudaGetErrorString(error));
  if (error == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(message);
  const bool bad_argument = error == cudaErrorInvalidDevice || error == cudaErrorInvalidValue;
  return bad_argument ? absl::InvalidArgumentError(message) : absl::InternalError(message);
}

#define BAQ_RETURN_IF_NCCL_ERROR(call)                                                       \
  do {                                                                                       \
    const ncclResult_t baq_nccl_result_ = (call);                                            \
    if (baq_nccl_result_ != ncclSuccess && baq_nccl_result_ != ncclInProgress)               \
      return NcclError(baq_nccl_result_, #call, __FILE__, __LINE__);                         \
  } while (0)
#define BAQ_RETURN_IF_CUDA_ERROR(call)                                                       \
  do {                                                                                       \
    const cudaError_t baq_cuda_error_ = (call);                                              \
    if (baq_cuda_error_ != cudaSuccess)                                                      \
      return CudaError(baq_cuda_error_, #call, __FILE__, __LINE__);                          \
  } while (0)

std::optional<ncclDataType_t> ToNcclType(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kInt: return ncclInt32;
    case at::kLong: return ncclInt64;
    case at::kByte: return ncclUint8;
    case at::kChar: return ncclInt8;
    default: return std::nullopt;
  }
}

// Polls a non-blocking communicator until its pending call (init, group end)
// finishes; aborts it on error or after `deadline`.
absl::Status WaitUntilReady(ncclComm_t comm, absl::Time deadline, const char* what) {
  while (true) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t r = ncclCommGetAsyncError(comm, &state);
    if (r != ncclSuccess) state = r;
    if (state == ncclSuccess) return absl::OkStatus();
    if (state != ncclInProgress) {
      absl::Status s = NcclError(state, what, __FILE__, __LINE__);
      ncclCommAbort(comm);
      return s;
    }
    if (absl::Now() > deadline) {
      ncclCommAbort(comm);
      return absl::DeadlineExceededError(
          absl::StrCat(what, ": peers did not all arrive before the deadline"));
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
}

ncclConfig_t NonBlockingConfig() {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  return config;
}
class NcclCommunicator final : public Communicator {
 public:
  // Takes ownership of a ready `comm` (aborted on error).
  static absl::StatusOr<std::unique_ptr<Communicator>> Wrap(ncclComm_t comm, int device,
                                                            int rank, int world_size,
                                                            absl::Duration poll_interval) {
    cudaStream_t stream = nullptr;
    cudaEvent_t event = nullptr;
    const absl::Status s = [&]() -> absl::Status {
      BAQ_RETURN_IF_CUDA_ERROR(cudaSetDevice(device));
      BAQ_RETURN_IF_CUDA_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamDefault));
      BAQ_RETURN_IF_CUDA_ERROR(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
      return absl::OkStatus();
    }();
    if (!s.ok()) {
      if (event != nullptr) cudaEventDestroy(event);
      if (stream != nullptr) cudaStreamDestroy(stream);
      ncclCommAbort(comm);
      return s;
    }
    return std::unique_ptr<Communicator>(
        new NcclCommunicator(comm, device, rank, world_size, stream, event, poll_interval));
  }

  ~NcclCommunicator() override {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    watchdog_.join();
    cudaSetDevice(device_);
    // Abort, not destroy: local, never waits for peers; every collective of
    // this rank has completed (AllReduceSum waits), as c10d does at shutdown.
    if (comm_ != nullptr) ncclCommAbort(comm_);
    cudaEventDestroy(event_);
    cudaStreamDestroy(stream_);
  }

  absl::Status AllReduceSum(at::Tensor& tensor, absl::Duration timeout) override {
    if (!tensor.defined() || !tensor.is_cuda() || tensor.get_device() != device_ ||
        !tensor.is_contiguous()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "NCCL AllReduceSum: expected a contiguous tensor on cuda:", device_, ", got ",
          tensor.defined() ? tensor.toString() + " on " + tensor.device().str()
                           : std::string("undefined")));
    }
    const std::optional<ncclDataType_t> type = ToNcclType(tensor.scalar_type());
    if (!type.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("NCCL AllReduceSum: unsupported dtype ", tensor.toString()));
    }
    const absl::Time deadline = absl::Now() + timeout;
    absl::MutexLock lock(&mu_);
    if (comm_ == nullptr) {
      return absl::AbortedError(
          absl::StrCat("NCCL communicator aborted: ", abort_status_.ToString()));
    }
    if (tensor.numel() == 0) return absl::OkStatus();
    const uint64_t seq = ++seq_;
    what_ = absl::StrCat("AllReduceSum #", seq, " of ", tensor.toString(), " [",
                         absl::StrJoin(tensor.sizes(), ", "), "] on rank ", rank_, "/",
                         world_size_, " (cuda:", device_, ")");
    absl::Status issued = [&]() -> absl::Status {
      BAQ_RETURN_IF_CUDA_ERROR(cudaSetDevice(device_));
      const ncclResult_t r =
          ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                        *type, ncclSum, comm_, stream_);
      BAQ_RETURN_IF_NCCL_ERROR(r);
      enqueued_ = (r == ncclSuccess);
      if (enqueued_) BAQ_RETURN_IF_CUDA_ERROR(cudaEventRecord(event_, stream_));
      return absl::OkStatus();
    }();
    if (!issued.ok()) {
      AbortLocked(issued);
      return issued;
    }
    deadline_ = deadline;
    done_seq_status_ = absl::OkStatus();
    in_flight_ = true;
    // The watchdog finishes the call; wait past the deadline only to let it
    // abort first, so the error names the cause.
    const auto finished = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !in_flight_; };
    if (!mu_.AwaitWithDeadline(absl::Condition(&finished), deadline + absl::Seconds(30))) {
      in_flight_ = false;
      AbortLocked(absl::DeadlineExceededError(
          absl::StrCat(what_, ": the watchdog did not finish it")));
      return abort_status_;
    }
    return done_seq_status_;
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  absl::Status Health() const override {
    absl::MutexLock lock(&mu_);
    return abort_status_;
  }

 private:
  NcclCommunicator(ncclComm_t comm, int device, int rank, int world_size, cudaStream_t stream,
                   cudaEvent_t event, absl::Duration poll_interval)
      : device_(device),
        rank_(rank),
        world_size_(world_size),
        poll_interval_(poll_interval),
        stream_(stream),
        event_(event),
        comm_(comm) {
    watchdog_ = std::thread([this] { WatchdogLoop(); });
  }

  // Logs, aborts the communicator (once) and records why.
  void AbortLocked(absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::cerr << "baq-worker: aborting NCCL communicator rank " << rank_ << "/" << world_size_
              << " on cuda:" << device_ << ": " << status << "; in flight: " << what_ << "\n";
    if (comm_ != nullptr) ncclCommAbort(comm_);
    comm_ = nullptr;
    if (abort_status_.ok()) abort_status_ = std::move(status);
  }

  // One look at the collective in flight; returns true once it is finished
  // (done_seq_status_ says how).
  bool PollLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
    if (r != ncclSuccess) state = r;
    if (state != ncclSuccess && state != ncclInProgress) {
      done_seq_status_ = NcclError(state, what_.c_str(), __FILE__, __LINE__);
      AbortLocked(done_seq_status_);
      return true;
    }
    if (!enqueued_ && state == ncclSuccess) {
      const cudaError_t e = cudaEventRecord(event_, stream_);
      if (e != cudaSuccess) {
        done_seq_status_ = CudaError(e, "cudaEventRecord", __FILE__, __LINE__);
        AbortLocked(done_seq_status_);
        return true;
      }
      enqueued_ = true;
    }
    if (enqueued_) {
      const cudaError_t e = cudaEventQuery(event_);
      if (e == cudaSuccess) return true;
      if (e != cudaErrorNotReady) {
        done_seq_status_ = CudaError(e, "cudaEventQuery", __FILE__, __LINE__);
        AbortLocked(done_seq_status_);
        return true;
      }
    }
    if (absl::Now() > deadline_) {
      done_seq_status_ = absl::DeadlineExceededError(
          absl::StrCat(what_, ": timed out (a peer did not join or is stuck)"));
      AbortLocked(done_seq_status_);
      return true;
    }
    return false;
  }

  void WatchdogLoop() ABSL_LOCKS_EXCLUDED(mu_) {
    cudaSetDevice(device_);
    absl::MutexLock lock(&mu_);
    const auto work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stop_ || in_flight_;
    };
    while (true) {
      mu_.Await(absl::Condition(&work));
      if (stop_) return;
      if (PollLocked()) {
        in_flight_ = false;
        continue;
      }
      // Sleep without the lock (stop_ wakes us early).
      mu_.AwaitWithTimeout(absl::Condition(&stop_), poll_interval_);
    }
  }

  // Constant after construction.
  const int device_;
  const int rank_;
  const int world_size_;
  const absl::Duration poll_interval_;
  cudaStream_t const stream_;  // blocking w.r.t. the legacy default stream
  cudaEvent_t const event_;    // recorded after each collective

  mutable absl::Mutex mu_;
  // Null once aborted; abort_status_ then says why.
  ncclComm_t comm_ ABSL_GUARDED_BY(mu_);
  absl::Status abort_status_ ABSL_GUARDED_BY(mu_);
  // The collective in flight: set by the caller, finished by the watchdog.
  bool in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool enqueued_ ABSL_GUARDED_BY(mu_) = false;  // event_ recorded after it
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time deadline_ ABSL_GUARDED_BY(mu_);
  std::string what_ ABSL_GUARDED_BY(mu_);
  absl::Status done_seq_status_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;

  std::thread watchdog_;  // last: started once the rest is initialized
};

}  // namespace

absl::StatusOr<std::string> NewNcclUniqueId() {
  ncclUniqueId id;
  BAQ_RETURN_IF_NCCL_ERROR(ncclGetUniqueId(&id));
  return std::string(id.internal, sizeof(id.internal));
}

absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(
    const NcclCommunicatorOptions& options) {
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("NCCL: bad rank ", options.rank,
                                                   " of world ", options.world_size));
  }
  ncclUniqueId id;
  if (options.unique_id.size() != sizeof(id.internal)) {
    return absl::InvalidArgumentError(absl::StrCat("NCCL: unique id has ",
                                                   options.unique_id.size(), " bytes, expected ",
                                                   sizeof(id.internal)));
  }
  std::memcpy(id.internal, options.unique_id.data(), sizeof(id.internal));
  BAQ_RETURN_IF_CUDA_ERROR(cudaSetDevice(options.device_index));
  ncclConfig_t config = NonBlockingConfig();
  ncclComm_t comm = nullptr;
  BAQ_RETURN_IF_NCCL_ERROR(
      ncclCommInitRankConfig(&comm, options.world_size, id, options.rank, &config));
  const absl::Status ready =
      WaitUntilReady(comm, absl::Now() + options.init_timeout, "ncclCommInitRankConfig");
  if (!ready.ok()) return ready;
  return NcclCommunicator::Wrap(comm, options.device_index, options.rank, options.world_size,
                                options.poll_interval);
}

absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> CreateLocalNcclGroup(
    absl::Span<const int> device_indices, absl::Duration init_timeout) {
  const int n = static_cast<int>(device_indices.size());
  absl::flat_hash_set<int> distinct(device_indices.begin(), device_indices.end());
  if (n == 0 || static_cast<int>(distinct.size()) != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("NCCL: need distinct devices, got [", absl::StrJoin(device_indices, ", "),
                     "]"));
  }
  ncclUniqueId id;
  BAQ_RETURN_IF_NCCL_ERROR(ncclGetUniqueId(&id));
  std::vector<ncclComm_t> comms(n, nullptr);
  ncclConfig_t config = NonBlockingConfig();
  absl::Status status = absl::OkStatus();
  BAQ_RETURN_IF_NCCL_ERROR(ncclGroupStart());
  for (int i = 0; i < n && status.ok(); ++i) {
    status = [&]() -> absl::Status {
      BAQ_RETURN_IF_CUDA_ERROR(cudaSetDevice(device_indices[i]));
      BAQ_RETURN_IF_NCCL_ERROR(ncclCommInitRankConfig(&comms[i], n, id, i, &config));
      return absl::OkStatus();
    }();
  }
  const ncclResult_t end = ncclGroupEnd();
  if (status.ok() && end != ncclSuccess && end != ncclInProgress) {
    status = NcclError(end, "ncclGroupEnd", __FILE__, __LINE__);
  }
  const absl::Time deadline = absl::Now() + init_timeout;
  std::vector<std::unique_ptr<Communicator>> out;
  for (int i = 0; i < n; ++i) {
    if (comms[i] == nullptr) continue;
    if (!status.ok()) {  // an earlier rank failed: drop the rest (the wrapped ones abort)
      ncclCommAbort(comms[i]);
      continue;
    }
    status = WaitUntilReady(comms[i], deadline, "ncclCommInitRankConfig (group)");  // aborts
    if (!status.ok()) continue;
    auto c = NcclCommunicator::Wrap(comms[i], device_indices[i], i, n, absl::Microseconds(20));
    if (c.ok()) out.push_back(*std::move(c));
    status = c.status();
  }
  if (!status.ok()) return status;
  return out;
}

int NcclVisibleDeviceCount() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}

std::string NcclVersionString() {
  int version = 0;
  if (ncclGetVersion(&version) != ncclSuccess) return "unknown";
  // NCCL >= 2.9 encodes major * 10000 + minor * 100 + patch.
  return absl::StrCat(version / 10000, ".", (version / 100) % 100, ".", version % 100);
}

}  // namespace baq::worker

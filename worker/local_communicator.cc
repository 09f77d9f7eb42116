// worker/local_communicator.cc
#include "worker/local_communicator.h"

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "worker/torch/torch_call.h"

namespace baq::worker {

absl::Status LocalCommunicator::AllReduceSum(at::Tensor& tensor, absl::Duration timeout) {
  if (!tensor.defined()) return absl::InvalidArgumentError("AllReduceSum: undefined tensor");
  return absl::OkStatus();
}

namespace {

std::string ShapeString(const at::Tensor& t) {
  return absl::StrCat("[", absl::StrJoin(t.sizes(), ", "), "] ", t.toString());
}

// The meeting point of the ranks of one in-process group. One round per
// collective: ranks register their tensor; the last one reduces and wakes
// the others.
class Rendezvous {
 public:
  explicit Rendezvous(int world_size) : world_size_(world_size), slots_(world_size, nullptr) {}

  absl::Status AllReduce(int rank, at::Tensor& tensor, absl::Duration timeout)
      ABSL_LOCKS_EXCLUDED(mu_) {
    const absl::Time deadline = absl::Now() + timeout;
    absl::MutexLock lock(&mu_);
    if (!abort_status_.ok()) return Aborted();
    if (!tensor.defined()) {
      abort_status_ = absl::InvalidArgumentError(
          absl::StrCat("AllReduceSum: rank ", rank, " passed an undefined tensor"));
      return abort_status_;
    }
    if (slots_[rank] != nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("AllReduceSum: rank ", rank, " is already in a collective"));
    }
    slots_[rank] = &tensor;
    ++arrived_;
    const uint64_t round = round_;
    if (arrived_ == world_size_) {
      absl::Status status = ReduceLocked();
      FinishRoundLocked(status);
      return status;
    }
    const auto round_over = [this, round]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return round_ != round || !abort_status_.ok();
    };
    mu_.AwaitWithDeadline(absl::Condition(&round_over), deadline);
    // A finished round is reported even if the group was aborted after it.
    if (round_ != round) return last_round_status_;
    if (!abort_status_.ok()) return Aborted();
    abort_status_ = absl::DeadlineExceededError(absl::StrCat(
        "AllReduceSum: rank ", rank, " timed out after ", absl::FormatDuration(timeout),
        " with ", arrived_, " of ", world_size_, " ranks arrived"));
    return abort_status_;
  }

  absl::Status Health() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return abort_status_;
  }

 private:
  absl::Status Aborted() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return absl::AbortedError(
        absl::StrCat("communicator aborted: ", abort_status_.ToString()));
  }

  // Sums the registered tensors in rank order into every slot.
  absl::Status ReduceLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const at::Tensor& first = *slots_[0];
    for (int r = 1; r < world_size_; ++r) {
      const at::Tensor& t = *slots_[r];
      if (t.sizes() != first.sizes() || t.scalar_type() != first.scalar_type()) {
        return absl::InvalidArgumentError(
            absl::StrCat("AllReduceSum: rank ", r, " has ", ShapeString(t), ", rank 0 has ",
                         ShapeString(first)));
      }
    }
    return CallTorch("InProcess AllReduceSum", [&] {
      at::Tensor sum = first.clone();
      for (int r = 1; r < world_size_; ++r) sum.add_(slots_[r]->to(sum.device()));
      for (int r = 0; r < world_size_; ++r) slots_[r]->copy_(sum);
    });
  }

  void FinishRoundLocked(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (at::Tensor*& slot : slots_) slot = nullptr;
    arrived_ = 0;
    ++round_;
    last_round_status_ = status;
    if (!status.ok()) abort_status_ = status;
  }

  const int world_size_;

  mutable absl::Mutex mu_;
  // Per rank: the caller's tensor while it waits in the current round.
  std::vector<at::Tensor*> slots_ ABSL_GUARDED_BY(mu_);
  int arrived_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t round_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status last_round_status_ ABSL_GUARDED_BY(mu_);
  // Not OK once the group is aborted; then every call fails.
  absl::Status abort_status_ ABSL_GUARDED_BY(mu_);
};

class InProcessCommunicator final : public Communicator {
 public:
  InProcessCommunicator(std::shared_ptr<Rendezvous> rendezvous, int rank, int world_size)
      : rendezvous_(std::move(rendezvous)), rank_(rank), world_size_(world_size) {}

  absl::Status AllReduceSum(at::Tensor& tensor, absl::Duration timeout) override {
    return rendezvous_->AllReduce(rank_, tensor, timeout);
  }
  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  absl::Status Health() const override { return rendezvous_->Health(); }

 private:
  const std::shared_ptr<Rendezvous> rendezvous_;
  const int rank_;
  const int world_size_;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> MakeInProcessCommunicators(int world_size) {
  auto rendezvous = std::make_shared<Rendezvous>(world_size);
  std::vector<std::unique_ptr<Communicator>> comms;
  comms.reserve(world_size);
  for (int r = 0; r < world_size; ++r) {
    comms.push_back(std::make_unique<InProcessCommunicator>(rendezvous, r, world_size));
  }
  return comms;
}

}  // namespace baq::worker

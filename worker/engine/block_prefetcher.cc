#include "worker/engine/block_prefetcher.h"

#include <c10/core/Event.h>
#include <c10/core/Stream.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <optional>
#include <utility>

#include "worker/model/block_factory.h"
#include "worker/torch/torch_call.h"

namespace baq::worker {

BlockPrefetcher::BlockPrefetcher()
    : result_(std::unique_ptr<DecoderBlock>()), thread_([this] { Loop(); }) {}

BlockPrefetcher::~BlockPrefetcher() {
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(+[](bool* busy) { return !*busy; }, &busy_));
    stopping_ = true;
  }
  thread_.join();
}

void BlockPrefetcher::Loop() {
  while (true) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &BlockPrefetcher::HasWork));
      if (task_ == nullptr) return;  // Stopping, nothing queued.
      task = std::move(task_);
      task_ = nullptr;
    }
    task();
    absl::MutexLock lock(&mu_);
    busy_ = false;
  }
}

void BlockPrefetcher::Start(const ModelConfig& model, const SafetensorsCheckpoint* ckpt,
                            int64_t block, const BlockOptions& options) {
  Clear();
  // On CUDA: a side stream that first waits for the caller's stream. The
  // event is recorded and waited on here, on the caller's thread, where the
  // caller's current stream is known.
  std::optional<c10::Stream> side;
  absl::Status ordered = CallTorch("prefetch stream", [&] {
    if (!options.device.is_cuda()) return;
    const c10::impl::DeviceGuardImplInterface* impl =
        c10::impl::getDeviceGuardImpl(options.device.type());
    side = impl->getStreamFromGlobalPool(options.device);
    c10::Event caller_done(options.device.type());
    caller_done.record(impl->getStream(options.device));
    caller_done.block(*side);
  });
  absl::MutexLock lock(&mu_);
  block_ = block;
  if (!ordered.ok()) {
    result_ = ordered;
    return;
  }
  busy_ = true;
  task_ = [this, model, ckpt, block, options, side] {
    absl::StatusOr<std::unique_ptr<DecoderBlock>> loaded;
    if (side.has_value()) {
      absl::Status status = CallTorch("prefetch block", [&]() -> absl::Status {
        const c10::StreamGuard guard(*side);
        loaded = LoadDecoderBlock(model, *ckpt, block, options);
        side->synchronize();  // Ready for any stream once taken.
        return absl::OkStatus();
      });
      if (!status.ok()) loaded = status;
    } else {
      loaded = LoadDecoderBlock(model, *ckpt, block, options);
    }
    absl::MutexLock lock(&mu_);
    result_ = std::move(loaded);
  };
}

void BlockPrefetcher::Wait() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(+[](bool* busy) { return !*busy; }, &busy_));
}

absl::StatusOr<std::unique_ptr<DecoderBlock>> BlockPrefetcher::Take(int64_t block) {
  Wait();
  absl::MutexLock lock(&mu_);
  if (block_ != block) return std::unique_ptr<DecoderBlock>();
  block_ = -1;
  absl::StatusOr<std::unique_ptr<DecoderBlock>> out = std::move(result_);
  result_ = std::unique_ptr<DecoderBlock>();
  return out;
}

void BlockPrefetcher::Clear() {
  Wait();
  absl::MutexLock lock(&mu_);
  block_ = -1;
  result_ = std::unique_ptr<DecoderBlock>();
}

}  // namespace baq::worker

#include "worker/engine/block_activations.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/trace_recorder.h"
#include "worker/activation_codec.h"
#include "worker/engine/device_group.h"
#include "worker/torch/torch_call.h"

namespace baq::worker {

void BlockActivations::Clear() {
  inputs_.clear();
  shard_inputs_.clear();
  handed_over_.reset();
}

absl::StatusOr<at::Tensor> BlockActivations::Keep(at::Tensor x) const {
  BAQ_TRACE_SCOPE("engine", "keep_activations", {{"bytes", x.numel() * x.element_size()}});
  BAQ_ASSIGN_OR_RETURN(at::Tensor kept,
                       AllocateActivations(x.sizes(), x.scalar_type(), device_, spill_));
  if (!IsSpilled(kept)) return x;
  return CallTorch("spill activations", [&] { return kept.copy_(x); });
}

absl::StatusOr<at::Tensor> BlockActivations::AllocateLike(const at::Tensor& x) const {
  return AllocateActivations(x.sizes(), x.scalar_type(), device_, spill_);
}

const at::Tensor* BlockActivations::Find(int64_t block) const {
  auto it = inputs_.find(block);
  return it == inputs_.end() ? nullptr : &it->second;
}

absl::StatusOr<std::string> BlockActivations::Export(int64_t block, bool hand_over) {
  BAQ_TRACE_SCOPE("engine", "encode_activations", {{"block", block}});
  auto it = inputs_.find(block);
  if (it == inputs_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("block ", block, ": no inputs to export on this worker"));
  }
  BAQ_ASSIGN_OR_RETURN(std::string bytes, EncodeActivations(it->second));
  if (hand_over) handed_over_ = block;
  return bytes;
}

absl::Status BlockActivations::Import(int64_t block, const std::string& bytes) {
  BAQ_TRACE_SCOPE("engine", "decode_activations", {{"block", block}, {"bytes", bytes.size()}});
  BAQ_ASSIGN_OR_RETURN(at::Tensor x, DecodeActivations(bytes, device_));
  BAQ_ASSIGN_OR_RETURN(inputs_[block], Keep(std::move(x)));
  return absl::OkStatus();
}

void BlockActivations::ReleaseHandedOver() {
  if (handed_over_.has_value()) inputs_.erase(*handed_over_);
  handed_over_.reset();
}

namespace {

// Shard k of S of the embedded windows `x`: chunks k, k + S, ... back to
// back. Every chunk but the last has kWindowsPerForward windows, so
// forwarding a shard runs exactly the chunks a run over all windows forwards.
absl::StatusOr<at::Tensor> ShardWindows(const at::Tensor& x, int k, int shards) {
  const int64_t chunks = (x.size(0) + kWindowsPerForward - 1) / kWindowsPerForward;
  if (chunks < shards) {
    return absl::InvalidArgumentError(
        absl::StrCat("calibration_shards = ", shards, " exceeds the ", chunks,
                     " calibration chunks of ", kWindowsPerForward, " windows"));
  }
  return CallTorch("split calibration shards", [&] {
    std::vector<at::Tensor> parts;
    for (int64_t c = k; c < chunks; c += shards) {
      const int64_t s = c * kWindowsPerForward;
      parts.push_back(x.slice(0, s, std::min(x.size(0), s + kWindowsPerForward)));
    }
    return at::cat(parts, 0);
  });
}

}  // namespace

absl::Status BlockActivations::SplitIntoShards(at::Tensor x, int shards) {
  for (int k = 0; k < shards; ++k) {
    BAQ_ASSIGN_OR_RETURN(at::Tensor shard, ShardWindows(x, k, shards));
    BAQ_ASSIGN_OR_RETURN(shard_inputs_[0][k], Keep(std::move(shard)));
  }
  return absl::OkStatus();
}

absl::Status BlockActivations::SetShardOf(at::Tensor x, int32_t shard, int shards) {
  BAQ_ASSIGN_OR_RETURN(at::Tensor part, ShardWindows(x, shard, shards));
  x = at::Tensor();
  BAQ_ASSIGN_OR_RETURN(shard_inputs_[0][shard], Keep(std::move(part)));
  return absl::OkStatus();
}

absl::Status BlockActivations::SetShard(int64_t block, int32_t shard, at::Tensor x) {
  BAQ_ASSIGN_OR_RETURN(shard_inputs_[block][shard], Keep(std::move(x)));
  return absl::OkStatus();
}

absl::Status BlockActivations::CheckShard(int64_t block, int32_t shard, int shards) const {
  if (shard < 0 || shard >= shards) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard ", shard, " out of range [0, ", shards, ")"));
  }
  auto held = shard_inputs_.find(block);
  if (held == shard_inputs_.end() || held->second.count(shard) == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "block ", block, ": inputs of calibration shard ", shard, " not present on this worker"));
  }
  return absl::OkStatus();
}

const at::Tensor& BlockActivations::Shard(int64_t block, int32_t shard) const {
  return shard_inputs_.at(block).at(shard);
}

void BlockActivations::KeepOnlyShards(int64_t block, const std::vector<int32_t>& keep) {
  std::map<int32_t, at::Tensor>& held = shard_inputs_[block];
  for (auto it = held.begin(); it != held.end();) {
    if (std::find(keep.begin(), keep.end(), it->first) == keep.end()) {
      it = held.erase(it);
    } else {
      ++it;
    }
  }
}

std::map<int32_t, at::Tensor> BlockActivations::HeldShards(int64_t block) const {
  auto it = shard_inputs_.find(block);
  return it == shard_inputs_.end() ? std::map<int32_t, at::Tensor>() : it->second;
}

void BlockActivations::SetShards(int64_t block, std::map<int32_t, at::Tensor> shards) {
  if (shards.empty()) return;
  std::map<int32_t, at::Tensor>& held = shard_inputs_[block];
  for (auto& [shard, x] : shards) held[shard] = std::move(x);
}

absl::StatusOr<std::string> BlockActivations::ExportShard(int64_t block, int32_t shard) {
  BAQ_TRACE_SCOPE("engine", "encode_activations", {{"block", block}, {"shard", shard}});
  auto held = shard_inputs_.find(block);
  auto it = held->second.find(shard);
  BAQ_ASSIGN_OR_RETURN(std::string bytes, EncodeActivations(it->second));
  held->second.erase(it);  // Handed over: the receiver owns the shard now.
  if (held->second.empty()) shard_inputs_.erase(held);
  return bytes;
}

absl::Status BlockActivations::ImportShard(int64_t block, int32_t shard,
                                           const std::string& bytes) {
  BAQ_TRACE_SCOPE("engine", "decode_activations",
                  {{"block", block}, {"shard", shard}, {"bytes", bytes.size()}});
  BAQ_ASSIGN_OR_RETURN(at::Tensor x, DecodeActivations(bytes, device_));
  BAQ_ASSIGN_OR_RETURN(shard_inputs_[block][shard], Keep(std::move(x)));
  return absl::OkStatus();
}

}  // namespace baq::worker

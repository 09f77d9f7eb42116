#include "worker/engine/sharded_hessians.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "common/trace_recorder.h"
#include "worker/model/block_factory.h"

namespace baq::worker {
namespace {

std::string FirstLayerOf(const DecoderBlock& b, int group) {
  for (const LinearLayerSpec& s : b.linear_layers()) {
    if (s.input_group == group) return s.name;
  }
  return "?";
}

// The block's state: each layer's Hessian finalized from its input group's
// merged sum. InvalidArgument (naming the layer) for an extra or misshapen
// sum. A missing sum is InvalidArgument unless `subset`: then the layers of
// the group get an undefined Hessian (LayerOwnership: an owner imports only
// its layers' groups; measuring or quantizing the others fails).
absl::StatusOr<BlockState> MakeBlockState(std::unique_ptr<DecoderBlock> b, int64_t block,
                                          std::map<int, HessianAccumulator>& sums, bool subset) {
  BlockState state;
  std::map<int, bool> used;
  for (const LinearLayerSpec& s : b->linear_layers()) {
    auto it = sums.find(s.input_group);
    if (it == sums.end() && subset) {
      state.hessians.emplace_back();
      continue;
    }
    if (it == sums.end()) {
      return absl::InvalidArgumentError(absl::StrCat("block ", block, ": no Hessian for ", s.name,
                                                     " (input group ", s.input_group, ")"));
    }
    if (it->second.num_columns() != s.in_features) {
      return absl::InvalidArgumentError(
          absl::StrCat("block ", block, ": Hessian for ", s.name, " has ",
                       it->second.num_columns(), " columns, the layer ", s.in_features));
    }
    used[s.input_group] = true;
    BAQ_ASSIGN_OR_RETURN(at::Tensor h, Annotate(it->second.Finalize(at::kFloat), s.name));
    state.hessians.push_back(std::move(h));
  }
  for (const auto& [group, acc] : sums) {
    if (used.count(group) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "block ", block, ": a Hessian for input group ", group, ", which the block lacks"));
    }
  }
  state.block = std::move(b);
  return state;
}

}  // namespace

absl::StatusOr<std::vector<std::map<int, HessianAccumulator>>> ShardedHessians::AccumulateShards(
    DecoderBlock& b, int64_t block, const std::vector<int32_t>& shards,
    const CancelCheck& check) {
  const std::vector<LinearLayerSpec>& specs = b.linear_layers();
  std::map<int, std::string> first_of_group;
  for (const LinearLayerSpec& s : specs) first_of_group.emplace(s.input_group, s.short_name);
  std::vector<std::map<int, HessianAccumulator>> partials(shards.size());
  for (size_t i = 0; i < shards.size(); ++i) {
    BAQ_TRACE_SCOPE("engine", "accumulate_shard", {{"block", block}, {"shard", shards[i]}});
    for (const LinearLayerSpec& s : specs) {
      if (partials[i].count(s.input_group) == 0) {
        partials[i].emplace(s.input_group, HessianAccumulator(s.in_features, group_->first()));
      }
    }
    b.set_input_observer([&](const LinearLayerSpec& l, const at::Tensor& x) {
      BAQ_RETURN_IF_ERROR(check());
      if (first_of_group.at(l.input_group) != l.short_name) return absl::OkStatus();
      BAQ_TRACE_SCOPE("engine", "hessian_add", {{"block", block}, {"layer", l.short_name}});
      return partials[i].at(l.input_group).Add(x);
    });
    absl::Status out = group_->Forward({&b}, activations_->Shard(block, shards[i]),
                                       at::Tensor(), check);
    b.set_input_observer(nullptr);
    BAQ_RETURN_IF_ERROR(out);
  }
  return partials;
}

absl::StatusOr<std::vector<HessianPartial>> ShardedHessians::Accumulate(
    const EngineJob& job, int64_t block, const std::vector<int32_t>& shards,
    const CancelCheck& check) {
  if (shards.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("block ", block, ": no shards to accumulate"));
  }
  for (size_t i = 0; i < shards.size(); ++i) {
    BAQ_RETURN_IF_ERROR(activations_->CheckShard(block, shards[i], job.config.calibration_shards));
    if (i > 0 && shards[i] <= shards[i - 1]) {
      return absl::InvalidArgumentError(
          absl::StrCat("block ", block, ": shards must be distinct and in increasing order"));
    }
  }
  // This engine owns `shards` of the block from now on: drop the others.
  activations_->KeepOnlyShards(block, shards);
  std::unique_ptr<DecoderBlock> b;
  std::vector<HessianPartial> out;
  BAQ_RETURN_IF_ERROR(group_->OnRanks([&](int) -> absl::Status {
    BAQ_ASSIGN_OR_RETURN(b, LoadDecoderBlock(job.model, *job.ckpt, block, job.block_options));
    BAQ_ASSIGN_OR_RETURN(auto partials, AccumulateShards(*b, block, shards, check));
    for (size_t i = 0; i < shards.size(); ++i) {
      for (auto& [group, acc] : partials[i]) {
        HessianPartial p;
        p.shard = shards[i];
        p.input_group = group;
        p.layer = FirstLayerOf(*b, group);
        // Half the bytes: the sum is symmetric and Finalize reads the upper
        // triangle only.
        p.bytes = acc.Serialize(HessianAccumulator::HessianLayout::kUpperTriangle);
        out.push_back(std::move(p));
      }
      partials[i].clear();  // Serialized: free it before the next shard's.
    }
    return absl::OkStatus();
  }));
  pending_[block] = std::move(b);
  return out;
}

absl::StatusOr<BlockState> ShardedHessians::Import(const EngineJob& job, int64_t block,
                                                   std::vector<HessianPartial> merged) {
  BlockState state;
  BAQ_RETURN_IF_ERROR(group_->OnRanks([&](int) -> absl::Status {
    std::unique_ptr<DecoderBlock> b;
    if (auto it = pending_.find(block); it != pending_.end()) {
      b = std::move(it->second);
      pending_.erase(it);
    } else {
      BAQ_ASSIGN_OR_RETURN(b, LoadDecoderBlock(job.model, *job.ckpt, block, job.block_options));
    }
    std::map<int, HessianAccumulator> sums;
    for (HessianPartial& p : merged) {
      const std::string what = absl::StrCat("block ", block, ": merged Hessian of input group ",
                                            p.input_group, " (", p.layer, ")");
      if (sums.count(p.input_group) > 0) {
        return absl::InvalidArgumentError(absl::StrCat(what, " given twice"));
      }
      BAQ_ASSIGN_OR_RETURN(HessianAccumulator acc,
                           Annotate(HessianAccumulator::Deserialize(p.bytes, group_->first()),
                                    what));
      std::string().swap(p.bytes);
      sums.emplace(p.input_group, std::move(acc));
    }
    BAQ_ASSIGN_OR_RETURN(state, MakeBlockState(std::move(b), block, sums, /*subset=*/true));
    return absl::OkStatus();
  }));
  return state;
}

absl::StatusOr<BlockState> ShardedHessians::AccumulateAll(const EngineJob& job, int64_t block,
                                                          const CancelCheck& check) {
  BlockState state;
  BAQ_RETURN_IF_ERROR(group_->OnRanks([&](int) -> absl::Status {
    const int shards = job.config.calibration_shards;
    std::vector<int32_t> all(shards);
    for (int32_t k = 0; k < shards; ++k) {
      all[k] = k;
      BAQ_RETURN_IF_ERROR(activations_->CheckShard(block, k, shards));
    }
    BAQ_ASSIGN_OR_RETURN(std::unique_ptr<DecoderBlock> b,
                         LoadDecoderBlock(job.model, *job.ckpt, block, job.block_options));
    BAQ_ASSIGN_OR_RETURN(auto partials, AccumulateShards(*b, block, all, check));
    for (size_t k = 1; k < partials.size(); ++k) {
      for (auto& [group, acc] : partials[0]) {
        BAQ_RETURN_IF_ERROR(acc.Merge(partials[k].at(group)));
      }
    }
    BAQ_ASSIGN_OR_RETURN(state,
                         MakeBlockState(std::move(b), block, partials[0], /*subset=*/false));
    return absl::OkStatus();
  }));
  return state;
}

std::unique_ptr<DecoderBlock> ShardedHessians::TakePending(int64_t block) {
  auto it = pending_.find(block);
  if (it == pending_.end()) return nullptr;
  std::unique_ptr<DecoderBlock> b = std::move(it->second);
  pending_.erase(it);
  return b;
}

absl::Status ShardedHessians::ForwardShards(int64_t block,
                                            const std::vector<DecoderBlock*>& replicas,
                                            const CancelCheck& check) {
  std::map<int32_t, at::Tensor> next;
  for (auto& [shard, x] : activations_->HeldShards(block)) {
    BAQ_TRACE_SCOPE("engine", "forward_shard", {{"block", block}, {"shard", shard}});
    BAQ_ASSIGN_OR_RETURN(at::Tensor y, activations_->AllocateLike(x));
    BAQ_RETURN_IF_ERROR(group_->Forward(replicas, x, y, check));
    next[shard] = std::move(y);
  }
  activations_->EraseShards(block);
  activations_->SetShards(block + 1, std::move(next));
  return absl::OkStatus();
}

}  // namespace baq::worker

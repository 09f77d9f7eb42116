#include "coordinator/resident_shards.h"

#include <algorithm>
#include <set>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/engine_capabilities.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "coordinator/calibration_shards.h"
#include "coordinator/layer_owners.h"

namespace baq::coordinator {
namespace {

// CapabilityOf for engines Supports() accepted.
LayerOwnership& Owner(BlockEngine* e) { return *CapabilityOf<LayerOwnership>(*e); }
ShardedCalibration& Sharding(BlockEngine* e) { return *CapabilityOf<ShardedCalibration>(*e); }

int64_t BytesOf(const std::vector<TensorBytes>& tensors) {
  int64_t n = 0;
  for (const TensorBytes& t : tensors) n += static_cast<int64_t>(t.bytes.size());
  return n;
}

}  // namespace

WireBytes& WireBytes::operator+=(const WireBytes& o) {
  hessian_partials += o.hessian_partials;
  hessian_merged += o.hessian_merged;
  weights += o.weights;
  outputs += o.outputs;
  activations += o.activations;
  return *this;
}

ResidentShards::ResidentShards(ResidentOptions options) : options_(std::move(options)) {
  shards_.resize(std::max(1, options_.shards));
}

absl::Status ResidentShards::Supports(const std::vector<BlockEngine*>& engines, int shards) {
  if (engines.empty()) return absl::FailedPreconditionError("no live engine");
  for (BlockEngine* e : engines) {
    BAQ_RETURN_IF_ERROR(RequireCapability<LayerOwnership>(*e).status());
    if (shards > 1) BAQ_RETURN_IF_ERROR(RequireCapability<ShardedCalibration>(*e).status());
  }
  return absl::OkStatus();
}

void ResidentShards::Begin(int64_t first_block, int64_t durable, int64_t previous) {
  durable_ = durable;
  previous_ = durable >= 0 ? std::min(previous, durable - 1) : -1;
  for (Shard& s : shards_) s.at = first_block == 0 ? 0 : -1;
}

void ResidentShards::Assign(const std::vector<BlockEngine*>& live) {
  engines_ = live;
  if (engines_.empty()) return;
  const bool first = std::all_of(shards_.begin(), shards_.end(),
                                 [](const Shard& s) { return s.holder == nullptr; });
  if (first) {
    for (size_t k = 0; k < shards_.size(); ++k) shards_[k].holder = engines_[k % engines_.size()];
    return;
  }
  for (Shard& s : shards_) {
    if (std::find(engines_.begin(), engines_.end(), s.holder) != engines_.end()) continue;
    // Orphaned: to the survivor holding the fewest shards.
    BlockEngine* best = nullptr;
    size_t fewest = 0;
    for (BlockEngine* e : engines_) {
      const size_t n = ShardsOf(e).size();
      if (best == nullptr || n < fewest) {
        best = e;
        fewest = n;
      }
    }
    s.holder = best;
    s.at = -1;
  }
}

std::vector<int32_t> ResidentShards::ShardsOf(const BlockEngine* engine) const {
  std::vector<int32_t> out;
  for (size_t k = 0; k < shards_.size(); ++k) {
    if (shards_[k].holder == engine) out.push_back(static_cast<int32_t>(k));
  }
  return out;
}

absl::Status ResidentShards::OnEngines(const std::vector<std::function<absl::Status()>>& calls,
                                       std::vector<absl::Status>* each) {
  std::vector<absl::Status> local;
  std::vector<absl::Status>& status = each != nullptr ? *each : local;
  status.assign(calls.size(), absl::OkStatus());
  std::vector<std::thread> threads;
  size_t active = 0;
  for (const auto& c : calls) active += c != nullptr;
  for (size_t i = 0; i < calls.size(); ++i) {
    if (calls[i] == nullptr) continue;
    if (active == 1) {
      status[i] = calls[i]();
    } else {
      threads.emplace_back([&, i] { status[i] = calls[i](); });
    }
  }
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < calls.size(); ++i) {
    if (!status[i].ok()) {
      failed_ = engines_[i];
      return status[i];
    }
  }
  return absl::OkStatus();
}

absl::Status ResidentShards::Restore(int64_t b) {
  // Orphaned shards come back on their holders from the latest checkpoint
  // (or the embeddings), all engines at once. A checkpoint file the lost
  // worker had not finished (asynchronous checkpoints: missing, or damaged)
  // sends its shard back one checkpoint further (previous_), whose replay
  // weights are kept for this.
  std::vector<std::function<absl::Status()>> calls(engines_.size());
  std::vector<int64_t> from(shards_.size(), -1);
  bool any = false;
  for (size_t i = 0; i < engines_.size(); ++i) {
    std::vector<int32_t> lost;
    for (int32_t k : ShardsOf(engines_[i])) {
      if (shards_[k].at < 0) lost.push_back(k);
    }
    if (lost.empty()) continue;
    any = true;
    BlockEngine* e = engines_[i];
    calls[i] = [this, e, lost, b, &from]() -> absl::Status {
      for (int32_t k : lost) {
        int64_t at = durable_;
        absl::Status s = RestoreShardFrom(e, k, at, b);
        if ((absl::IsNotFound(s) || absl::IsDataLoss(s)) && durable_ >= 0) {
          at = previous_;
          s = RestoreShardFrom(e, k, at, b);
        }
        BAQ_RETURN_IF_ERROR(s);
        from[k] = std::max<int64_t>(at, 0);
      }
      return absl::OkStatus();
    };
  }
  if (!any) return absl::OkStatus();
  BAQ_RETURN_IF_ERROR(OnEngines(calls));
  for (size_t k = 0; k < shards_.size(); ++k) {
    if (shards_[k].at < 0) shards_[k].at = from[k];
  }
  return absl::OkStatus();
}

absl::Status ResidentShards::RestoreShardFrom(BlockEngine* e, int32_t shard, int64_t checkpoint,
                                              int64_t b) {
  const int64_t from = checkpoint >= 0 ? checkpoint : 0;
  const std::string dir = checkpoint >= 0 ? options_.shard_dir : "";
  return Annotate(Owner(e).RestoreShard(from, shard, dir),
                  absl::StrCat(e->name(), ": restoring shard ", shard, " of block ", from,
                               dir.empty() ? " from the embeddings" : absl::StrCat(" from ", dir),
                               " to redo block ", b));
}

absl::Status ResidentShards::Sync(int64_t b) {
  BAQ_RETURN_IF_ERROR(Restore(b));
  const absl::Time start = absl::Now();
  while (true) {
    int64_t x = b;
    for (const Shard& s : shards_) x = std::min(x, s.at);
    if (x >= b) break;
    // Replay block x on every engine holding a shard there: no decided
    // layer is re-quantized, its weights come from the store.
    BAQ_ASSIGN_OR_RETURN(std::vector<TensorBytes> weights, WeightsOf(x));
    std::vector<std::function<absl::Status()>> calls(engines_.size());
    for (size_t i = 0; i < engines_.size(); ++i) {
      BlockEngine* e = engines_[i];
      bool behind = false;
      for (int32_t k : ShardsOf(e)) behind |= shards_[k].at == x;
      if (!behind) continue;
      block_wire_.weights += BytesOf(weights);
      ++replayed_blocks_;
      calls[i] = [e, x, weights]() { return Owner(e).AdvanceShards(x, weights); };
    }
    BAQ_RETURN_IF_ERROR(OnEngines(calls));
    for (Shard& s : shards_) {
      if (s.at == x) s.at = x + 1;
    }
  }
  replay_seconds_ += absl::ToDoubleSeconds(absl::Now() - start);
  for (const Shard& s : shards_) {
    if (s.at != b) {
      return absl::InternalError(absl::StrCat("block ", b, ": a shard is at block ", s.at));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<BlockMeasurement> ResidentShards::Measure(int64_t b) {
  failed_ = nullptr;
  wire_ += block_wire_;
  block_wire_ = WireBytes{};
  if (engines_.empty()) return absl::FailedPreconditionError("no live engine to run the job on");
  BAQ_RETURN_IF_ERROR(Sync(b));
  const int engines = static_cast<int>(engines_.size());
  std::vector<int> holders;
  for (int i = 0; i < engines; ++i) {
    if (!ShardsOf(engines_[i]).empty()) holders.push_back(i);
  }
  if (holders.size() == 1) {
    // One engine holds every shard: it merges them itself, nothing travels.
    BlockEngine* e = engines_[holders[0]];
    BlockMeasurement m;
    std::vector<std::function<absl::Status()>> calls(engines);
    calls[holders[0]] = [&]() -> absl::Status {
      BAQ_ASSIGN_OR_RETURN(m, e->Measure(b));
      BAQ_ASSIGN_OR_RETURN(layers_, Owner(e).BlockLayers(b));
      return absl::OkStatus();
    };
    BAQ_RETURN_IF_ERROR(OnEngines(calls));
    owners_.assign(layers_.size(), holders[0]);
    return m;
  }

  // 1. Every holder runs the unquantized block over its shards at once.
  std::vector<std::vector<HessianPartial>> partials(engines);
  std::vector<std::function<absl::Status()>> calls(engines);
  for (int i : holders) {
    BlockEngine* e = engines_[i];
    const std::vector<int32_t> mine = ShardsOf(e);
    calls[i] = [&partials, e, i, b, mine]() -> absl::Status {
      BAQ_ASSIGN_OR_RETURN(partials[i], Sharding(e).AccumulateHessians(b, mine));
      return absl::OkStatus();
    };
  }
  BAQ_RETURN_IF_ERROR(OnEngines(calls));
  // 2. Merged in shard order: the additions one engine holding all makes.
  HessianMerger merger(b, static_cast<int>(shards_.size()));
  for (int i : holders) {
    BlockEngine* e = engines_[i];
    const std::vector<int32_t> mine = ShardsOf(e);
    std::vector<ShardPartials> by_shard(mine.size());
    for (HessianPartial& p : partials[i]) {
      block_wire_.hessian_partials += static_cast<int64_t>(p.bytes.size());
      auto it = std::find(mine.begin(), mine.end(), p.shard);
      if (it == mine.end()) {
        failed_ = e;
        return absl::InvalidArgumentError(absl::StrCat("block ", b, ": ", e->name(),
                                                       " sent a Hessian partial of shard ",
                                                       p.shard, ", which it does not hold"));
      }
      by_shard[it - mine.begin()].partials.push_back(std::move(p));
    }
    partials[i].clear();
    for (size_t j = 0; j < mine.size(); ++j) {
      by_shard[j].source = e->name();
      BAQ_RETURN_IF_ERROR(merger.Add(mine[j], std::move(by_shard[j])));
    }
  }
  BAQ_ASSIGN_OR_RETURN(std::vector<HessianPartial> merged, std::move(merger).Finish());

  // 3. One owner per layer; each owner gets the sums of its layers' groups.
  BlockEngine* first = engines_[holders[0]];
  {
    std::vector<std::function<absl::Status()>> layout(engines);
    layout[holders[0]] = [&]() -> absl::Status {
      BAQ_ASSIGN_OR_RETURN(layers_, Owner(first).BlockLayers(b));
      return absl::OkStatus();
    };
    BAQ_RETURN_IF_ERROR(OnEngines(layout));
  }
  owners_ = AssignLayerOwners(layers_, engines);
  // A sum goes to the last owner that needs it by move and to the others as
  // a copy: the coordinator holds each sum once per owner of it, not once
  // more (q/k/v or gate/up split over two owners would otherwise be 3 sums).
  std::vector<std::set<int32_t>> groups(engines);
  std::map<int32_t, int> last_owner;  // By input group.
  for (int i = 0; i < engines; ++i) {
    for (int32_t l : LayersOf(owners_, i)) {
      groups[i].insert(layers_[l].input_group);
      last_owner[layers_[l].input_group] = i;
    }
  }
  std::vector<std::function<absl::Status()>> imports(engines);
  for (int i = 0; i < engines; ++i) {
    if (groups[i].empty()) continue;
    std::vector<HessianPartial> mine;
    for (HessianPartial& p : merged) {
      if (groups[i].count(p.input_group) == 0) continue;
      block_wire_.hessian_merged += static_cast<int64_t>(p.bytes.size());
      if (last_owner[p.input_group] == i) {
        mine.push_back(std::move(p));
      } else {
        mine.push_back(p);
      }
    }
    BlockEngine* e = engines_[i];
    imports[i] = [e, b, mine = std::move(mine)]() mutable {
      return Sharding(e).ImportHessians(b, std::move(mine));
    };
  }
  merged.clear();
  BAQ_RETURN_IF_ERROR(OnEngines(imports));

  // 4. Each owner measures its layers; the block's measurement in order.
  std::vector<BlockMeasurement> parts(engines);
  std::vector<std::function<absl::Status()>> measures(engines);
  for (int i = 0; i < engines; ++i) {
    const std::vector<int32_t> mine = LayersOf(owners_, i);
    if (mine.empty()) continue;
    BlockEngine* e = engines_[i];
    measures[i] = [&parts, e, i, b, mine]() -> absl::Status {
      BAQ_ASSIGN_OR_RETURN(parts[i], Owner(e).MeasureLayers(b, mine));
      if (parts[i].layers.size() != mine.size()) {
        return absl::InternalError(absl::StrCat(e->name(), " measured ", parts[i].layers.size(),
                                                " layers of block ", b, ", asked for ",
                                                mine.size()));
      }
      return absl::OkStatus();
    };
  }
  BAQ_RETURN_IF_ERROR(OnEngines(measures));
  BlockMeasurement m;
  m.block = b;
  std::vector<size_t> next(engines, 0);
  for (size_t l = 0; l < layers_.size(); ++l) {
    const int i = owners_[l];
    m.layers.push_back(std::move(parts[i].layers[next[i]++]));
    m.calibration_tokens = parts[i].calibration_tokens;
  }
  return m;
}

absl::StatusOr<BlockOutput> ResidentShards::Quantize(
    int64_t b, const std::vector<LayerAllocation>& allocation) {
  failed_ = nullptr;
  if (allocation.size() != layers_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("block ", b, ": allocation has ",
                                                   allocation.size(), " layers, the block ",
                                                   layers_.size()));
  }
  const int engines = static_cast<int>(engines_.size());
  std::vector<OwnedLayersOutput> parts(engines);
  std::vector<std::function<absl::Status()>> calls(engines);
  for (int i = 0; i < engines; ++i) {
    const std::vector<int32_t> mine = LayersOf(owners_, i);
    if (mine.empty()) continue;
    std::vector<LayerAllocation> alloc;
    for (int32_t l : mine) alloc.push_back(allocation[l]);
    BlockEngine* e = engines_[i];
    calls[i] = [&parts, e, i, b, mine, alloc = std::move(alloc)]() -> absl::Status {
      BAQ_ASSIGN_OR_RETURN(parts[i], Owner(e).QuantizeLayers(b, mine, alloc));
      const OwnedLayersOutput& p = parts[i];
      size_t tensors = 0;
      for (int32_t n : p.tensors_per_layer) tensors += static_cast<size_t>(std::max(0, n));
      if (p.output.layers.size() != mine.size() || p.weights.size() != mine.size() ||
          p.tensors_per_layer.size() != mine.size() || tensors != p.output.tensors.size()) {
        return absl::InternalError(absl::StrCat(
            e->name(), " returned ", p.output.layers.size(), " layer reports, ",
            p.weights.size(), " weights and ", p.output.tensors.size(),
            " tensors for the ", mine.size(), " layers of block ", b, " it was given"));
      }
      return absl::OkStatus();
    };
  }
  BAQ_RETURN_IF_ERROR(OnEngines(calls));
  // Interleave the owners' pieces in the block's layer order.
  BlockOutput out;
  out.block = b;
  std::vector<TensorBytes> weights;
  std::vector<size_t> layer_at(engines, 0), tensor_at(engines, 0);
  for (size_t l = 0; l < layers_.size(); ++l) {
    const int i = owners_[l];
    OwnedLayersOutput& p = parts[i];
    const size_t j = layer_at[i]++;
    for (int32_t t = 0; t < p.tensors_per_layer[j]; ++t, ++tensor_at[i]) {
      const size_t k = tensor_at[i];
      block_wire_.outputs += static_cast<int64_t>(p.output.tensors[k].bytes.size());
      out.tensors.push_back(std::move(p.output.tensors[k]));
      out.tensor_format.push_back(k < p.output.tensor_format.size() ? p.output.tensor_format[k]
                                                                    : 0);
    }
    out.layers.push_back(std::move(p.output.layers[j]));
    if (p.weights[j].name != layers_[l].name) {
      failed_ = engines_[i];
      return absl::InternalError(absl::StrCat("block ", b, ": ", engines_[i]->name(),
                                              " returned the weights of ", p.weights[j].name,
                                              " for layer ", layers_[l].name));
    }
    weights.push_back(std::move(p.weights[j]));
  }
  block_wire_.weights += BytesOf(weights);
  block_weights_ = std::make_shared<const std::vector<TensorBytes>>(std::move(weights));
  BAQ_RETURN_IF_ERROR(KeepWeights(b, block_weights_));
  return out;
}

absl::Status ResidentShards::Advance(int64_t b) {
  failed_ = nullptr;
  const int engines = static_cast<int>(engines_.size());
  std::vector<std::function<absl::Status()>> calls(engines);
  for (int i = 0; i < engines; ++i) {
    BlockEngine* e = engines_[i];
    const bool holds = !ShardsOf(e).empty();
    const bool owns = !LayersOf(owners_, i).empty();
    if (!holds && !owns) continue;
    std::vector<TensorBytes> others;
    for (size_t l = 0; l < layers_.size(); ++l) {
      if (owners_[l] != i) others.push_back((*block_weights_)[l]);
    }
    block_wire_.weights += BytesOf(others);
    calls[i] = [e, b, others = std::move(others)]() mutable {
      return Owner(e).AdvanceShards(b, std::move(others));
    };
  }
  // The engines get their copies; replays read the store (or the kept
  // copy), so the block's weights are not held into the next block, where
  // they would add to its Hessian partials.
  block_weights_.reset();
  std::vector<absl::Status> each;
  const absl::Status advanced = OnEngines(calls, &each);
  // Shards advance with their engine's call: an engine whose call failed
  // (not only the first one reported) still holds them at b.
  for (Shard& s : shards_) {
    const size_t i = std::find(engines_.begin(), engines_.end(), s.holder) - engines_.begin();
    if (s.at == b && i < each.size() && each[i].ok()) s.at = b + 1;
  }
  BAQ_RETURN_IF_ERROR(advanced);
  return Checkpoint(b + 1);
}

absl::Status ResidentShards::Checkpoint(int64_t block) {
  const int k = options_.checkpoint_every;
  if (k <= 0 || options_.shard_dir.empty() || block >= options_.num_blocks || block % k != 0) {
    return absl::OkStatus();
  }
  const int engines = static_cast<int>(engines_.size());
  std::vector<std::vector<int32_t>> saved(engines);
  std::vector<std::function<absl::Status()>> calls(engines);
  for (int i = 0; i < engines; ++i) {
    BlockEngine* e = engines_[i];
    if (ShardsOf(e).empty()) continue;
    calls[i] = [&saved, e, i, block, dir = options_.shard_dir]() -> absl::Status {
      BAQ_ASSIGN_OR_RETURN(saved[i], Owner(e).CheckpointShards(block, dir));
      return absl::OkStatus();
    };
  }
  BAQ_RETURN_IF_ERROR(OnEngines(calls));
  std::vector<bool> covered(shards_.size(), false);
  for (const auto& list : saved) {
    for (int32_t s : list) {
      if (s >= 0 && static_cast<size_t>(s) < covered.size()) covered[s] = true;
    }
  }
  for (size_t s = 0; s < covered.size(); ++s) {
    if (!covered[s]) {
      return absl::InternalError(absl::StrCat("checkpoint of block ", block, ": shard ", s,
                                              " was not written by its holder ",
                                              shards_[s].holder->name()));
    }
  }
  if (durable_ != block) previous_ = durable_;
  durable_ = block;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TensorBytes>> ResidentShards::WeightsOf(int64_t block) {
  if (weight_store_ != nullptr) {
    BAQ_RETURN_IF_ERROR(FlushWeights());
    return Annotate(weight_store_->LoadWeights(block),
                    absl::StrCat("the quantized weights of block ", block, " for a replay"));
  }
  auto it = memory_weights_.find(block);
  if (it == memory_weights_.end()) {
    return absl::InternalError(
        absl::StrCat("the quantized weights of block ", block, " are no longer kept"));
  }
  return it->second;
}

absl::Status ResidentShards::KeepWeights(int64_t block,
                                         std::shared_ptr<const std::vector<TensorBytes>> weights) {
  if (!options_.keep_weights) return absl::OkStatus();
  if (weight_store_ == nullptr) {
    memory_weights_[block] = *weights;
    return absl::OkStatus();
  }
  BAQ_RETURN_IF_ERROR(FlushWeights());
  // Written while the engines run the block forward; durable before the job
  // checkpoint records the block (FlushWeights).
  weight_writer_ = std::thread([this, block, weights = std::move(weights)] {
    weight_write_status_ = Annotate(weight_store_->SaveWeights(block, *weights),
                                    absl::StrCat("keeping the quantized weights of block ", block));
  });
  return absl::OkStatus();
}

absl::Status ResidentShards::FlushWeights() {
  if (weight_writer_.joinable()) weight_writer_.join();
  absl::Status s = weight_write_status_;
  weight_write_status_ = absl::OkStatus();
  return s;
}

ResidentShards::~ResidentShards() {
  if (weight_writer_.joinable()) weight_writer_.join();
}

void ResidentShards::ReleaseWeightsBefore(int64_t block) {
  (void)FlushWeights();  // Reported by the Flush before the checkpoint.
  if (weight_store_ != nullptr) weight_store_->DropWeightsBefore(block);
  memory_weights_.erase(memory_weights_.begin(), memory_weights_.lower_bound(block));
}

}  // namespace baq::coordinator

#include "coordinator/calibration_shards.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/engine_capabilities.h"
#include "common/hessian_format.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace baq::coordinator {
namespace {

template <typename T>
T Load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

std::string Describe(int64_t block, const ShardPartials& from, int shard, const HessianPartial& p) {
  return absl::StrCat("block ", block, ": ", from.source.empty() ? "an engine" : from.source,
                      " sent shard ", shard, "'s Hessian partial of input group ", p.input_group,
                      " (", p.layer, ")");
}

// The first difference between two engines' outputs of one block, or "".
std::string FirstDifference(const BlockOutput& a, const BlockOutput& b) {
  if (a.tensors.size() != b.tensors.size()) {
    return absl::StrCat(a.tensors.size(), " vs ", b.tensors.size(), " tensors");
  }
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const TensorBytes& x = a.tensors[i];
    const TensorBytes& y = b.tensors[i];
    if (x.name != y.name || x.dtype != y.dtype || x.shape != y.shape || x.bytes != y.bytes) {
      return absl::StrCat("tensor ", x.name, " differs");
    }
  }
  if (a.layers.size() != b.layers.size()) {
    return absl::StrCat(a.layers.size(), " vs ", b.layers.size(), " layer reports");
  }
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const LayerReport& x = a.layers[i];
    const LayerReport& y = b.layers[i];
    if (x.bits_sum != y.bits_sum || x.proxy_loss != y.proxy_loss || x.gptq_bits != y.gptq_bits) {
      return absl::StrCat("layer ", x.name, ": bits ", x.bits_sum, " vs ", y.bits_sum,
                          ", proxy loss ", x.proxy_loss, " vs ", y.proxy_loss);
    }
  }
  return "";
}

}  // namespace

absl::Status HessianMerger::Add(int shard, ShardPartials partials) {
  if (shard < 0 || shard >= shards_) {
    return absl::InvalidArgumentError(
        absl::StrCat("block ", block_, ": shard ", shard, " of ", shards_, " to merge"));
  }
  if (arrived_.empty()) {
    arrived_.assign(shards_, false);
    waiting_.resize(shards_);
  }
  if (arrived_[shard]) {
    return absl::InvalidArgumentError(
        absl::StrCat("block ", block_, ": shard ", shard, "'s partials arrived twice"));
  }
  arrived_[shard] = true;
  waiting_[shard] = std::move(partials);
  while (next_ < shards_ && arrived_[next_]) {
    ShardPartials ready = std::move(waiting_[next_]);
    waiting_[next_] = ShardPartials{};
    BAQ_RETURN_IF_ERROR(MergeNext(ready));
    ++next_;
  }
  return absl::OkStatus();
}

absl::Status HessianMerger::MergeNext(ShardPartials& shard) {
  const int k = next_;
  const std::string source = shard.source.empty() ? "an engine" : shard.source;
  if (k == 0) {
    if (shard.partials.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("block ", block_, ": ", source,
                                                     " sent no Hessian partials for shard 0"));
    }
    first_source_ = source;
  } else if (shard.partials.size() != merged_.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "block ", block_, ": ", source, " sent ", shard.partials.size(),
        " Hessian partial(s) for shard ", k, ", shard 0 (from ", first_source_, ") has ",
        merged_.size()));
  }
  int64_t shard_rows = -1;
  for (size_t g = 0; g < shard.partials.size(); ++g) {
    HessianPartial& p = shard.partials[g];
    const std::string what = Describe(block_, shard, k, p);
    if (p.shard != k) return absl::InvalidArgumentError(absl::StrCat(what, " labelled shard ", p.shard));
    BAQ_ASSIGN_OR_RETURN(const HessianSumView parsed, Annotate(ParseHessianSum(p.bytes), what));
    if (shard_rows >= 0 && parsed.rows != shard_rows) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": ", parsed.rows, " token rows, the shard's other groups ", shard_rows));
    }
    shard_rows = parsed.rows;
    if (k == 0) {
      columns_.push_back(parsed.columns);
      p.shard = -1;
      merged_.push_back(std::move(p));
      continue;
    }
    const HessianPartial& into = merged_[g];
    if (p.input_group != into.input_group || parsed.columns != columns_[g]) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": ", parsed.columns, " columns; shard 0's partial ", g, " is input group ",
          into.input_group, " (", into.layer, ") with ", columns_[g], " columns"));
    }
    // sum += partial and rows += partial's rows, element by element in
    // float64: the additions of HessianAccumulator::Merge.
    BAQ_RETURN_IF_ERROR(Annotate(AddHessianSum(p.bytes, &merged_[g].bytes), what));
    std::string().swap(p.bytes);  // Added: free it.
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<HessianPartial>> HessianMerger::Finish() && {
  if (shards_ < 1 || next_ < shards_) {
    return absl::InvalidArgumentError(absl::StrCat("block ", block_, ": ", next_, " of ",
                                                   shards_, " shards' Hessian partials merged"));
  }
  return std::move(merged_);
}

absl::StatusOr<std::vector<HessianPartial>> MergeHessianPartials(
    int64_t block, std::vector<ShardPartials> by_shard) {
  if (by_shard.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("block ", block, ": no shards to merge"));
  }
  HessianMerger merger(block, static_cast<int>(by_shard.size()));
  for (size_t k = 0; k < by_shard.size(); ++k) {
    BAQ_RETURN_IF_ERROR(merger.Add(static_cast<int>(k), std::move(by_shard[k])));
  }
  return std::move(merger).Finish();
}

std::string PackShardInputs(const std::vector<std::string>& shards) {
  std::string out("BAQS", 4);
  auto put = [&out](auto v) { out.append(reinterpret_cast<const char*>(&v), sizeof(v)); };
  put(uint32_t{1});
  put(static_cast<uint32_t>(shards.size()));
  for (const std::string& s : shards) {
    put(static_cast<uint64_t>(s.size()));
    out.append(s);
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> UnpackShardInputs(absl::string_view blob, int shards) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpointed shard inputs (", blob.size(), " bytes): ", why));
  };
  if (blob.size() < 12 || blob.substr(0, 4) != "BAQS") return bad("bad header");
  if (Load<uint32_t>(blob.data() + 4) != 1) return bad("unknown version");
  const uint32_t count = Load<uint32_t>(blob.data() + 8);
  if (count != static_cast<uint32_t>(shards)) {
    return bad(absl::StrCat(count, " shards, the job has ", shards));
  }
  std::vector<std::string> out;
  size_t offset = 12;
  for (uint32_t k = 0; k < count; ++k) {
    if (blob.size() - offset < 8) return bad(absl::StrCat("truncated at shard ", k));
    const uint64_t n = Load<uint64_t>(blob.data() + offset);
    offset += 8;
    if (blob.size() - offset < n) return bad(absl::StrCat("truncated in shard ", k));
    out.emplace_back(blob.substr(offset, n));
    offset += n;
  }
  if (offset != blob.size()) return bad("trailing bytes");
  return out;
}

void ShardedBlock::Assign(const std::vector<BlockEngine*>& live) {
  owners_.assign(live.begin(),
                 live.begin() + std::min(live.size(), static_cast<size_t>(shards_)));
}

absl::Status ShardedBlock::CheckOwners() const {
  if (owners_.empty()) {
    return absl::FailedPreconditionError("no live engine to run the calibration shards on");
  }
  for (BlockEngine* owner : owners_) {
    BAQ_RETURN_IF_ERROR(RequireCapability<ShardedCalibration>(*owner).status());
  }
  return absl::OkStatus();
}

ShardedCalibration& ShardedBlock::Sharding(BlockEngine* owner) {
  ShardedCalibration* s = CapabilityOf<ShardedCalibration>(*owner);
  // CheckOwners() checked every owner offers it.
  if (s == nullptr) std::abort();
  return *s;
}

std::vector<int32_t> ShardedBlock::ShardsOf(size_t owner_index) const {
  std::vector<int32_t> out;
  for (size_t k = owner_index; k < static_cast<size_t>(shards_); k += owners_.size()) {
    out.push_back(static_cast<int32_t>(k));
  }
  return out;
}

absl::Status ShardedBlock::On(BlockEngine* engine, const std::function<absl::Status()>& call) {
  absl::Status s = call();
  if (!s.ok()) failed_ = engine;
  return s;
}

absl::Status ShardedBlock::ImportInputs(int64_t block, std::vector<std::string> inputs) {
  failed_ = nullptr;
  BAQ_RETURN_IF_ERROR(CheckOwners());
  for (int k = 0; k < shards_; ++k) {
    BlockEngine* owner = owners_[static_cast<size_t>(k) % owners_.size()];
    BAQ_RETURN_IF_ERROR(
        On(owner, [&] { return Sharding(owner).ImportShardInputs(block, k, std::move(inputs[k])); }));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ShardedBlock::ExportAllFromFirst(int64_t block) {
  failed_ = nullptr;
  BAQ_RETURN_IF_ERROR(CheckOwners());
  std::vector<std::string> out(shards_);
  for (int k = 0; k < shards_; ++k) {
    BAQ_RETURN_IF_ERROR(On(owners_[0], [&]() -> absl::Status {
      BAQ_ASSIGN_OR_RETURN(out[k], Sharding(owners_[0]).ExportShardInputs(block, k));
      return absl::OkStatus();
    }));
  }
  return out;
}

absl::StatusOr<BlockMeasurement> ShardedBlock::Measure(int64_t block) {
  failed_ = nullptr;
  BAQ_RETURN_IF_ERROR(CheckOwners());
  HessianMerger merger(block, shards_);
  for (size_t i = 0; i < owners_.size(); ++i) {
    BlockEngine* owner = owners_[i];
    const std::vector<int32_t> mine = ShardsOf(i);
    std::vector<HessianPartial> partials;
    BAQ_RETURN_IF_ERROR(On(owner, [&]() -> absl::Status {
      BAQ_ASSIGN_OR_RETURN(partials, Sharding(owner).AccumulateHessians(block, mine));
      return absl::OkStatus();
    }));
    std::vector<ShardPartials> by_shard(mine.size());
    for (HessianPartial& p : partials) {
      auto it = std::find(mine.begin(), mine.end(), p.shard);
      if (it == mine.end()) {
        return absl::InvalidArgumentError(absl::StrCat("block ", block, ": ", owner->name(),
                                                       " sent a Hessian partial of shard ",
                                                       p.shard, ", which it was not given"));
      }
      by_shard[it - mine.begin()].partials.push_back(std::move(p));
    }
    partials.clear();
    for (size_t j = 0; j < mine.size(); ++j) {
      by_shard[j].source = owner->name();
      BAQ_RETURN_IF_ERROR(merger.Add(mine[j], std::move(by_shard[j])));
    }
  }
  BAQ_ASSIGN_OR_RETURN(std::vector<HessianPartial> merged, std::move(merger).Finish());
  for (size_t i = 0; i < owners_.size(); ++i) {
    BlockEngine* owner = owners_[i];
    std::vector<HessianPartial> copy = i + 1 < owners_.size() ? merged : std::move(merged);
    BAQ_RETURN_IF_ERROR(On(owner, [&] { return Sharding(owner).ImportHessians(block, std::move(copy)); }));
  }
  BlockMeasurement m;
  BAQ_RETURN_IF_ERROR(On(owners_[0], [&]() -> absl::Status {
    BAQ_ASSIGN_OR_RETURN(m, owners_[0]->Measure(block));
    return absl::OkStatus();
  }));
  return m;
}

absl::StatusOr<BlockOutput> ShardedBlock::Quantize(
    int64_t block, const std::vector<LayerAllocation>& allocation) {
  failed_ = nullptr;
  BAQ_RETURN_IF_ERROR(CheckOwners());
  BlockOutput first;
  for (size_t i = 0; i < owners_.size(); ++i) {
    BlockEngine* owner = owners_[i];
    BlockOutput out;
    BAQ_RETURN_IF_ERROR(On(owner, [&]() -> absl::Status {
      BAQ_ASSIGN_OR_RETURN(out, owner->Quantize(block, allocation));
      return absl::OkStatus();
    }));
    if (i == 0) {
      first = std::move(out);
      continue;
    }
    if (const std::string diff = FirstDifference(first, out); !diff.empty()) {
      return absl::InternalError(absl::StrCat(
          "block ", block, ": ", owner->name(), " quantized the block differently from ",
          owners_[0]->name(), " (", diff,
          ") from the same Hessians and allocation: their numerics differ (mixed hardware or "
          "--threads?); calibration shards need identical workers"));
    }
  }
  return first;
}

absl::StatusOr<std::vector<std::string>> ShardedBlock::ExportInputs(int64_t block) {
  failed_ = nullptr;
  BAQ_RETURN_IF_ERROR(CheckOwners());
  std::vector<std::string> out(shards_);
  for (int k = 0; k < shards_; ++k) {
    BlockEngine* owner = owners_[static_cast<size_t>(k) % owners_.size()];
    BAQ_RETURN_IF_ERROR(On(owner, [&]() -> absl::Status {
      BAQ_ASSIGN_OR_RETURN(out[k], Sharding(owner).ExportShardInputs(block, k));
      return absl::OkStatus();
    }));
  }
  return out;
}

}  // namespace baq::coordinator
